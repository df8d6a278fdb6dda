"""Alignment metrics (pure functions).

* :func:`frame_errors`: per video frame, how far (in reference frames) the time map puts it from
  where it belongs; mean, median and the share within +-1 frame.
* :func:`offset_accuracy`: the share of constant-offset estimates within +-1 frame of the truth.
* :func:`wilson_interval`: a 95 % interval of a share from its counts (e.g. "reliable" right on k of n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsync.align.timemap import TimeMap


@dataclass
class FrameErrors:
    """Frame error of a time map.

    Attributes:
        per_frame: float [N] ``|found - true|`` reference position of each video frame, in frames.
        mean, median: of ``per_frame``.
        within1: share of frames with error <= 1 frame.
    """

    per_frame: np.ndarray
    mean: float
    median: float
    within1: float


def frame_errors(time_map: TimeMap, true_ref_index: np.ndarray) -> FrameErrors:
    """Compare where a time map puts each video frame with where it belongs.

    Args:
        time_map: the found map.
        true_ref_index: int [N], the reference frame each video frame belongs at
            (``FrameMap.src_index`` for a known warp).
    """
    true_ref_index = np.asarray(true_ref_index, np.float64)
    per_frame = np.abs(time_map.ref_frames(len(true_ref_index)) - true_ref_index)
    return FrameErrors(per_frame, float(per_frame.mean()), float(np.median(per_frame)), float((per_frame <= 1.0 + 1e-9).mean()))


def offset_accuracy(estimated: np.ndarray, truth: np.ndarray, tolerance: float = 1.0) -> float:
    """Share of offset estimates within ``tolerance`` frames of the truth.

    Args:
        estimated: float [K] offsets in frames.
        truth: float [K] true offsets in frames.
        tolerance: allowed error in frames.
    """
    error = np.abs(np.asarray(estimated, np.float64) - np.asarray(truth, np.float64))
    return float((error <= tolerance + 1e-9).mean())


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default).

    Args:
        successes: count of successes.
        trials: count of trials (0: the whole range, ``(0, 1)``).
        z: the normal quantile of the coverage (1.96: 95 %).

    Returns:
        ``(low, high)`` as shares.
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = z * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, float(centre - spread)), min(1.0, float(centre + spread))
