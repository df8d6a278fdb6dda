"""Known-truth warps: re-time a clip's video by a frame map and keep the truth.

A warp is a :class:`FrameMap`: ``src_index[i]`` is the original frame the warped video shows at
output frame ``i``. The original clip is in sync with its reference (frame ``k`` of the video
belongs at frame ``k`` of the reference, both 25 fps), so the truth of an alignment of the warped
video against the unchanged reference is: warped frame ``i`` belongs at reference frame
``src_index[i]``, and the constant offset that fits most frames is ``median(i - src_index[i])``
frames (``offset = t_video - t_ref``; positive = video late).

Kinds (all deterministic from the seed):

* ``shift``: a constant shift ``s`` in [-15, 15] frames, never 0. ``s > 0``: the video starts
  ``s`` frames into the reference (it covers only part of it; offset ``-s``). ``s < 0``: the video
  starts ``|s|`` frames before the reference, holding its first frame (offset ``+|s|``).
* ``tempo``: speed ``rate`` in [0.9, 1.1] (at least 3 % away from 1), starting ``s0`` in
  [0, 15] frames into the reference: ``src_index = round(s0 + i * rate)``.
* ``cut``: 10-50 frames removed in the middle third.
* ``freeze``: one frame in the middle third held for 10-40 extra frames.
* ``combo``: tempo, then a cut, then a freeze, in that order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsync.conventions import FPS
from avsync.errors import AvsyncError

WARP_KINDS = ("shift", "tempo", "cut", "freeze", "combo")
MAX_SHIFT = 15
MIN_FRAMES = 150
"""Shortest clip a warp accepts (6 s at 25 fps): room for a 50-frame cut in the middle third."""


@dataclass(frozen=True)
class FrameMap:
    """Which original frame each output frame shows, with how the map was made.

    Attributes:
        src_index: int64 [N_out], non-decreasing, within ``[0, n_source)``.
        n_source: frames of the original clip (and of its reference).
        kind: one of ``WARP_KINDS`` (or ``identity``).
        params: the drawn parameters (shift, rate, cut/freeze position and length).
    """

    src_index: np.ndarray
    n_source: int
    kind: str
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.src_index)

    @property
    def true_offset_frames(self) -> float:
        """Best constant offset ``median(i - src_index[i])`` in frames (positive: video late)."""
        return float(np.median(np.arange(len(self.src_index)) - self.src_index))

    def to_dict(self) -> dict:
        """JSON-ready form (``src_index`` as a list)."""
        return {"kind": self.kind, "n_source": self.n_source, "params": self.params, "src_index": self.src_index.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> FrameMap:
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(data["src_index"], np.int64), int(data["n_source"]), data["kind"], dict(data.get("params", {})))


def _shift(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict]:
    s = int(rng.choice(np.r_[np.arange(-MAX_SHIFT, 0), np.arange(1, MAX_SHIFT + 1)]))
    if s > 0:
        src = np.arange(s, n)
    else:
        src = np.r_[np.zeros(-s, np.int64), np.arange(0, n + s)]
    return src, {"shift": s}


def _tempo(rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict]:
    rate = float(rng.choice([-1, 1]) * rng.uniform(0.03, 0.1) + 1.0)
    start = int(rng.integers(0, MAX_SHIFT + 1))
    n_out = int(np.floor((n - 1 - start) / rate)) + 1
    src = np.round(start + np.arange(n_out) * rate).astype(np.int64)
    return src, {"rate": rate, "start": start}


def _cut(rng: np.random.Generator, src: np.ndarray) -> tuple[np.ndarray, dict]:
    n = len(src)
    length = int(rng.integers(10, 51))
    at = int(rng.integers(n // 3, max(n // 3 + 1, 2 * n // 3 - length)))
    return np.r_[src[:at], src[at + length :]], {"cut_at": at, "cut_frames": length}


def _freeze(rng: np.random.Generator, src: np.ndarray) -> tuple[np.ndarray, dict]:
    n = len(src)
    length = int(rng.integers(10, 41))
    at = int(rng.integers(n // 3, max(n // 3 + 1, 2 * n // 3)))
    return np.r_[src[: at + 1], np.full(length, src[at]), src[at + 1 :]], {"freeze_at": at, "freeze_frames": length}


def make_warp(kind: str, n_frames: int, seed: int | np.random.Generator, *, min_frames: int = MIN_FRAMES) -> FrameMap:
    """Draw a warp of a clip of ``n_frames`` frames, deterministically from ``seed``.

    Args:
        kind: one of ``WARP_KINDS`` (see the module docstring).
        n_frames: length of the original clip in frames (at least ``MIN_FRAMES``).
        seed: an int or a numpy Generator.
        min_frames: the shortest clip accepted.

    Returns:
        The :class:`FrameMap`.
    """
    if kind not in WARP_KINDS:
        raise ValueError(f"unknown warp kind {kind!r}; choose from {', '.join(WARP_KINDS)}")
    if n_frames < min_frames:
        raise ValueError(f"a warp needs a clip of at least {min_frames} frames, got {n_frames}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    identity = np.arange(n_frames, dtype=np.int64)
    if kind == "shift":
        src, params = _shift(rng, n_frames)
    elif kind == "tempo":
        src, params = _tempo(rng, n_frames)
    elif kind == "cut":
        src, params = _cut(rng, identity)
    elif kind == "freeze":
        src, params = _freeze(rng, identity)
    else:
        src, params = _tempo(rng, n_frames)
        src, cut_params = _cut(rng, src)
        src, freeze_params = _freeze(rng, src)
        params = {**params, **cut_params, **freeze_params}
    return FrameMap(src.astype(np.int64), n_frames, kind, params)


def apply_frame_map(array: np.ndarray, frame_map: FrameMap) -> np.ndarray:
    """Re-index per-frame data (mouth crops, validity, landmarks, frames) by a frame map.

    Args:
        array: [T, ...] with ``T == frame_map.n_source``.
        frame_map: the warp.

    Returns:
        [N_out, ...] with row ``i = array[src_index[i]]``.
    """
    if len(array) != frame_map.n_source:
        raise ValueError(f"array has {len(array)} frames, the frame map expects {frame_map.n_source}")
    return array[frame_map.src_index]


def warp_video_file(src: str | Path, dst: str | Path, frame_map: FrameMap, *, fps: float = FPS) -> Path:
    """Write a warped copy of a video (no audio track) and its truth beside it.

    The source is decoded at ``fps`` (so frame indices are model frames), re-indexed, and
    encoded as H.264 MP4 through :func:`avsync.io.media.write_video`; the frame map goes to
    ``dst`` with suffix ``.truth.json``. Both writes are atomic.

    Args:
        src: the original video (in sync with its reference).
        dst: the output ``.mp4``; must differ from ``src``.
        frame_map: the warp of the first ``n_source`` decoded frames (the rest is left out).
        fps: the frame rate of the frame map.

    Returns:
        The path of the truth JSON.

    Raises:
        AvsyncError: ``dst`` is the input, or the clip length does not match the map.
    """
    from avsync.io.media import atomic_path, read_video, write_video

    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise AvsyncError("refusing to overwrite the input video", dst)
    video = read_video(src, fps=fps)
    if len(video.frames) < frame_map.n_source:
        raise AvsyncError(f"video has {len(video.frames)} frames at {fps:g} fps, the frame map needs {frame_map.n_source}", src)
    write_video(dst, apply_frame_map(video.frames[: frame_map.n_source], frame_map), fps=fps, reproducible=True)
    truth_path = dst.with_suffix(".truth.json")
    with atomic_path(truth_path) as temporary:
        temporary.write_text(json.dumps({"fps": fps, "source": str(src), **frame_map.to_dict()}))
    return truth_path
