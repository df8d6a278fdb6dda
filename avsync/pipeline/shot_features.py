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
the parent, one line as always. For `avsync align` it also sends the mouth crops as it cuts them
(`LipsReader.request`'s ``stream_crops``), which the parent embeds while it waits for the rest
(`avsync.align.cost.VideoEmbedder`).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection

import numpy as np

from avsync.errors import MediaError
from avsync.features.extract import VisualFeatures, VisualParams
from avsync.pipeline.checks import MIN_VIDEO_S


def load_shot(video: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None,
              visual_params: VisualParams = VisualParams(), progress: bool = False,
              on_crops: Callable[[list[np.ndarray]], None] | None = None) -> VisualFeatures:  # fmt: skip
    """The video's mouth crops and landmarks, checked for length and for a face.

    Args:
        video: the video.
        cache_dir: feature cache folder, or None to compute without caching.
        visual_params: extraction parameters (which face to follow among several, ...).
        progress: show a per-frame progress bar while reading the lips.
        on_crops: given the mouth crops as they are cut (`avsync.features.extract.extract_visual`).

    Raises:
        MediaError: unreadable video, too short, or without any face.
    """
    from avsync.features.cache import visual_features

    visual = visual_features(video, cache_dir, visual_params, progress, on_crops)
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
                visual_params: VisualParams = VisualParams(), progress: bool = False, stream_crops: bool = False) -> None:
        """Start reading a shot's lips (at most one request outstanding; `load_shot`'s arguments).

        `stream_crops`: the worker also sends the mouth crops as it cuts them, for `result`'s
        ``on_crops`` (only for a caller that waits for the result next: they queue in the
        worker until it does).
        """
        if self._outstanding is not None:
            raise RuntimeError(f"the lips of {self._outstanding} are still being read")
        self._connection.send((video, cache_dir, visual_params, progress, stream_crops))
        self._outstanding = os.fspath(video)

    def result(self, on_crops: Callable[[np.ndarray], None] | None = None) -> VisualFeatures:
        """The requested shot's features.

        Args:
            on_crops: given the mouth crops (uint8 ``[K, 64, 64]``) the worker sends while it
                reads the shot (a request with ``stream_crops``), in order, in this thread.

        Raises:
            AvsyncError: what `load_shot` raised in the worker (`MediaError`, ...), one line as always.
            RuntimeError: the worker failed (its traceback in the message) or died.
        """
        video, self._outstanding = self._outstanding, None
        if video is None:
            raise RuntimeError("no shot was requested")
        while True:
            try:
                kind, payload = self._connection.recv()
            except (EOFError, OSError):  # OSError: it ended in the middle of sending
                self._process.join()
                raise RuntimeError(f"reading the lips of {video} stopped (the worker process ended with status "
                                   f"{self._process.exitcode})") from None  # fmt: skip
            if kind != "crops":
                break
            if on_crops is not None:
                on_crops(payload)
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
        reader.request(video, cache_dir, visual_params, progress, stream_crops=True)
        yield reader.result


def _serve(connection: Connection, parent_end: Connection) -> None:
    """The worker: answer each request with `load_shot`'s features or error, until the parent hangs up."""
    from avsync.errors import AvsyncError

    parent_end.close()  # the fork's copy: with it open, the parent hanging up would never reach `recv`
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the command's handler (`avsync.cli`): a stop is silent

    while True:
        try:
            video, cache_dir, visual_params, progress, stream_crops = connection.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        sender = _CropSender(connection) if stream_crops else None
        try:
            message = ("features", load_shot(video, cache_dir, visual_params, progress, None if sender is None else sender.add))
        except AvsyncError as exc:
            message = ("error", exc)
        except KeyboardInterrupt:
            return
        except Exception:  # a bug: its traceback goes to the parent, which raises it
            message = ("crash", traceback.format_exc())
        finally:
            if sender is not None:
                sender.close()  # every crop sent before the features (or the error)
        try:
            connection.send(message)
        except (OSError, KeyboardInterrupt):  # the parent has gone, or Ctrl-C
            return


STREAM_CHUNK = 32
"""Mouth crops the worker sends at a time while it reads a shot (128 KB)."""


class _CropSender:
    """Sends the worker's mouth crops to the parent in chunks, from a thread of its own: the parent
    reads them only once it waits for the shot, and the lips are read on meanwhile."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._pending: list[np.ndarray] = []
        self._chunks: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._send, name="avsync-crops", daemon=True)
        self._thread.start()

    def add(self, mouth_crops: list[np.ndarray]) -> None:
        """Queue the next crops (sent `STREAM_CHUNK` at a time)."""
        self._pending.extend(mouth_crops)
        if len(self._pending) >= STREAM_CHUNK:
            self._chunks.put(np.stack(self._pending))
            self._pending = []

    def close(self) -> None:
        """Send what is left and wait until everything is sent (or the parent has gone)."""
        if self._pending:
            self._chunks.put(np.stack(self._pending))
            self._pending = []
        self._chunks.put(None)
        self._thread.join()

    def _send(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            try:
                self._connection.send(("crops", chunk))
            except OSError:  # the parent has gone: drop the rest
                while self._chunks.get() is not None:
                    pass
                return
