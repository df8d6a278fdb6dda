"""A shot's visual features (mouth crops, landmarks), checked, optionally read in a process of its own.

`load_shot` decodes the video, follows the face and cuts the mouth crops (through the feature
cache when one is given). Most of that time is dlib's face detection and landmarks, which hold
Python's GIL: a thread cannot run them beside the model work. `lips_reader` forks a worker
process instead, before torch is imported, that runs `load_shot` on request: on a machine with
two or more cores the parent imports torch, loads the model and the music and embeds the music
while the worker reads the lips of one shot (`shot_in_background`, `avsync align`), and aligns
shot k while the worker reads shot k+1 (`avsync.pipeline.shots`). The worker never imports torch
(`avsync.features.extract`'s video path needs numpy, OpenCV, PyAV and dlib only) and sends the
features back through a pipe; a user error in it (`avsync.errors.AvsyncError`) is raised again in
the parent, one line as always.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection

from avsync.errors import MediaError
from avsync.features.extract import VisualFeatures, VisualParams
from avsync.pipeline.checks import MIN_VIDEO_S


def load_shot(video: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None,
              visual_params: VisualParams = VisualParams(), progress: bool = False) -> VisualFeatures:
    """The video's mouth crops and landmarks, checked for length and for a face.

    Args:
        video: the video.
        cache_dir: feature cache folder, or None to compute without caching.
        visual_params: extraction parameters (which face to follow among several, ...).
        progress: show a per-frame progress bar while reading the lips.

    Raises:
        MediaError: unreadable video, too short, or without any face.
    """
    from avsync.features.cache import visual_features

    visual = visual_features(video, cache_dir, visual_params, progress)
    if len(visual) < MIN_VIDEO_S * visual.fps:
        raise MediaError(f"is too short to align ({len(visual)} frames at {visual.fps:g} fps)", video)
    if not visual.valid.any():
        raise MediaError("shows no face in any frame (nothing to read the lips from)", video)
    return visual


def can_fork() -> bool:
    """Whether a child can be forked safely now: the platform forks, and torch (whose thread pools
    do not survive a fork) is not loaded yet."""
    return "fork" in multiprocessing.get_all_start_methods() and "torch" not in sys.modules


class LipsReader:
    """A forked worker process that runs `load_shot` on request, one request at a time.

    `request` hands it a shot and returns at once; `result` waits for that shot's features. A
    caller that requests the next shot before working on the current one keeps the worker busy
    beside it (`avsync.pipeline.shots.align_shots` reads shot k+1 while shot k is aligned).
    Made by `lips_reader`.
    """

    def __init__(self, process: multiprocessing.process.BaseProcess, connection: Connection) -> None:
        self._process, self._connection = process, connection
        self._outstanding: str | None = None

    def request(self, video: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None,
                visual_params: VisualParams = VisualParams(), progress: bool = False) -> None:
        """Start reading a shot's lips (at most one request outstanding; `load_shot`'s arguments)."""
        if self._outstanding is not None:
            raise RuntimeError(f"the lips of {self._outstanding} are still being read")
        self._connection.send((video, cache_dir, visual_params, progress))
        self._outstanding = os.fspath(video)

    def result(self) -> VisualFeatures:
        """The requested shot's features.

        Raises:
            AvsyncError: what `load_shot` raised in the worker (`MediaError`, ...), one line as always.
            RuntimeError: the worker failed (its traceback in the message) or died.
        """
        video, self._outstanding = self._outstanding, None
        if video is None:
            raise RuntimeError("no shot was requested")
        try:
            kind, payload = self._connection.recv()
        except (EOFError, OSError):  # OSError: it ended in the middle of sending
            self._process.join()
            raise RuntimeError(f"reading the lips of {video} stopped (the worker process ended with status "
                               f"{self._process.exitcode})") from None  # fmt: skip
        if kind == "error":
            raise payload
        if kind == "crash":
            raise RuntimeError(f"reading the lips of {video} failed in the worker process:\n{payload}")
        return payload


@contextmanager
def lips_reader() -> Iterator[LipsReader | None]:
    """Fork a `LipsReader` worker; None where a fork is not safe (`can_fork`): read the lips in-process then.

    Leaving the context ends the worker, at once if it is still reading (an error or Ctrl-C here).
    """
    if not can_fork():
        yield None
        return
    context = multiprocessing.get_context("fork")
    parent_end, child_end = context.Pipe(duplex=True)
    sys.stdout.flush()  # a fork copies unwritten output, which the child would write again
    sys.stderr.flush()
    worker = context.Process(target=_serve, args=(child_end, parent_end), name="avsync-lips", daemon=True)
    worker.start()
    child_end.close()
    try:
        yield LipsReader(worker, parent_end)
    finally:
        parent_end.close()  # the worker's next receive ends, and so does the worker
        worker.join(timeout=0.5)
        if worker.is_alive():
            worker.terminate()
            worker.join()


@contextmanager
def shot_in_background(video: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None,
                       visual_params: VisualParams = VisualParams(),
                       progress: bool = False) -> Iterator[Callable[[], VisualFeatures] | None]:
    """One shot's `load_shot` in a forked worker (`lips_reader`); yields the function that waits for it.

    Args:
        video: the video.
        cache_dir: feature cache folder, or None.
        visual_params: extraction parameters.
        progress: the worker shows a per-frame progress bar.

    Yields:
        `LipsReader.result` of the started request, or None where nothing could be started (the
        caller loads the features itself).
    """
    with lips_reader() as reader:
        if reader is None:
            yield None
            return
        reader.request(video, cache_dir, visual_params, progress)
        yield reader.result


def _serve(connection: Connection, parent_end: Connection) -> None:
    """The worker: answer each request with `load_shot`'s features or error, until the parent hangs up."""
    from avsync.errors import AvsyncError

    parent_end.close()  # the fork's copy: with it open, the parent hanging up would never reach `recv`
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the command's handler (`avsync.cli`): a stop is silent

    while True:
        try:
            video, cache_dir, visual_params, progress = connection.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            message = ("features", load_shot(video, cache_dir, visual_params, progress))
        except AvsyncError as exc:
            message = ("error", exc)
        except KeyboardInterrupt:
            return
        except Exception:  # a bug: its traceback goes to the parent, which raises it
            message = ("crash", traceback.format_exc())
        try:
            connection.send(message)
        except (OSError, KeyboardInterrupt):  # the parent has gone, or Ctrl-C
            return
