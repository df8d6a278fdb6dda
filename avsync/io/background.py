"""Overlap work with the calling thread: `prefetch` runs an iterator in a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

Item = TypeVar("Item")


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def prefetch(items: Iterator[Item], depth: int) -> Iterator[Item]:
    """Run an iterator in a background thread, up to `depth` items ahead.

    Work that releases the GIL (FFmpeg decoding and encoding) then overlaps the calling thread's.
    Exceptions of the iterator are raised in the caller; stopping early stops the thread.

    Args:
        items: the iterator (consumed only by the background thread).
        depth: most items held ahead.

    Yields:
        The items, in order.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # noqa: BLE001 (handed to the consumer)
            put(_Failure(error))
        else:
            put(_DONE)

    thread = threading.Thread(target=produce, name="avsync-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
