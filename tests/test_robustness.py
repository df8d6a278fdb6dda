"""Stretches without a visible face or with lips that do not follow the vocal must not drag the path.

The logic is tested on constructed cost matrices: a matching diagonal in noise, with stretches
of rows that carry no match. Those rows hold noise correlated along diagonals, as a window
model's cost is (overlapping windows score alike); with a strong chance match added elsewhere they
lure a plain DTW path off and back (a detour). Lips that move over a voiceless reference (talking
between lines) are found from the landmarks; one slow test runs that end to end with the shipped
model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avsync.align.dtw import align_video
from avsync.align.robust import (
    lip_activity,
    mask_runs,
    robust_alignment,
    scored_rows,
    silent_talk_rows,
    unreliable_spans,
    weak_match_rows,
)

N_ROWS, N_COLS, TRUE_OFFSET = 400, 900, 200
SPAN = (150, 210)


def diagonal_cost(seed: int, ref_index: np.ndarray | None = None, strength: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Noise N(0, 1) with a match valley along ``ref_index`` (default ``i + TRUE_OFFSET``)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(N_ROWS)
    ref_index = rows + TRUE_OFFSET if ref_index is None else ref_index
    cost = rng.normal(0.0, 1.0, (N_ROWS, N_COLS))
    cost[rows, ref_index] -= strength
    cost[rows, np.minimum(ref_index + 1, N_COLS - 1)] -= strength / 2
    cost[rows, np.maximum(ref_index - 1, 0)] -= strength / 2
    return cost, ref_index


def diagonal_noise(rng: np.random.Generator, n_rows: int, n_cols: int, length: int = 16) -> np.ndarray:
    """N(0, 1) noise correlated along diagonals over `length` cells, like a window model's cost.

    Windows ``i`` and ``j`` share 15 of 16 frames with windows ``i+1`` and ``j+1``, so the score
    of mouth movements that match nothing still forms short diagonal valleys (spurious matches).
    """
    raw = rng.normal(0.0, 1.0, (n_rows + length, n_cols + length))
    summed = sum(raw[k : k + n_rows, k : k + n_cols] for k in range(length))
    return summed / np.sqrt(length)


def with_unmatched_span(cost: np.ndarray, seed: int) -> np.ndarray:
    """Rows of SPAN replaced by diagonal noise: lips that move but match nothing."""
    cost = cost.copy()
    cost[SPAN[0] : SPAN[1]] = diagonal_noise(np.random.default_rng(seed + 1000), SPAN[1] - SPAN[0], N_COLS)
    return cost


def test_mask_runs_merges_close_runs_and_drops_short_ones() -> None:
    mask = np.zeros(40, bool)
    mask[[2, 3, 4, 10, 11, 20, 30, 31, 32, 33]] = True
    assert mask_runs(mask) == [(2, 5), (10, 12), (20, 21), (30, 34)]
    assert mask_runs(mask, merge_gap=6) == [(2, 12), (20, 21), (30, 34)]
    assert mask_runs(mask, merge_gap=6, min_length=3) == [(2, 12), (30, 34)]
    assert mask_runs(np.zeros(5, bool)) == []


def test_rows_whose_window_is_mostly_faceless_are_not_scored() -> None:
    valid = np.ones(120, bool)
    valid[50:70] = False
    rows = scored_rows(valid)
    # Window of frame i is i-8 .. i+7; more than 4 faceless frames of 16 -> not scored.
    assert np.flatnonzero(~rows).tolist() == list(range(47, 74))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unmatched_stretch_is_flagged_and_bridged(seed: int) -> None:
    clean, truth = diagonal_cost(seed)
    cost = with_unmatched_span(clean, seed)
    robust_cost, robust, flagged = robust_alignment(cost, np.ones(N_ROWS, bool))
    assert np.abs(robust.ref_index - truth).max() <= 1
    runs = mask_runs(flagged)
    assert len(runs) == 1
    start, end = runs[0]
    # The flags cover the stretch, widened by at most half the one-second match window per side.
    assert SPAN[0] - 15 <= start <= SPAN[0] + 3 and SPAN[1] - 3 <= end <= SPAN[1] + 15
    assert (robust_cost[flagged] == 0).all() and (robust_cost[~flagged] == cost[~flagged]).all()


def test_faceless_rows_are_bridged_straight() -> None:
    cost, truth = diagonal_cost(3)
    informative = np.ones(N_ROWS, bool)
    informative[SPAN[0] : SPAN[1]] = False
    cost[~informative] = 0.0  # what the cost matrix holds for rows without a usable face
    _, alignment, flagged = robust_alignment(cost, informative)
    assert np.abs(alignment.ref_index - truth).max() <= 1
    assert not flagged.any()


def test_a_real_cut_in_the_video_is_followed_not_flagged() -> None:
    rows = np.arange(N_ROWS)
    truth = rows + TRUE_OFFSET + np.where(rows >= 200, 30, 0)  # 30 reference frames cut out of the video
    cost, _ = diagonal_cost(4, truth)
    _, alignment, flagged = robust_alignment(cost, np.ones(N_ROWS, bool))
    assert not flagged.any()
    assert (np.abs(alignment.ref_index - truth) <= 1).mean() >= 0.99


def test_a_clip_without_any_match_singles_nothing_out() -> None:
    rng = np.random.default_rng(5)
    cost = rng.normal(0.0, 1.0, (N_ROWS, N_COLS))
    alignment = align_video(cost)
    assert not weak_match_rows(cost, alignment.ref_index, np.ones(N_ROWS, bool)).any()


def test_unreliable_spans_are_reported_in_video_seconds() -> None:
    reasons = [""] * 100
    for index in [*range(10, 20), 23, 24, *range(60, 62), *range(80, 90)]:
        reasons[index] = "no face"
    for index in range(40, 50):
        reasons[index] = "lips do not follow the vocal"
    spans = unreliable_spans(reasons, 25.0)
    assert spans == [[0.4, 1.0, "no face"], [1.6, 2.0, "lips do not follow the vocal"], [3.2, 3.6, "no face"]]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_detour_lured_by_a_spurious_match_is_bridged(seed: int) -> None:
    # Rows 150-210 match nothing, and also match well 12 frames later (a chance match of lips
    # that do not follow the vocal); the plain path leaves its offset through a cut and comes
    # back to it (a detour); the robust one goes straight.
    clean, truth = diagonal_cost(seed)
    rows = np.arange(*SPAN)
    lure = with_unmatched_span(clean, seed)  # no true valley here ...
    lure[rows, rows + TRUE_OFFSET + 12] -= 3.0  # ... and a strong spurious one
    plain = align_video(lure)
    assert np.abs(plain.ref_index - truth)[slice(*SPAN)].max() > 3
    _, robust, flagged = robust_alignment(lure, np.ones(N_ROWS, bool))
    assert np.abs(robust.ref_index - truth).max() <= 1
    flagged_rows = np.flatnonzero(flagged)
    # The whole stretch, and at most a second (the path's way back, the widening) either side.
    assert flagged[slice(*SPAN)].all() and SPAN[0] - 25 <= flagged_rows[0] and flagged_rows[-1] < SPAN[1] + 25


def test_a_freeze_in_the_video_is_followed_not_flagged() -> None:
    rows = np.arange(N_ROWS)
    truth = rows + TRUE_OFFSET - np.clip(rows - 200, 0, 25)  # the video holds frame 200 for 25 frames
    cost, _ = diagonal_cost(7, truth)
    _, alignment, flagged = robust_alignment(cost, np.ones(N_ROWS, bool))
    assert not flagged.any()
    assert (np.abs(alignment.ref_index - truth) <= 1).mean() >= 0.99


def test_flags_that_grow_past_half_the_clip_single_nothing_out() -> None:
    # Unmatched stretches over 60% of the rows: singled out, they would be most of the clip.
    clean, truth = diagonal_cost(6)
    cost = clean.copy()
    rng = np.random.default_rng(7)
    for start in range(0, N_ROWS, 100):
        cost[start : start + 60] = diagonal_noise(rng, 60, N_COLS)
    _, alignment, flagged = robust_alignment(cost, np.ones(N_ROWS, bool))
    assert not flagged.any()


def opening_landmarks(opening: np.ndarray) -> np.ndarray:
    """Landmarks [T, 68, 2] of a face 100 px wide whose inner lips are `opening` x face width apart."""
    landmarks = np.zeros((len(opening), 68, 2))
    landmarks[:, 16, 0] = 100.0  # jaw right; jaw left (0) at x = 0
    landmarks[:, 66, 1] = 100.0 * opening  # lower inner lip below the upper one (62)
    return landmarks


def test_lip_activity_is_the_spread_of_the_opening() -> None:
    frames = np.arange(200)
    talking = 0.2 + 0.1 * np.sin(2 * np.pi * frames / 8)
    activity = lip_activity(opening_landmarks(np.where(frames < 100, 0.05, talking)))
    assert activity[:90].max() < 1e-6
    assert activity[110:190].min() > 0.05
    faceless = opening_landmarks(talking)
    faceless[40:60] = np.nan
    assert np.isfinite(lip_activity(faceless)).all()


def test_moving_lips_over_a_voiceless_reference_are_flagged() -> None:
    n = 300
    activity = np.full(n, 0.04)  # singing
    path_voiced = np.ones(n, bool)
    path_voiced[100:175] = False  # 3 s without voice: lips keep moving (talking between lines)
    path_voiced[200:250] = False  # 2 s without voice: lips at rest
    activity[200:250] = 0.005
    path_voiced[270:280] = False  # a short breath: too short for a voiceless second
    flagged = silent_talk_rows(activity, path_voiced, np.ones(n, bool))
    runs = mask_runs(flagged)
    assert len(runs) == 1
    start, end = runs[0]
    # The stretch, less the half second at each end whose window still holds voice.
    assert 100 <= start <= 115 and 160 <= end <= 175
    assert not silent_talk_rows(activity, np.zeros(n, bool), np.ones(n, bool)).any()  # no singing to compare with


@pytest.mark.slow
def test_talking_between_lines_is_reported_by_avsync_align(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end with the shipped model: a synthetic song whose singer talks for 2.5 s while the vocal rests
    (the mix as MUSIC, its vocal stem as the alignment reference)."""
    from avsync.cli import main
    from avsync.synth.dataset import SongSpec, render_song

    folder = render_song(SongSpec("talk", "singer", seed=5, index=0, seconds=12.0, fake_talk=((5.0, 7.5),)), tmp_path).folder
    report_path = tmp_path / "report.json"
    arguments = [str(folder / "Video.mp4"), str(folder / "Mix.wav"), "--vocal", str(folder / "Vocal.wav")]
    assert main(["align", *arguments, "--report", str(report_path), "--quiet", "--device", "cpu"]) == 0
    report = json.loads(report_path.read_text())
    assert abs(report["offset_s"]) <= 0.04
    talk = [span for span in report["unreliable_spans"] if span[2] == "lips do not follow the vocal"]
    assert len(talk) == 1 and 4.5 <= talk[0][0] <= 5.5 and 7.0 <= talk[0][1] <= 8.0
    assert "lips do not follow the vocal" in capsys.readouterr().out


def test_the_time_map_leaves_the_constant_offset_only_for_a_clear_gain() -> None:
    from avsync.align.analysis import align_cost
    from avsync.align.robust import warp_gain
    from avsync.align.timemap import path_to_time_map
    from avsync.align.tuning import MIN_WARP_GAIN

    rows = np.arange(N_ROWS)
    weak, _ = diagonal_cost(seed=3, strength=0.8)  # a real face's weak cost: the path wiggles through the noise
    everything = np.ones(N_ROWS, bool)
    voiced = np.ones(N_COLS, bool)
    sync = align_cost(weak, everything, voiced)
    assert warp_gain(sync.cost, path_to_time_map(sync.alignment), sync.offset_frames, everything) < MIN_WARP_GAIN
    assert np.allclose(sync.time_map.ref_frames(N_ROWS), rows - sync.offset_frames)  # the constant offset
    assert abs(sync.offset_frames - (-TRUE_OFFSET)) <= 1

    drift = np.round(TRUE_OFFSET + rows * 1.06).astype(int)  # a real tempo drift with a clear match
    strong, _ = diagonal_cost(seed=3, ref_index=drift, strength=3.0)
    warped = align_cost(strong, everything, voiced)
    assert warp_gain(warped.cost, warped.time_map, warped.offset_frames, everything) >= MIN_WARP_GAIN
    assert np.mean(np.abs(warped.time_map.ref_frames(N_ROWS) - drift) <= 1) > 0.9


def test_music_shorter_than_the_video_is_aligned_inside_it() -> None:
    """300 video frames, 200 music frames heard from video frame 60 on: offset +60, the map
    continues past the music's ends instead of inventing a cut."""
    from avsync.align.analysis import align_cost

    n, m, late = 300, 200, 60
    rng = np.random.default_rng(4)
    cost = rng.normal(0.0, 1.0, (n, m))
    rows = np.arange(late, late + m)
    cost[rows, rows - late] -= 3.0
    sync = align_cost(cost, np.ones(n, bool), np.ones(m, bool))
    assert sync.offset_frames == late
    frames = sync.time_map.ref_frames(n)
    assert np.abs(frames[late : late + m] - np.arange(m)).max() <= 1
    assert frames[0] == pytest.approx(-late, abs=1) and frames[-1] == pytest.approx(n - 1 - late, abs=1)
