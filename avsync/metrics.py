"""Alignment metrics (pure functions).

* :func:`alignment_cost`: mean cost of the cells a DTW path visits (the DTW alignment cost
  normalised by path length, penalties excluded); lower is a better match.
* :func:`label_sequence_dtw`: the poster's Fig. 4 measure, DTW between the network's output list
  and the ground-truth label list, normalised by path length.
* :func:`frame_errors`: per video frame, how far (in reference frames) the time map puts it from
  where it belongs; mean, median and the share within +-1 frame.
* :func:`offset_accuracy`: the share of constant-offset estimates within +-1 frame of the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsync.align.dtw import dtw_classic
from avsync.align.timemap import TimeMap


def alignment_cost(cost: np.ndarray, path: np.ndarray) -> float:
    """Mean of ``cost`` over the cells of ``path``.

    Args:
        cost: float [N, M].
        path: int [L, 2] of ``(i, j)`` cells.
    """
    path = np.asarray(path)
    return float(cost[path[:, 0], path[:, 1]].mean())


def label_sequence_dtw(outputs: np.ndarray, labels: np.ndarray) -> float:
    """DTW distance between network outputs and labels, normalised by path length (Fig. 4).

    Local cost ``|output - label|``, symmetric steps; 0 for a perfect, in-order match.

    Args:
        outputs: float [A], e.g. match probabilities in [0, 1].
        labels: float [B], ground-truth labels (0/1).
    """
    outputs = np.asarray(outputs, np.float64).ravel()
    labels = np.asarray(labels, np.float64).ravel()
    path, total = dtw_classic(np.abs(outputs[:, None] - labels[None, :]))
    return total / len(path)


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
