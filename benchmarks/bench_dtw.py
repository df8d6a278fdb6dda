"""DTW speed: our numba kernels against a plain tslearn call, same matrices, same run.

Sizes: 750 x 750 (30 s at 25 fps) and 4500 x 4500 (3 min). Targets: <= 10 ms and <= 250 ms
for the alignment DTW (`align_video`); the 3-minute case may run banded, which is how long
inputs are aligned (band around the best constant offset from `estimate_offset`).
Each figure is the best of several runs after a warm-up (numba compilation excluded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from unittest import mock

import numpy as np
from tslearn.metrics import dtw_path_from_metric

from avsync.align import analysis
from avsync.align.dtw import DTWConfig, align_video, dtw_classic
from avsync.align.timemap import estimate_offset
from avsync.evaluation.warp import make_warp

BAND_RADIUS = 150  # frames (6 s) around the best constant offset


def _best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def _cost(n_frames: int, kind: str, seed: int) -> np.ndarray:
    """A realistic cost: a valley along a known warp in noise, cut to at most ``n_frames`` rows."""
    warp = make_warp(kind, n_frames, seed)
    rng = np.random.default_rng(seed)
    n = min(len(warp), n_frames)
    distance = np.abs(np.arange(n_frames)[None, :] - warp.src_index[:n, None])
    return -2.0 * np.exp(-0.5 * (distance / 1.5) ** 2) + rng.normal(0.0, 0.7, (n, n_frames))


def main() -> None:
    """Print milliseconds per DTW for each size and method."""
    print(f"{'size':>11} {'method':<44} {'ms':>9}   (best of several runs, numba compile excluded)")
    # 30 s: tempo + cut + freeze. 3 min: a freeze (a long recording drifting by a tempo error
    # would leave a constant-offset band; use the full kernel for such cases).
    for n_frames, kind, repeats in ((750, "combo", 7), (4500, "freeze", 2)):
        cost = _cost(n_frames, kind, seed=1)
        size = f"{cost.shape[0]}x{cost.shape[1]}"
        offset = estimate_offset(cost)
        band = DTWConfig(band_radius=BAND_RADIUS, band_offset=-offset.offset_frames)
        rows = [
            ("ours align_video, full (tempo/freeze/cut)", lambda: align_video(cost)),
            (f"ours align_video, band +-{BAND_RADIUS}", lambda: align_video(cost, band)),
            ("ours estimate_offset (band centre)", lambda: estimate_offset(cost)),
            ("ours dtw_classic, full", lambda: dtw_classic(cost - cost.min())),
            ("tslearn dtw_path_from_metric, full", lambda: dtw_path_from_metric(cost - cost.min(), metric="precomputed")),
            (f"tslearn dtw_path_from_metric, band +-{BAND_RADIUS}",
             lambda: dtw_path_from_metric(cost - cost.min(), metric="precomputed", global_constraint="sakoe_chiba",
                                          sakoe_chiba_radius=BAND_RADIUS)),
        ]
        for name, fn in rows:
            print(f"{size:>11} {name:<44} {_best_ms(fn, repeats):9.1f}", flush=True)
    _placed_take()


def _placed_take() -> None:
    """The whole analysis (`align_cost`) of a 30-s take inside a 4-minute song: placed first, then
    aligned in a band there (what ships), against the robust path over the whole song (before)."""
    n_take, n_song, start = 750, 6000, 2500
    rng = np.random.default_rng(3)
    cost = rng.normal(0.0, 1.0, (n_take, n_song))
    cost[np.arange(n_take), start + np.arange(n_take)] -= 1.0
    rows, columns = np.ones(n_take, bool), np.ones(n_song, bool)
    whole_song = mock.patch.object(analysis, "needs_placement", lambda n, m: False)
    print(f"{n_take}x{n_song:<6} {'align_cost, placed then banded (ships)':<44} "
          f"{_best_ms(lambda: analysis.align_cost(cost, rows, columns), 3):9.1f}")
    with whole_song:
        print(f"{n_take}x{n_song:<6} {'align_cost over the whole song (before)':<44} "
              f"{_best_ms(lambda: analysis.align_cost(cost, rows, columns), 3):9.1f}", flush=True)
