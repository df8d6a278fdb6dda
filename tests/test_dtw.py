"""DTW kernels: against tslearn where both apply, against a brute-force state machine elsewhere."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from tslearn.metrics import (
    dtw_path_from_metric,
    subsequence_cost_matrix,
    subsequence_path,
)

from avsync.align.dtw import (
    STEP_CUT,
    STEP_DIAG,
    STEP_FAST,
    STEP_FREEZE,
    STEP_SLOW,
    DTWConfig,
    align_video,
    band_limits,
    dtw_classic,
)


def reference_rate_dtw(cost: np.ndarray, cfg: DTWConfig) -> float:
    """Slow, independent DP over explicit (column, mode, run counter) states."""
    n, m = cost.shape
    k_fast, k_slow = cfg.run_lengths()
    lo, hi = band_limits(n, m, cfg.band_radius, cfg.band_offset, cfg.band_slope)
    inf = float("inf")
    # state: ("free",) | ("fast", c) | ("slow", c) | ("frozen",); c = diagonals done since the step
    best: dict[tuple, float] = {}
    for j in range(lo[0], hi[0] + 1):
        if cfg.subsequence or j == 0:
            best[(j, "free", 0)] = cost[0, j]
    for i in range(1, n):
        nxt: dict[tuple, float] = {}

        def put(key: tuple, value: float) -> None:
            if lo[i] <= key[0] <= hi[i] and value < nxt.get(key, inf):
                nxt[key] = value

        for (j, mode, count), value in best.items():
            for d in range(0, m - j):
                jn = j + d
                if not lo[i] <= jn <= hi[i]:
                    continue
                c = cost[i, jn]
                if mode == "free":
                    if d == 1:
                        put((jn, "free", 0), value + c)
                    if d == 0 and k_slow:
                        put((jn, "slow", 0), value + cfg.tempo_penalty + c)
                    if d == 2 and k_fast:
                        put((jn, "fast", 0), value + cfg.tempo_penalty + c)
                    if d == 0:
                        put((jn, "frozen", 0), value + cfg.freeze_penalty + max(c, 0.0))
                    if d >= 2:
                        put((jn, "free", 0), value + cfg.cut_penalty + c)
                elif mode in ("fast", "slow") and d == 1:
                    k = k_fast if mode == "fast" else k_slow
                    put((jn, "free", 0) if count + 1 == k else (jn, mode, count + 1), value + c)
                elif mode == "frozen":
                    if d == 0:
                        put((jn, "frozen", 0), value + max(c, 0.0))
                    if d == 1:
                        put((jn, "free", 0), value + c)
        best = nxt
    ends = [v for (j, _, _), v in best.items() if cfg.subsequence or j == m - 1]
    return min(ends) if ends else inf


def path_total(cost: np.ndarray, ref: np.ndarray, steps: np.ndarray, cfg: DTWConfig) -> float:
    """Cost of a returned path recomputed from its cells and step labels."""
    cells = cost[np.arange(len(ref)), ref]
    total = np.where(steps == STEP_FREEZE, np.maximum(cells, 0.0), cells).sum()
    total += cfg.tempo_penalty * np.isin(steps, (STEP_SLOW, STEP_FAST)).sum()
    total += cfg.cut_penalty * (steps == STEP_CUT).sum()
    freeze_starts = (steps == STEP_FREEZE) & np.r_[True, steps[:-1] != STEP_FREEZE]
    total += cfg.freeze_penalty * freeze_starts.sum()
    return float(total)


def check_path_valid(ref: np.ndarray, steps: np.ndarray, cfg: DTWConfig) -> None:
    d = np.diff(ref)
    assert (d >= 0).all()
    kinds = steps[1:]
    assert (d[kinds == STEP_DIAG] == 1).all()
    assert (d[kinds == STEP_SLOW] == 0).all()
    assert (d[kinds == STEP_FAST] == 2).all()
    assert (d[kinds == STEP_FREEZE] == 0).all()
    assert (d[kinds == STEP_CUT] >= 2).all()
    k_fast, k_slow = cfg.run_lengths()
    tempo_rows = np.flatnonzero(np.isin(steps, (STEP_SLOW, STEP_FAST)))
    for row in tempo_rows:
        k = k_fast if steps[row] == STEP_FAST else k_slow
        following = steps[row + 1 : row + 1 + k]
        assert (following == STEP_DIAG).all(), (row, steps)


CONFIGS = [
    DTWConfig(min_rate=0.75, max_rate=1.25, tempo_penalty=0.2, freeze_penalty=1.0, cut_penalty=1.5),
    DTWConfig(min_rate=0.5, max_rate=1.5, tempo_penalty=0.0, freeze_penalty=0.5, cut_penalty=0.7),
    DTWConfig(min_rate=0.75, max_rate=1.25, tempo_penalty=0.1, freeze_penalty=0.3, cut_penalty=0.4, subsequence=False),
    DTWConfig(min_rate=0.8, max_rate=1.0, tempo_penalty=0.1, freeze_penalty=2.0, cut_penalty=9.0, band_radius=3, band_offset=1.0),
    DTWConfig(min_rate=0.75, max_rate=1.25, tempo_penalty=0.1, freeze_penalty=1.0, cut_penalty=1.0, band_radius=2, band_offset=2.0, band_slope=0.8),
]


@pytest.mark.parametrize("cfg_index", range(len(CONFIGS)))
@pytest.mark.parametrize("seed", range(6))
def test_rate_kernel_matches_brute_force(cfg_index: int, seed: int) -> None:
    cfg = CONFIGS[cfg_index]
    rng = np.random.default_rng(seed)
    n, m = rng.integers(5, 11), rng.integers(6, 14)
    cost = rng.random((n, m)) - (0.5 if seed % 2 else 0.0)  # odd seeds: negative cells too (z-scale costs)
    expected = reference_rate_dtw(cost, cfg)
    if not np.isfinite(expected):
        with pytest.raises(ValueError):
            align_video(cost, cfg)
        return
    result = align_video(cost, cfg)
    assert result.total_cost == pytest.approx(expected, abs=1e-9)
    assert path_total(cost, result.ref_index, result.steps, cfg) == pytest.approx(expected, abs=1e-9)
    check_path_valid(result.ref_index, result.steps, cfg)
    if not cfg.subsequence:
        assert result.ref_index[0] == 0 and result.ref_index[-1] == m - 1


def test_recovers_known_warp_with_cut_and_freeze() -> None:
    rng = np.random.default_rng(3)
    m = 200
    true_ref = np.r_[np.arange(10, 60), np.full(12, 59), np.arange(60, 100), np.arange(130, 180)]
    cost = rng.normal(0.0, 0.3, (len(true_ref), m)) + 1.0
    cost[np.arange(len(true_ref)), true_ref] -= 2.0
    result = align_video(cost, DTWConfig(freeze_penalty=3.0, cut_penalty=3.0))
    np.testing.assert_array_equal(result.ref_index, true_ref)
    assert (result.steps == STEP_CUT).sum() == 1
    assert (result.steps == STEP_FREEZE).sum() == 12


def test_tempo_stays_in_rate_range() -> None:
    n, m = 120, 200
    rate = 1.1
    true_ref = np.round(5 + np.arange(n) * rate).astype(int)
    cost = np.ones((n, m))
    cost[np.arange(n), true_ref] = 0.0
    result = align_video(cost, DTWConfig(tempo_penalty=0.01))
    assert np.abs(result.ref_index - true_ref).max() <= 1
    too_fast = np.round(np.arange(n) * 1.3).astype(int)
    cost = np.ones((n, m))
    cost[np.arange(n), too_fast] = 0.0
    result = align_video(cost, DTWConfig(tempo_penalty=0.01, cut_penalty=50, freeze_penalty=50))
    slope = np.polyfit(np.arange(n), result.ref_index, 1)[0]
    assert slope <= 1.1 + 1e-6


def test_banded_equals_full_when_band_contains_path() -> None:
    rng = np.random.default_rng(0)
    n, m = 300, 320
    true_ref = np.round(7 + np.arange(n) * 0.95).astype(int)
    cost = rng.random((n, m))
    cost[np.arange(n), true_ref] -= 1.5
    full = align_video(cost)
    banded = align_video(cost, DTWConfig(band_radius=25, band_offset=7.0))
    np.testing.assert_array_equal(full.ref_index, banded.ref_index)
    assert full.total_cost == pytest.approx(banded.total_cost)


def test_errors() -> None:
    with pytest.raises(ValueError, match="finite"):
        align_video(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match="band"):
        align_video(np.zeros((5, 5)), DTWConfig(band_radius=1, band_offset=20))
    with pytest.raises(ValueError, match="max_rate"):
        align_video(np.zeros((5, 5)), DTWConfig(max_rate=3.0))


@pytest.mark.parametrize("seed", range(8))
def test_classic_full_matches_tslearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = rng.integers(2, 40), rng.integers(2, 40)
    cost = rng.random((n, m))
    if seed % 2:
        cost = np.round(cost * 3)  # many ties: the tie-breaking must match too
    path, total = dtw_classic(cost)
    ref_path, ref_total = dtw_path_from_metric(cost, metric="precomputed")
    assert total == pytest.approx(ref_total)
    assert [tuple(p) for p in path.tolist()] == ref_path


@pytest.mark.parametrize("seed", range(8))
def test_classic_subsequence_matches_tslearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    query = rng.normal(size=rng.integers(3, 15))
    long = rng.normal(size=rng.integers(15, 60))
    if seed % 2:
        query, long = np.round(query), np.round(long)
    cost = (query[:, None] - long[None, :]) ** 2  # tslearn's local cost
    acc = subsequence_cost_matrix(query, long)
    end = int(np.argmin(acc[-1]))
    ref_path = subsequence_path(acc, end)
    path, total = dtw_classic(cost, subsequence=True)
    assert total == pytest.approx(acc[-1, end])
    assert [tuple(p) for p in path.tolist()] == ref_path


@pytest.mark.parametrize("radius", [1, 3, 7])
def test_classic_band_matches_tslearn_sakoe_chiba(radius: int) -> None:
    rng = np.random.default_rng(radius)
    cost = rng.random((30, 30))
    path, total = dtw_classic(cost, band_radius=radius)
    ref_path, ref_total = dtw_path_from_metric(cost, metric="precomputed", global_constraint="sakoe_chiba", sakoe_chiba_radius=radius)
    assert total == pytest.approx(ref_total)
    assert [tuple(p) for p in path.tolist()] == ref_path


def test_rate_kernel_agrees_with_tslearn_subsequence_on_a_clean_diagonal() -> None:
    """A case both support: a clear diagonal match inside a longer reference."""
    rng = np.random.default_rng(1)
    n, m, start = 40, 90, 23
    cost = 1.0 + rng.random((n, m))
    cost[np.arange(n), start + np.arange(n)] = rng.random(n) * 0.1
    path, total = dtw_classic(cost, subsequence=True)
    ours = align_video(cost, DTWConfig(tempo_penalty=0.0))
    np.testing.assert_array_equal(ours.path, path)
    assert ours.total_cost == pytest.approx(total)


def test_brute_force_reference_is_exhaustive_on_tiny_case() -> None:
    """The reference DP itself against enumeration of every monotone path (no cuts/freezes)."""
    rng = np.random.default_rng(5)
    cost = rng.random((4, 6))
    cfg = DTWConfig(min_rate=0.5, max_rate=1.5, tempo_penalty=0.25, freeze_penalty=100, cut_penalty=100)
    best = np.inf
    for ref in itertools.product(range(6), repeat=4):
        d = np.diff(ref)
        if not np.isin(d, (0, 1, 2)).all():
            continue
        off = np.flatnonzero(d != 1)
        if len(off) > 1 and np.diff(off).min() < 2:  # K = 1: a diagonal between tempo steps
            continue
        best = min(best, cost[np.arange(4), ref].sum() + 0.25 * len(off))
    assert reference_rate_dtw(cost, cfg) == pytest.approx(best)
    assert align_video(cost, cfg).total_cost == pytest.approx(best)


def test_a_freeze_earns_nothing_from_a_partly_matching_column() -> None:
    """Across a silent stretch (cost 0), a column that matches every frame a little must not pull
    the path into a long freeze: freeze cells count max(cost, 0)."""
    n, m = 80, 100
    cost = np.zeros((n, m))
    rows = np.arange(n)
    cost[rows, rows + 5] = -2.0
    cost[10:75, rows[10:75] + 5] = 0.0  # silent stretch: nothing informative on the true path
    cost[10:75, 40] = -1.5  # the column of a vocal onset, a little like every closed mouth
    # Freezing on that column from row 35 to 74 would gain 39 * 1.5 = 58.5 > freeze + cut penalties.
    result = align_video(cost, DTWConfig())
    assert np.abs(result.ref_index - (rows + 5)).max() <= 1  # tempo steps may pick up one more cell
    assert not (result.steps == STEP_FREEZE).any()


def test_load_kernels_loads_every_kernel_an_alignment_calls() -> None:
    """`avsync align` loads the kernels while the lips are read: nothing may be left to compile after (a fresh process)."""
    script = """
import numpy as np
from avsync.align import dtw, timemap
from avsync.align.analysis import align_cost, load_kernels
kernels = [dtw._rate_forward, dtw._best_end, dtw._rate_backtrack, timemap.diagonal_sums]
load_kernels()
loaded = [list(kernel.signatures) for kernel in kernels]
assert all(loaded), loaded
rng = np.random.default_rng(0)
for n, m in ((60, 900), (60, 70)):  # a take placed in a long song; a clip against its own music
    align_cost(rng.standard_normal((n, m)), np.ones(n, bool), np.ones(m, bool))
assert [list(kernel.signatures) for kernel in kernels] == loaded, "compiled after load_kernels"
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
