"""Dynamic time warping over a precomputed cost matrix (numba kernels).

Axes: rows are video frames ``i`` (N of them, 25 fps), columns are reference frames ``j``
(M of them, 25 fps). ``cost[i, j]`` is low where video frame ``i`` matches reference frame ``j``.

Two kernels:

* :func:`align_video` (the one alignment uses): exactly one reference frame per video frame, so
  the path is a function ``ref_index[i]``. Steps between consecutive video frames:

  - diagonal (``+1``): normal playback, no penalty;
  - tempo: a slow step (``+0``) or a fast step (``+2``), each followed by at least ``K``
    diagonal steps, which keeps the local speed inside ``[min_rate, max_rate]``
    (``K = ceil(min_rate / (1 - min_rate))`` for slow, ``ceil(1 / (max_rate - 1) - 1)`` for fast;
    0.9..1.1 gives ``K = 9``); ``tempo_penalty`` each;
  - freeze: the video shows one frame for several frames (``+0`` repeated), ``freeze_penalty``
    once per freeze; the cells of a freeze count ``max(cost, 0)``: a frozen mouth cannot keep
    matching moving audio better than a typical pair (0, the uninformative level of
    `avsync.align.cost`), so a freeze never earns reward from a partly matching column;
  - cut: the video skips content (``+2`` or more, any length), ``cut_penalty`` once.

  The video never runs backwards. ``subsequence=True`` leaves begin and end open on the
  reference axis (the video may cover only part of the track); ``False`` pins the path to
  ``(0, 0)`` and ``(N - 1, M - 1)``.
* :func:`dtw_classic`: the textbook symmetric pattern (steps ``(1,0)``, ``(0,1)``, ``(1,1)``),
  full or subsequence, identical to ``tslearn.metrics.dtw_path_from_metric(cost,
  metric="precomputed")`` and to tslearn's ``subsequence_cost_matrix`` + ``subsequence_path``
  (same total cost, same path, same tie-breaking). Used for label-sequence distances.

Both accept a Sakoe-Chiba-like band around a line ``j = band_offset + band_slope * i`` of
half-width ``band_radius`` frames: only cells inside are visited (time and memory ``O(N * band)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

STEP_START = 0
STEP_DIAG = 1
STEP_SLOW = 2
STEP_FAST = 3
STEP_FREEZE = 4
STEP_CUT = 5

# Backpointer bits of the rate kernel: bits 0-2 = how state A (free) was entered,
# bit 3 = freeze state stayed (else entered from A), bit 4 = jump state carried from the left.
_A_DIAG, _A_RUN_FAST, _A_RUN_SLOW, _A_FREEZE_EXIT, _A_CUT, _A_START = 0, 1, 2, 3, 4, 5
_F_STAY = 8
_J_LEFT = 16
# States for the backtrack.
_S_A, _S_FAST, _S_SLOW, _S_FREEZE = 0, 1, 2, 3


@dataclass(frozen=True)
class DTWConfig:
    """Step constraints and penalties of :func:`align_video`.

    Penalties are in cost units; :func:`avsync.align.cost.normalise_cost` puts model costs on a
    robust z-scale (median 0, spread 1). A freeze or a cut costs 15: far above what one noisy
    stretch of a window model's cost can save, so the path leaves the offset only for a real edit,
    yet under what a real cut or freeze of a second saves by following the match. A tempo step
    costs 1.0: cheap steps let the path wander 1-3 frames along model noise.

    Where the defaults come from (docs/results_log.md, "DTW penalties"; docs/real_faces.md):

    - freeze and cut 15 (0b898e0, 2026-11-25; 6 before): best of 6/15/30/60 on known warps of the
      synthetic val clips (TwoTower after 6 epochs, share within +-1 frame 0.84/0.90/0.90/-) and
      test clips (0.86/0.87/0.87/0.86);
    - tempo 1.0 (8f70eeb, 2026-11-29; 0.1 before, changed together with the time map's tolerance
      1 -> 2 frames, `avsync.align.tuning.MAP_TOLERANCE`): within +-1 frame on synthetic val warps
      0.951 -> 0.994 (`make train` checkpoint) / 0.975 -> 0.997 (shipped), test warps 0.861 -> 0.881
      / 0.869 -> 0.902, 30 real held-out cases 28 % -> 30 % (offset accuracy 40 % -> 50 %), in-sync
      synthetic songs re-timed 13 % -> 1 %; 2.0 did better on the synthetic warps but raised the
      real cases' mean frame error from 7.3 to 10.7;
    - both re-checked on the 204 real fold cases: on 2026-12-01 with the networks of the
      constant-offset study (docs/real_faces.md, "What was compared"), tempo 1/3/10 x cut and
      freeze 15/30/60, (1, 15) best; on 2026-12-02 on the shipped ensemble's costs, tempo 0.5/1/2
      x 10/15/25, frames within +-1 0.515-0.545 (114 unseen cases 0.470-0.511), (1, 15) best on
      both;
    - tempo range 0.9-1.1: set by hand in 5d3242b (the 0.9-1.1x tempo drifts that issue 5's
      known-truth warps cover), no other range measured.

    The alignment's other constants (bridging, placement, the warp rule, the time map) are in
    `avsync.align.tuning`, each with its measurements.

    Args:
        subsequence: open begin and end on the reference axis.
        min_rate: slowest local video speed (reference frames per video frame), in [0.5, 1];
            1 disables slow steps.
        max_rate: fastest local speed, in [1, 1.5]; 1 disables fast steps.
        tempo_penalty: added per slow or fast step.
        freeze_penalty: added once per freeze (a run of repeated reference frames).
        cut_penalty: added once per forward jump of two or more reference frames.
        band_radius: half-width of the band in frames; None visits every cell.
        band_offset: reference frame of the band centre at video frame 0.
        band_slope: band centre slope (reference frames per video frame).
    """

    subsequence: bool = True
    min_rate: float = 0.9
    max_rate: float = 1.1
    tempo_penalty: float = 1.0
    freeze_penalty: float = 15.0
    cut_penalty: float = 15.0
    band_radius: int | None = None
    band_offset: float = 0.0
    band_slope: float = 1.0

    def run_lengths(self) -> tuple[int, int]:
        """Diagonal steps required after a (fast, slow) step; 0 where that step is disabled."""
        if not 0.5 <= self.min_rate <= 1.0:
            raise ValueError(f"min_rate must be in [0.5, 1], got {self.min_rate}")
        if not 1.0 <= self.max_rate <= 1.5:
            raise ValueError(f"max_rate must be in [1, 1.5], got {self.max_rate}")
        k_fast = 0 if self.max_rate == 1.0 else max(1, math.ceil(1.0 / (self.max_rate - 1.0) - 1.0 - 1e-9))
        k_slow = 0 if self.min_rate == 1.0 else max(1, math.ceil(self.min_rate / (1.0 - self.min_rate) - 1e-9))
        return k_fast, k_slow


@dataclass
class Alignment:
    """A path from :func:`align_video`: one reference frame per video frame.

    Attributes:
        ref_index: int64 [N], the reference frame matched to each video frame (non-decreasing).
        steps: int8 [N], how each row was entered (``STEP_*``; row 0 is ``STEP_START``).
        total_cost: sum of the matched costs plus the penalties paid.
    """

    ref_index: np.ndarray
    steps: np.ndarray
    total_cost: float

    @property
    def path(self) -> np.ndarray:
        """int64 [N, 2] pairs ``(i, j)``."""
        return np.stack([np.arange(len(self.ref_index)), self.ref_index], axis=1)


def band_limits(n_rows: int, n_cols: int, radius: int | None, offset: float = 0.0, slope: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """First and last visited column of each row: ``|j - (offset + slope * i)| <= radius``.

    Args:
        n_rows: N. n_cols: M.
        radius: half-width in frames; None gives every column.
        offset, slope: the band centre line.

    Returns:
        ``lo``, ``hi``: int64 [N] inclusive column limits (``lo > hi`` for a row outside the matrix).
    """
    if radius is None:
        return np.zeros(n_rows, np.int64), np.full(n_rows, n_cols - 1, np.int64)
    centre = offset + slope * np.arange(n_rows, dtype=np.float64)
    lo = np.maximum(np.ceil(centre - radius - 1e-9), 0).astype(np.int64)
    hi = np.minimum(np.floor(centre + radius + 1e-9), n_cols - 1).astype(np.int64)
    return lo, hi


def _check_cost(cost: np.ndarray) -> np.ndarray:
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.shape[0] == 0 or cost.shape[1] == 0:
        raise ValueError(f"cost must be a non-empty 2-D matrix, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost must be finite (use an uninformative value for unusable cells)")
    return cost


@numba.njit(cache=True, nogil=True)
def _in(lo: np.ndarray, hi: np.ndarray, i: int, j: int) -> bool:
    return i >= 0 and j >= lo[i] and j <= hi[i]


@numba.njit(cache=True, nogil=True)
def _rate_forward(cost, lo, hi, k_fast, k_slow, tempo_pen, freeze_pen, cut_pen, subsequence):
    """Forward pass. Row buffers are padded by ``pad`` columns on the left and hold +inf (0 for
    diagonal sums) outside the band of the row they store, so the inner loop needs no bounds
    checks; a buffer is cleared over its old row's band before it is reused."""
    n, m = cost.shape
    width = 1
    for i in range(n):
        width = max(width, hi[i] - lo[i] + 1)
    ptr = np.zeros((n, width), np.uint8)
    pad = max(k_fast, k_slow, 2)
    ring = max(k_fast, k_slow) + 1
    diag_sum = np.zeros((ring, m + pad))
    fast = np.full((ring, m + pad), np.inf)
    slow = np.full((ring, m + pad), np.inf)
    a_rows = np.full((2, m + pad), np.inf)
    f_rows = np.full((2, m + pad), np.inf)
    # Where a cut into the left edge of row i's band comes from (column in row i - 1).
    cut_left_src = np.full(n, -1, np.int64)
    for i in range(n):
        r = i % ring
        if i >= ring:
            old = i - ring
            for j in range(lo[old] + pad, hi[old] + 1 + pad):
                diag_sum[r, j] = 0.0
                fast[r, j] = np.inf
                slow[r, j] = np.inf
        a_cur = a_rows[i % 2]
        f_cur = f_rows[i % 2]
        if i >= 2:
            for j in range(lo[i - 2] + pad, hi[i - 2] + 1 + pad):
                a_cur[j] = np.inf
                f_cur[j] = np.inf
        s_cur = diag_sum[r]
        if i == 0:
            for j in range(lo[0], hi[0] + 1):
                s_cur[j + pad] = cost[0, j]
                a_cur[j + pad] = cost[0, j] if (subsequence or j == 0) else np.inf
                ptr[0, j - lo[0]] = _A_START
            continue
        a_prev = a_rows[(i - 1) % 2]
        f_prev = f_rows[(i - 1) % 2]
        s_prev = diag_sum[(i - 1) % ring]
        fast_k = fast[(i - k_fast) % ring]
        s_fast_k = diag_sum[(i - k_fast) % ring]
        slow_k = slow[(i - k_slow) % ring]
        s_slow_k = diag_sum[(i - k_slow) % ring]
        use_fast = k_fast > 0 and i >= k_fast
        use_slow = k_slow > 0 and i >= k_slow
        fast_cur = fast[r]
        slow_cur = slow[r]
        # Before column j, `jump` holds J[i, j - 1] = min over x' <= j - 2 of A[i-1, x'] + cut_pen;
        # start with the sources left of row i's band.
        jump = np.inf
        for x in range(lo[i - 1], lo[i] - 1):
            v = a_prev[x + pad] + cut_pen
            if v < jump:
                jump = v
                cut_left_src[i] = x
        li = lo[i]
        crow = cost[i]
        prow = ptr[i]
        for j in range(li, hi[i] + 1):
            jp = j + pad
            c = crow[j]
            s = s_prev[jp - 1] + c
            s_cur[jp] = s
            # A: diagonal from A or from a freeze, a finished tempo run, or a cut.
            ad = a_prev[jp - 1]
            fd = f_prev[jp - 1]
            if fd < ad:
                best = fd + c
                src = _A_FREEZE_EXIT
            else:
                best = ad + c
                src = _A_DIAG
            if use_fast:
                v = fast_k[jp - k_fast] + s - s_fast_k[jp - k_fast]
                if v < best:
                    best = v
                    src = _A_RUN_FAST
            if use_slow:
                v = slow_k[jp - k_slow] + s - s_slow_k[jp - k_slow]
                if v < best:
                    best = v
                    src = _A_RUN_SLOW
            if jump + c < best:
                best = jump + c
                src = _A_CUT
            a_cur[jp] = best
            bits = src
            # Freeze: enter from A directly above, or stay; its cells earn no reward.
            above = a_prev[jp]
            enter = above + freeze_pen
            stay = f_prev[jp]
            c_freeze = c if c > 0.0 else 0.0
            if stay < enter:
                f_cur[jp] = stay + c_freeze
                bits |= _F_STAY
            else:
                f_cur[jp] = enter + c_freeze
            # Tempo steps land in the fast / slow states.
            if k_fast > 0:
                fast_cur[jp] = a_prev[jp - 2] + tempo_pen + c
            if k_slow > 0:
                slow_cur[jp] = above + tempo_pen + c
            # Advance J to J[i, j] (sources x' <= j - 1) for the next column.
            from_above = ad + cut_pen
            if from_above <= jump:
                jump = from_above
            else:
                bits |= _J_LEFT
            prow[j - li] = bits
    last = (n - 1) % 2
    return ptr, a_rows[last], f_rows[last], fast, slow, diag_sum, cut_left_src, pad


@numba.njit(cache=True, nogil=True)
def _rate_backtrack(ptr, lo, hi, k_fast, k_slow, cut_left_src, end_i, end_j, end_state):
    """Walk back from (end_i, end_j, end_state); rows after end_i are diagonal run cells."""
    n = ptr.shape[0]
    ref = np.zeros(n, np.int64)
    steps = np.full(n, STEP_DIAG, np.int8)
    # Rows after the end cell complete a tempo run (partial-run ending): diagonal cells.
    for i in range(end_i + 1, n):
        ref[i] = end_j + (i - end_i)
    i, j, state = end_i, end_j, end_state
    while True:
        ref[i] = j
        if state == _S_FAST:
            steps[i] = STEP_FAST
            i, j, state = i - 1, j - 2, _S_A
            continue
        if state == _S_SLOW:
            steps[i] = STEP_SLOW
            i, j, state = i - 1, j, _S_A
            continue
        bits = ptr[i, j - lo[i]]
        if state == _S_FREEZE:
            steps[i] = STEP_FREEZE
            state = _S_FREEZE if (bits & _F_STAY) else _S_A
            i = i - 1
            continue
        src = bits & 7
        if src == _A_START:
            steps[i] = STEP_START
            break
        if src == _A_DIAG:
            steps[i] = STEP_DIAG
            i, j = i - 1, j - 1
        elif src == _A_FREEZE_EXIT:
            steps[i] = STEP_DIAG
            i, j, state = i - 1, j - 1, _S_FREEZE
        elif src == _A_RUN_FAST or src == _A_RUN_SLOW:
            k = k_fast if src == _A_RUN_FAST else k_slow
            for d in range(k):
                ref[i - d] = j - d
                steps[i - d] = STEP_DIAG
            i, j = i - k, j - k
            state = _S_FAST if src == _A_RUN_FAST else _S_SLOW
        else:  # cut: follow the jump state leftwards in row i, then up to row i - 1
            steps[i] = STEP_CUT
            x = j - 1
            while x >= lo[i] and (ptr[i, x - lo[i]] & _J_LEFT):
                x -= 1
            if x >= lo[i]:
                j = x - 1
            else:
                j = cut_left_src[i]
            i = i - 1
    return ref, steps


def align_video(cost: np.ndarray, config: DTWConfig | None = None) -> Alignment:
    """Align video frames to reference frames with tempo, freeze and cut steps (numba).

    Args:
        cost: float [N, M], finite; rows = video frames, columns = reference frames.
        config: constraints; defaults to :class:`DTWConfig`.

    Returns:
        The minimum-cost :class:`Alignment` (one reference frame per video frame).

    Raises:
        ValueError: on a bad matrix, bad rates, or when no path fits the band/constraints.
    """
    config = config or DTWConfig()
    cost = _check_cost(cost)
    n, m = cost.shape
    k_fast, k_slow = config.run_lengths()
    lo, hi = band_limits(n, m, config.band_radius, config.band_offset, config.band_slope)
    if (lo > hi).any():
        raise ValueError("the band leaves some video frames without any reference frame")
    ptr, a_last, f_last, fast, slow, diag_sum, cut_left_src, pad = _rate_forward(
        cost, lo, hi, k_fast, k_slow, float(config.tempo_penalty), float(config.freeze_penalty),
        float(config.cut_penalty), bool(config.subsequence),
    )
    end_i, end_j, end_state, total = _best_end(lo, hi, k_fast, k_slow, a_last, f_last, fast, slow, diag_sum, pad, bool(config.subsequence))
    if not np.isfinite(total):
        raise ValueError("no admissible path: widen the band or relax the constraints")
    ref, steps = _rate_backtrack(ptr, lo, hi, k_fast, k_slow, cut_left_src, end_i, end_j, end_state)
    return Alignment(ref_index=ref, steps=steps, total_cost=float(total))


@numba.njit(cache=True, nogil=True)
def _best_end(lo, hi, k_fast, k_slow, a_last, f_last, fast, slow, diag_sum, pad, subsequence):
    """Cheapest end: in state A or freeze on the last row, or inside an unfinished tempo run
    (a tempo step ``d < K`` rows before the end, followed by ``d`` diagonal cells)."""
    ring = fast.shape[0]
    last = lo.shape[0] - 1
    j_first = lo[last] if subsequence else a_last.shape[0] - pad - 1
    best_i, best_j, best_state, best_v = last, 0, _S_A, np.inf
    for j_end in range(j_first, hi[last] + 1):
        if a_last[j_end + pad] < best_v:
            best_i, best_j, best_state, best_v = last, j_end, _S_A, a_last[j_end + pad]
        if f_last[j_end + pad] < best_v:
            best_i, best_j, best_state, best_v = last, j_end, _S_FREEZE, f_last[j_end + pad]
        for d in range(1, max(k_fast, k_slow)):
            i0 = last - d
            j0 = j_end - d
            if i0 < 1 or j0 < lo[i0] or j0 > hi[i0]:
                break
            run = diag_sum[last % ring, j_end + pad] - diag_sum[i0 % ring, j0 + pad]
            if d < k_fast and fast[i0 % ring, j0 + pad] + run < best_v:
                best_i, best_j, best_state, best_v = i0, j0, _S_FAST, fast[i0 % ring, j0 + pad] + run
            if d < k_slow and slow[i0 % ring, j0 + pad] + run < best_v:
                best_i, best_j, best_state, best_v = i0, j0, _S_SLOW, slow[i0 % ring, j0 + pad] + run
    # A tempo step on the very last row (d = 0) ends in its own state.
    for j_end in range(j_first, hi[last] + 1):
        if k_fast > 0 and fast[last % ring, j_end + pad] < best_v:
            best_i, best_j, best_state, best_v = last, j_end, _S_FAST, fast[last % ring, j_end + pad]
        if k_slow > 0 and slow[last % ring, j_end + pad] < best_v:
            best_i, best_j, best_state, best_v = last, j_end, _S_SLOW, slow[last % ring, j_end + pad]
    return best_i, best_j, best_state, best_v


@numba.njit(cache=True, nogil=True)
def _classic_forward(cost, lo, hi, subsequence):
    n, m = cost.shape
    width = 1
    for i in range(n):
        width = max(width, hi[i] - lo[i] + 1)
    ptr = np.zeros((n, width), np.uint8)  # 0 diagonal, 1 from above, 2 from the left, 3 start
    prev = np.full(m, np.inf)
    cur = np.full(m, np.inf)
    for i in range(n):
        for j in range(lo[i], hi[i] + 1):
            if i == 0:
                left = cur[j - 1] if (j > lo[0]) else np.inf
                if subsequence:
                    cur[j] = cost[0, j]
                    ptr[0, j - lo[0]] = 3
                elif j == 0:
                    cur[j] = cost[0, 0]
                    ptr[0, 0] = 3
                else:
                    cur[j] = cost[0, j] + left
                    ptr[0, j - lo[0]] = 2
                continue
            d = prev[j - 1] if _in(lo, hi, i - 1, j - 1) else np.inf
            u = prev[j] if _in(lo, hi, i - 1, j) else np.inf
            left = cur[j - 1] if j > lo[i] else np.inf
            if j == 0:
                best, p = u, 1
            else:
                best, p = d, 0
                if u < best:
                    best, p = u, 1
                if left < best:
                    best, p = left, 2
            cur[j] = cost[i, j] + best
            ptr[i, j - lo[i]] = p
        prev, cur = cur, prev
    return ptr, prev


@numba.njit(cache=True, nogil=True)
def _classic_backtrack(ptr, lo, end_j):
    n = ptr.shape[0]
    ii = np.empty(n + end_j + 1, np.int64)  # a path visits at most N + M - 1 cells
    jj = np.empty_like(ii)
    k = 0
    i, j = n - 1, end_j
    while True:
        ii[k], jj[k] = i, j
        k += 1
        p = ptr[i, j - lo[i]]
        if p == 3:
            break
        if p == 0:
            i, j = i - 1, j - 1
        elif p == 1:
            i = i - 1
        else:
            j = j - 1
    return ii[:k][::-1].copy(), jj[:k][::-1].copy()


def dtw_classic(cost: np.ndarray, *, subsequence: bool = False, band_radius: int | None = None,
                band_offset: float = 0.0, band_slope: float = 1.0) -> tuple[np.ndarray, float]:
    """Symmetric DTW (steps (1,0), (0,1), (1,1)) on a precomputed cost matrix (numba).

    Same result as ``tslearn.metrics.dtw_path_from_metric(cost, metric="precomputed")``
    (full) or tslearn's subsequence DTW (``subsequence=True``: start and end free along the
    columns, the path covers every row).

    Args:
        cost: float [N, M], finite, non-negative for meaningful subsequence results.
        subsequence: open begin and end along the columns.
        band_radius, band_offset, band_slope: optional band (see :func:`band_limits`).

    Returns:
        ``path`` int64 [L, 2] of ``(i, j)`` pairs from start to end, and the summed cost.
    """
    cost = _check_cost(cost)
    n, m = cost.shape
    lo, hi = band_limits(n, m, band_radius, band_offset, band_slope)
    if (lo > hi).any():
        raise ValueError("the band leaves some rows without any column")
    ptr, last = _classic_forward(cost, lo, hi, subsequence)
    if subsequence:
        end_j = int(lo[-1] + np.argmin(last[lo[-1]:hi[-1] + 1]))
    else:
        end_j = m - 1
    total = float(last[end_j])
    if not np.isfinite(total):
        raise ValueError("no admissible path: widen the band")
    rows, cols = _classic_backtrack(ptr, lo, end_j)
    return np.stack([rows, cols], axis=1), total


def alignment_cost(cost: np.ndarray, path: np.ndarray) -> float:
    """Mean of ``cost`` over the cells of ``path``: the DTW alignment cost normalised by path length
    (penalties excluded); lower is a better match.

    Args:
        cost: float [N, M].
        path: int [L, 2] of ``(i, j)`` cells.
    """
    path = np.asarray(path)
    return float(cost[path[:, 0], path[:, 1]].mean())
