"""Metrics on hand-checked numbers."""

from __future__ import annotations

import numpy as np
import pytest

from avsync.align.dtw import alignment_cost
from avsync.align.timemap import TimeMap
from avsync.evaluation.metrics import frame_errors, offset_accuracy


def test_alignment_cost_is_mean_over_path_cells() -> None:
    cost = np.arange(12, dtype=float).reshape(3, 4)
    assert alignment_cost(cost, np.array([[0, 0], [1, 1], [2, 3]])) == pytest.approx((0 + 5 + 11) / 3)


def test_frame_errors() -> None:
    # Map: video frame i -> reference frame i + 2 (in seconds at 25 fps).
    time_map = TimeMap(np.array([[2.0, 0.0], [11.0, 9.0]]) / 25, 25.0)
    truth = np.arange(10) + 2
    truth[7:] += np.array([1, 2, 3])  # the last three frames belong 1, 2, 3 frames later
    errors = frame_errors(time_map, truth)
    np.testing.assert_allclose(errors.per_frame, [0] * 7 + [1, 2, 3], atol=1e-9)
    assert errors.mean == pytest.approx(0.6)
    assert errors.median == 0.0
    assert errors.within1 == pytest.approx(0.8)


def test_offset_accuracy() -> None:
    assert offset_accuracy([0, 1, -1, 2, 5], [0, 0, 0, 0, 3]) == pytest.approx(0.6)
