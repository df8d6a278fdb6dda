"""Alignment metrics (pure functions).

* :func:`frame_errors`: per video frame, how far (in reference frames) the time map puts it from
  where it belongs; mean, median and the share within +-1 frame.
* :func:`offset_accuracy`: the share of constant-offset estimates within +-1 frame of the truth.
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
