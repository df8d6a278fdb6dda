"""Path -> time map smoothing, and the constant offset estimate."""

from __future__ import annotations

import numpy as np
import pytest

from avsync.align.dtw import (
    STEP_CUT,
    STEP_DIAG,
    STEP_FREEZE,
    STEP_START,
    Alignment,
    DTWConfig,
    align_video,
)
from avsync.align.timemap import TimeMap, estimate_offset, path_to_time_map
from avsync.evaluation.metrics import frame_errors
from avsync.evaluation.warp import WARP_KINDS, make_warp


def alignment_of(ref: np.ndarray, steps: np.ndarray | None = None) -> Alignment:
    if steps is None:
        steps = np.full(len(ref), STEP_DIAG, np.int8)
        steps[0] = STEP_START
    return Alignment(np.asarray(ref, np.int64), np.asarray(steps, np.int8), 0.0)


def test_jitter_is_smoothed_into_one_line() -> None:
    rng = np.random.default_rng(0)
    rows = np.arange(300)
    true = 10 + rows * 1.05
    jittered = np.round(true + rng.integers(-1, 2, len(rows)))
    time_map = path_to_time_map(alignment_of(np.maximum.accumulate(jittered)))
    assert len(time_map.knots) == 2
    assert np.abs(time_map.ref_frames(300) - true).max() < 0.6
    assert time_map.knots[0, 1] == 0.0 and time_map.knots[-1, 1] == pytest.approx(299 / 25)


def test_tempo_change_gets_a_knot() -> None:
    rows = np.arange(400)
    true = np.where(rows < 200, rows, 200 + (rows - 200) * 1.1)
    time_map = path_to_time_map(alignment_of(np.round(true)))
    errors = np.abs(time_map.ref_frames(400) - true)
    assert errors.max() < 1.5 and errors.mean() < 0.5
    assert 3 <= len(time_map.knots) <= 6


def test_cut_and_freeze_survive() -> None:
    ref = np.r_[np.arange(0, 100), np.arange(140, 200), np.full(20, 199), np.arange(200, 260)]
    steps = np.full(len(ref), STEP_DIAG, np.int8)
    steps[0] = STEP_START
    steps[100] = STEP_CUT
    steps[160:180] = STEP_FREEZE
    time_map = path_to_time_map(alignment_of(ref, steps))
    assert np.abs(time_map.ref_frames(len(ref)) - ref).max() < 1e-6
    # The freeze is a vertical segment: reference 199 maps to the end of the frozen stretch.
    assert time_map.video_time(199 / 25) == pytest.approx(179 / 25)
    assert time_map.video_time(199.5 / 25) == pytest.approx(179.5 / 25)
    # The cut: reference frames 100..139 are missing in the video, the video time barely moves.
    assert time_map.video_time(120 / 25) == pytest.approx((99 + 21 / 41) / 25)
    knots = time_map.knots
    assert (np.diff(knots[:, 0]) >= 0).all() and (np.diff(knots[:, 1]) > 0).all()


def test_video_time_clamps_outside_the_map() -> None:
    time_map = TimeMap(np.array([[1.0, 0.0], [2.0, 1.0]]), 25.0)
    np.testing.assert_allclose(time_map.video_time([0.0, 1.5, 3.0]), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(time_map.ref_time([0.0, 0.25, 5.0]), [1.0, 1.25, 2.0])
    assert time_map.to_list() == [[1.0, 0.0], [2.0, 1.0]]


def test_offset_sign_and_confidence() -> None:
    rng = np.random.default_rng(1)
    n = 200
    cost = rng.normal(0, 1, (n, n))
    late = 5  # video frame i shows reference frame i - 5: the video is late
    i = np.arange(late, n)
    cost[i, i - late] -= 3.0
    estimate = estimate_offset(cost)
    assert estimate.offset_frames == late and estimate.offset_s == pytest.approx(0.2)
    assert estimate.confidence > 2.0
    noise = estimate_offset(rng.normal(0, 1, (n, n)))
    assert noise.confidence < 0.5 * estimate.confidence
    limited = estimate_offset(cost, max_offset=3)
    assert limited.offsets.min() == -3 and limited.offsets.max() == 3


@pytest.mark.parametrize("kind", WARP_KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_pipeline_recovers_every_warp_kind_from_a_noisy_cost(kind: str, seed: int) -> None:
    """Warp -> cost with the truth as a noisy valley -> DTW -> time map -> frame error."""
    n_source = 500
    warp = make_warp(kind, n_source, seed)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(warp))
    # A valley a few frames wide around the true cell, like a model's cost, plus noise.
    distance = np.abs(np.arange(n_source)[None, :] - warp.src_index[:, None])
    cost = -np.exp(-0.5 * (distance / 1.5) ** 2) * 2.0 + rng.normal(0, 0.5, (len(warp), n_source))
    alignment = align_video(cost, DTWConfig())
    errors = frame_errors(path_to_time_map(alignment), warp.src_index)
    assert errors.within1 > 0.9, (kind, errors.mean, errors.within1)
    assert errors.median <= 1.0
    assert rows[-1] / 25 == pytest.approx(path_to_time_map(alignment).knots[-1, 1])
