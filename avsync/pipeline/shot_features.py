"""A shot's visual features (mouth crops, landmarks), checked, optionally read in a process of its own.

`load_shot` decodes the video, follows the face and cuts the mouth crops (through the feature
cache when one is given). Most of that time is dlib's face detection and landmarks, which hold
Python's GIL: a thread cannot run them beside the model work. `shot_in_background` runs
`load_shot` in a forked child instead, started before torch is imported, so that on a machine
with two or more cores the parent imports torch, loads the model and the music and embeds the
music while the child reads the lips (`avsync align` on one shot). The child never imports torch
(`avsync.features.extract`'s video path needs numpy, OpenCV, PyAV and dlib only) and sends the
features back through a pipe; a user error in it (`avsync.errors.AvsyncError`) is raised again in
the parent, one line as always.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection

from avsync.errors import MediaError
from avsync.features.extract import VisualFeatures, VisualParams, extract_visual
from avsync.pipeline.checks import MIN_VIDEO_S


def load_shot(video: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None,
              visual_params: VisualParams = VisualParams()) -> VisualFeatures:
    """The video's mouth crops and landmarks, checked for length and for a face.

    Args:
        video: the video.
        cache_dir: feature cache folder, or None to compute without caching.
        visual_params: extraction parameters (which face to follow among several, ...).

    Raises:
        MediaError: unreadable video, too short, or without any face.
    """
    if cache_dir is None:
        visual = extract_visual(video, visual_params)
    else:
        from avsync.features.cache import FeatureCache

        visual = FeatureCache(cache_dir).visual(video, visual_params)
    if len(visual) < MIN_VIDEO_S * visual.fps:
        raise MediaError(f"is too short to align ({len(visual)} frames at {visual.fps:g} fps)", video)
    if not visual.valid.any():
        raise MediaError("shows no face in any frame (nothing to read the lips from)", video)
    return visual


def can_fork() -> bool:
    """Whether a child can be forked safely now: the platform forks, and torch (whose thread pools
    do not survive a fork) is not loaded yet."""
    return "fork" in multiprocessing.get_all_start_methods() and "torch" not in sys.modules


@contextmanager
def shot_in_background(video: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None,
                       visual_params: VisualParams = VisualParams()) -> Iterator[Callable[[], VisualFeatures] | None]:
    """Start `load_shot` in a forked child; yields the function that waits for its result.

    Where a fork is not safe (`can_fork`), nothing starts and None is yielded: the caller loads
    the features itself. Leaving the context stops a child whose result was not asked for (an
    error or Ctrl-C in the parent).

    Args:
        video: the video.
        cache_dir: feature cache folder, or None.
        visual_params: extraction parameters.

    Yields:
        ``result()``: the `VisualFeatures`; raises what `load_shot` raised in the child
        (`MediaError` and the other `AvsyncError` kinds), RuntimeError when the child died. None
        where nothing was started.
    """
    if not can_fork():
        yield None
        return
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    sys.stdout.flush()  # a fork copies unwritten output, which the child would write again
    sys.stderr.flush()
    child = context.Process(target=_child, args=(sender, video, cache_dir, visual_params), name="avsync-lips", daemon=True)
    child.start()
    sender.close()

    def result() -> VisualFeatures:
        try:
            kind, payload = receiver.recv()
        except EOFError:
            child.join()
            raise RuntimeError(f"reading the lips of {video} stopped (the worker process ended with status {child.exitcode})") from None
        if kind == "error":
            raise payload
        if kind == "crash":
            raise RuntimeError(f"reading the lips of {video} failed in the worker process:\n{payload}")
        return payload

    try:
        yield result
    finally:
        receiver.close()
        if child.is_alive():
            child.terminate()
        child.join()


def _child(sender: Connection, video: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None,
           visual_params: VisualParams) -> None:
    """The forked worker: `load_shot`, its result or error sent back through `sender`."""
    from avsync.errors import AvsyncError

    try:
        message = ("features", load_shot(video, cache_dir, visual_params))
    except AvsyncError as exc:
        message = ("error", exc)
    except KeyboardInterrupt:
        return
    except Exception:  # a bug: its traceback goes to the parent, which raises it
        message = ("crash", traceback.format_exc())
    try:
        sender.send(message)
    except (BrokenPipeError, OSError):  # the parent has gone (Ctrl-C)
        pass
