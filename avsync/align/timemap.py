"""From a DTW path to a time map, and the best constant offset with its confidence.

A :class:`TimeMap` is a monotone, piecewise-linear map between reference time and video time,
stored as knots ``[[t_ref, t_video], ...]`` in seconds: both columns non-decreasing, ``t_video``
strictly increasing, covering the whole video (first knot at video time 0, last at the last video
frame). Between knots the map is linear. Two knots with the same ``t_ref`` are a *freeze in the
video* (several video frames show the same reference moment; re-timing skips them); a long
stretch of ``t_ref`` over a short stretch of ``t_video`` is a *cut in the video* (reference
content the video lacks; re-timing holds a frame).

Offsets follow one sign everywhere: ``offset = t_video - t_ref`` for the same event, positive
when the video is late.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from avsync.align.dtw import STEP_CUT, STEP_FREEZE, Alignment
from avsync.align.tuning import JITTER_WINDOW, MAP_MIN_PIECE, MAP_TOLERANCE
from avsync.conventions import FPS
from avsync.smoothing import moving_average


@dataclass
class TimeMap:
    """Monotone piecewise-linear map between reference and video time.

    Attributes:
        knots: float64 [K, 2], columns ``(t_ref, t_video)`` in seconds.
        fps: frame rate of both axes (25).
    """

    knots: np.ndarray
    fps: float

    def video_time(self, t_ref: np.ndarray | float) -> np.ndarray:
        """Video time to show at each reference time (after a freeze knot pair: the later one).

        Args:
            t_ref: float [...] seconds; clamped to the map's reference range.

        Returns:
            float [...] seconds.
        """
        t = np.asarray(t_ref, dtype=np.float64)
        ref, vid = self.knots[:, 0], self.knots[:, 1]
        k = np.clip(np.searchsorted(ref, t, side="right"), 1, len(ref) - 1)
        r0, r1, v0, v1 = ref[k - 1], ref[k], vid[k - 1], vid[k]
        span = np.where(r1 > r0, r1 - r0, 1.0)
        inside = np.clip((t - r0) / span, 0.0, 1.0)
        out = np.where(r1 > r0, v0 + inside * (v1 - v0), v1)
        out = np.where(t < ref[0], vid[0], out)
        return np.where(t >= ref[-1], vid[-1], out)

    def ref_time(self, t_video: np.ndarray | float) -> np.ndarray:
        """Reference time of each video time (well defined: ``t_video`` is strictly increasing).

        Args:
            t_video: float [...] seconds; clamped to the video's range.

        Returns:
            float [...] seconds.
        """
        return np.interp(t_video, self.knots[:, 1], self.knots[:, 0])

    def ref_frames(self, n_video_frames: int) -> np.ndarray:
        """Reference position (fractional frame) of video frames ``0..n-1``: float [n]."""
        return self.ref_time(np.arange(n_video_frames) / self.fps) * self.fps

    def to_list(self) -> list[list[float]]:
        """Knots as ``[[t_ref, t_video], ...]`` (JSON-ready)."""
        return [[round(float(r), 6), round(float(v), 6)] for r, v in self.knots]


def _line_sse(prefix: np.ndarray, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Squared error of the least-squares line over ``[a, b)`` from prefix sums of
    ``(1, x, y, xx, xy, yy)``."""
    n, sx, sy, sxx, sxy, syy = (prefix[b] - prefix[a]).T
    vxx = sxx - sx * sx / n
    vxy = sxy - sx * sy / n
    vyy = syy - sy * sy / n
    return vyy - np.where(vxx > 0, vxy * vxy / np.where(vxx > 0, vxx, 1.0), 0.0)


def _line_pieces(rows: np.ndarray, refs: np.ndarray, tolerance: float, min_piece: int) -> list[tuple[int, int, np.ndarray]]:
    """Split ``[0, len)`` until a least-squares line fits each piece within ``tolerance``.

    The misfit is the residual averaged over ``JITTER_WINDOW`` frames, so alternating +-1 frame
    jitter never splits a piece while a sustained deviation (a tempo change) does. A piece that
    misfits is split where two lines fit best.
    """
    x = rows - rows[0]
    prefix = np.zeros((len(rows) + 1, 6))
    prefix[1:] = np.cumsum(np.stack([np.ones_like(x), x, refs, x * x, x * refs, refs * refs], axis=1), axis=0)
    pieces = []
    stack = [(0, len(rows))]
    while stack:
        a, b = stack.pop()
        coef = np.polyfit(rows[a:b], refs[a:b], 1) if b - a >= 2 else np.array([0.0, float(refs[a])])
        resid = np.abs(moving_average(np.polyval(coef, rows[a:b]) - refs[a:b], JITTER_WINDOW, mode="nearest"))
        if resid.max() <= tolerance or b - a < 2 * min_piece:
            pieces.append((a, b, coef))
            continue
        splits = np.arange(a + min_piece, b - min_piece + 1)
        split = int(splits[np.argmin(_line_sse(prefix, a, splits) + _line_sse(prefix, splits, b))])
        stack += [(split, b), (a, split)]
    return sorted(pieces, key=lambda p: p[0])


def _smooth_run(rows: np.ndarray, refs: np.ndarray, tolerance: float, min_piece: int) -> list[tuple[float, float]]:
    """Knots (video frame, reference frame) of a continuous piecewise-linear fit of one run."""
    pieces = _line_pieces(rows, refs, tolerance, min_piece)
    knots = [(float(rows[0]), float(np.polyval(pieces[0][2], rows[0])))]
    for (_, b, left), (_, _, right) in zip(pieces[:-1], pieces[1:]):
        x = float(rows[b])  # first row of the right piece: average both fits there
        knots.append((x, 0.5 * (np.polyval(left, x) + np.polyval(right, x))))
    if len(rows) > 1:
        knots.append((float(rows[-1]), float(np.polyval(pieces[-1][2], rows[-1]))))
    return knots


def path_to_time_map(alignment: Alignment, fps: float = FPS, *, tolerance: float = MAP_TOLERANCE,
                     min_piece: int = MAP_MIN_PIECE) -> TimeMap:
    """Smooth a DTW path into a :class:`TimeMap`.

    The path is cut into runs at the kernel's cut steps and freeze runs (the DTW pays a penalty
    for those, so noise does not create them and they are kept as they are). Each run between
    events is fitted by least-squares lines, split recursively where a line misses the path by
    more than ``tolerance`` frames on a 9-frame average (never into pieces shorter than
    ``min_piece``), and joined
    continuously; jitter of the path within +-2 frames therefore disappears while a true tempo
    change survives as a knot (a tolerance of 2 frames instead of 1: see
    `avsync.align.tuning.MAP_TOLERANCE` for the measurements). A freeze becomes two knots with equal reference time; a cut becomes a
    one-video-frame step across the skipped reference frames.

    Args:
        alignment: from :func:`avsync.align.dtw.align_video`, N video frames.
        fps: frame rate of both axes.
        tolerance: largest 9-frame mean residual (frames) a line may leave within a run
            (`avsync.align.tuning.MAP_TOLERANCE`, 2).
        min_piece: shortest line piece in frames (`avsync.align.tuning.MAP_MIN_PIECE`, 25).

    Returns:
        The time map, covering video frames ``0..N-1``.
    """
    ref = alignment.ref_index.astype(np.float64)
    steps = alignment.steps
    n = len(ref)
    frozen = steps == STEP_FREEZE
    knots: list[tuple[float, float]] = []
    start = 0
    while start < n:
        if frozen[start]:  # a freeze run: hold the reference position of the frame before it
            end = start
            while end + 1 < n and frozen[end + 1]:
                end += 1
            held = knots[-1][1] if knots else ref[start]
            knots.append((float(end), held))
        else:
            end = start
            while end + 1 < n and not frozen[end + 1] and steps[end + 1] != STEP_CUT:
                end += 1
            rows = np.arange(start, end + 1, dtype=np.float64)
            knots += _smooth_run(rows, ref[start : end + 1], tolerance, min_piece)
        start = end + 1
    frames = np.array(knots)
    frames[:, 1] = np.maximum.accumulate(np.clip(frames[:, 1], 0.0, None))
    return TimeMap(knots=np.stack([frames[:, 1], frames[:, 0]], axis=1) / fps, fps=fps)


@dataclass
class OffsetEstimate:
    """Best constant offset from a cost matrix, SyncNet style.

    Attributes:
        offset_frames: ``i - j`` of the best diagonal (positive: video late).
        offset_s: the same in seconds.
        confidence: ``median(curve) - min(curve)``, in cost units (z-units for normalised
            costs): how far the best offset stands out from a typical one.
        offsets: int64 [D] the candidate offsets in frames.
        curve: float64 [D] mean cost along each candidate diagonal.
    """

    offset_frames: int
    offset_s: float
    confidence: float
    offsets: np.ndarray
    curve: np.ndarray


@numba.njit(cache=True, nogil=True)
def diagonal_sums(cost: np.ndarray) -> np.ndarray:
    """Sum of ``cost[i, i - d]`` for every ``d`` in ``[-(M-1), N-1]`` (stored at ``d + M - 1``)."""
    n, m = cost.shape
    sums = np.zeros(n + m - 1)
    for i in range(n):
        for j in range(m):
            sums[i - j + m - 1] += cost[i, j]
    return sums


def estimate_offset(cost: np.ndarray, fps: float = FPS, *, max_offset: int | None = None, min_overlap: int | None = None) -> OffsetEstimate:
    """Average the cost along each diagonal ``j = i - d`` and take the best ``d``.

    Args:
        cost: float [N, M] (rows video frames, columns reference frames).
        fps: frame rate.
        max_offset: largest ``|d|`` tried; None tries every offset with enough overlap.
        min_overlap: fewest cells a diagonal must have; default ``min(N, M) // 2``.

    Returns:
        The :class:`OffsetEstimate`.
    """
    n, m = cost.shape
    min_overlap = max(1, min(n, m) // 2 if min_overlap is None else min_overlap)
    low, high = -(m - 1), n - 1
    if max_offset is not None:
        low, high = max(low, -max_offset), min(high, max_offset)
    sums = diagonal_sums(np.ascontiguousarray(cost, dtype=np.float64))  # index d + m - 1
    all_offsets = np.arange(-(m - 1), n)
    lengths = np.minimum(n, all_offsets + m) - np.maximum(0, all_offsets)
    keep = (all_offsets >= low) & (all_offsets <= high) & (lengths >= min_overlap)
    if not keep.any():
        raise ValueError(f"no offset overlaps {min_overlap} frames for a {n}x{m} cost matrix")
    offsets_arr, curve_arr = all_offsets[keep].astype(np.int64), sums[keep] / lengths[keep]
    best = int(np.argmin(curve_arr))
    return OffsetEstimate(
        offset_frames=int(offsets_arr[best]),
        offset_s=float(offsets_arr[best] / fps),
        confidence=float(np.median(curve_arr) - curve_arr[best]),
        offsets=offsets_arr,
        curve=curve_arr,
    )


def constant_time_map(offset_s: float, video_duration: float, fps: float = FPS) -> TimeMap:
    """The time map of a constant offset: video time ``t_ref + offset_s`` at reference time ``t_ref``.

    Args:
        offset_s: ``t_video - t_ref`` in seconds.
        video_duration: seconds of video covered (from video time 0).
        fps: the map's frame rate.

    Returns:
        A two-knot :class:`TimeMap`.
    """
    knots = np.array([[-offset_s, 0.0], [video_duration - offset_s, video_duration]], dtype=np.float64)
    return TimeMap(knots=knots, fps=fps)
