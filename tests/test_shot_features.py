"""A shot's features read in a forked process (`avsync.pipeline.shot_features`) while the parent loads the model."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_test_clip

from avsync.errors import AvsyncError, DiskFullError, MediaError
from avsync.pipeline import shot_features
from avsync.pipeline.shot_features import lips_reader, load_shot, shot_in_background


@pytest.fixture
def video(song: Path) -> Path:
    """The 3 s synthetic singer's video (conftest's `song`)."""
    return song / "Video.mp4"


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork although this test process has torch loaded (the child never touches it)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform cannot fork")
    monkeypatch.setattr(shot_features, "can_fork", lambda: True)


def test_features_from_the_child_equal_those_read_here(forking, capfd, video: Path) -> None:
    here = load_shot(video, None)
    with shot_in_background(video, None) as shot:
        assert shot is not None
        there = shot()
    assert multiprocessing.active_children() == []
    assert capfd.readouterr().err == ""  # the worker ends on the hang-up, not by a signal with a traceback
    np.testing.assert_array_equal(there.mouth_crops, here.mouth_crops)
    np.testing.assert_array_equal(there.valid, here.valid)
    np.testing.assert_array_equal(there.landmarks, here.landmarks)
    assert there.params == here.params and there.invalid_reason == here.invalid_reason


def test_the_child_sends_the_crops_as_it_cuts_them_when_asked(forking, tmp_path: Path, video: Path) -> None:
    """`shot_in_background` streams the mouth crops (for `avsync.align.cost.VideoEmbedder`); a
    shoot's request, read later, does not; features from the cache come whole."""
    received: list[np.ndarray] = []
    with shot_in_background(video, tmp_path / "cache") as shot:
        there = shot(on_crops=received.append)
    assert len(received) > 1 and all(len(chunk) <= shot_features.STREAM_CHUNK for chunk in received)
    np.testing.assert_array_equal(np.concatenate(received), there.mouth_crops)
    received.clear()
    with shot_in_background(video, tmp_path / "cache") as shot:  # a cache hit: nothing is cut
        np.testing.assert_array_equal(shot(on_crops=received.append).mouth_crops, there.mouth_crops)
    assert received == []
    with lips_reader() as reader:
        reader.request(video, None)
        np.testing.assert_array_equal(reader.result(on_crops=received.append).mouth_crops, there.mouth_crops)
    assert received == []


def test_a_user_error_in_the_child_is_raised_here_as_one_line(forking, tmp_path: Path) -> None:
    faceless = write_test_clip(tmp_path / "faceless.mp4", seconds=2.0, size=(64, 48), audio=False)
    with shot_in_background(faceless, None) as shot, pytest.raises(MediaError) as caught:
        shot()
    assert caught.value.path == str(faceless)
    assert str(caught.value) == f"{faceless}: shows no face in any frame (nothing to read the lips from)"


def test_a_crash_in_the_child_carries_its_traceback(forking, monkeypatch: pytest.MonkeyPatch, video: Path) -> None:
    def broken(*args, **kwargs):
        raise ValueError("a bug in the lip reader")

    monkeypatch.setattr(shot_features, "load_shot", broken)  # the fork copies the patched module
    with shot_in_background(video, None) as shot, pytest.raises(RuntimeError) as caught:
        shot()
    assert "ValueError: a bug in the lip reader" in str(caught.value) and str(video) in str(caught.value)


def test_the_worker_ends_on_its_own_when_the_parent_hangs_up(forking, video: Path) -> None:
    with lips_reader() as reader:
        assert reader is not None
        reader.request(video, None)
        assert len(reader.result()) == 75
    assert reader._process.exitcode == 0  # not terminated (-15) after waiting for it


def test_ctrl_c_ends_the_worker_quietly_and_the_parent_is_told(forking, capfd, monkeypatch, video: Path) -> None:
    def slow(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(shot_features, "load_shot", slow)  # the fork copies the patched module
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (CI may run with it ignored)
    try:
        with lips_reader() as reader:
            assert reader is not None
            reader.request(video, None)
            time.sleep(0.3)  # the worker is inside load_shot
            os.kill(reader._process.pid, signal.SIGINT)
            with pytest.raises(RuntimeError, match="stopped"):
                reader.result()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "Traceback" not in capfd.readouterr().err


def test_a_worker_that_ends_in_the_middle_of_its_answer_is_reported(tmp_path: Path) -> None:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    ended = multiprocessing.get_context("fork").Process(target=int)
    ended.start()
    reader = shot_features.LipsReader(ended, ours)
    reader.request(tmp_path / "shot.mp4", None)
    os.write(theirs.fileno(), struct.pack("!i", 1000) + b"partial")  # a message header, then a tenth of it
    theirs.close()
    with pytest.raises(RuntimeError, match="shot.mp4 stopped"):
        reader.result()


def test_leaving_without_the_result_stops_the_child(forking, video: Path) -> None:
    with shot_in_background(video, None):
        assert len(multiprocessing.active_children()) == 1
    assert multiprocessing.active_children() == []


def test_without_a_safe_fork_nothing_starts(monkeypatch: pytest.MonkeyPatch, video: Path) -> None:
    monkeypatch.setattr(shot_features, "can_fork", lambda: False)
    with shot_in_background(video, None) as shot:
        assert shot is None and multiprocessing.active_children() == []


def test_torch_loaded_means_no_fork() -> None:
    import torch  # noqa: F401  (loaded: its thread pools would not survive a fork)

    assert not shot_features.can_fork()


def test_the_video_path_does_not_import_torch() -> None:
    code = "import sys; import avsync.pipeline.shot_features, avsync.features.cache; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("error", [AvsyncError("bad input", "/a/b.mp4"), MediaError("unreadable"), DiskFullError("disk full", "out.mp4")])
def test_user_errors_cross_a_process_boundary_whole(error: AvsyncError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error) and back.path == error.path
