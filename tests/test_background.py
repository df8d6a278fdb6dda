"""`avsync.io.background.prefetch`: order, errors and early stops of the background thread."""

from __future__ import annotations

import threading
import time

import pytest

from avsync.io.background import prefetch


def prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "avsync-prefetch"]


def test_items_come_in_order_and_the_thread_ends() -> None:
    assert list(prefetch(iter(range(100)), 4)) == list(range(100))
    assert prefetch_threads() == []


def test_an_error_of_the_iterator_is_raised_in_the_caller() -> None:
    def failing():
        yield 1
        raise KeyError("boom")

    items = prefetch(failing(), 2)
    assert next(items) == 1
    with pytest.raises(KeyError, match="boom"):
        next(items)
    assert prefetch_threads() == []


def test_stopping_early_stops_the_producer() -> None:
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    items = prefetch(endless(), 3)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    assert prefetch_threads() == []
    count = len(produced)
    time.sleep(0.05)
    assert len(produced) == count <= 5 + 3 + 1  # at most `depth` ahead, plus the one being put
