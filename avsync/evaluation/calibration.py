"""Is the confidence honest? Offset accuracy against confidence, and the threshold a verdict needs.

`reliability` bins the cases by the confidence `avsync align` reported and gives the share whose
constant offset was right (within +-1 frame) in each bin; `precision_threshold` finds the lowest
confidence above which at least a given share of the cases were right (what "reliable" should
mean); `plot_reliability` draws both as a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avsync.evaluation.harness import CaseResult


def reliability(results: Sequence[CaseResult], edges: Sequence[float]) -> list[tuple[float, float, int, float]]:
    """Share of right offsets per confidence bin.

    Args:
        results: one method's results.
        edges: increasing bin edges; the last bin is open above.

    Returns:
        ``(low, high, cases, share right)`` per bin with cases (share NaN when empty).
    """
    confidence = np.array([r.confidence for r in results])
    right = np.array([r.offset_acc for r in results])
    bounds = list(edges) + [np.inf]
    table = []
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        inside = (confidence >= low) & (confidence < high)
        table.append((float(low), float(high), int(inside.sum()), float(right[inside].mean()) if inside.any() else float("nan")))
    return table


def precision_threshold(results: Sequence[CaseResult], precision: float = 0.95, min_cases: int = 5) -> float:
    """The lowest confidence above which at least `precision` of the cases have the right offset.

    Args:
        results: one method's results.
        precision: the share of right offsets a "reliable" verdict must keep.
        min_cases: at least this many cases must lie above the threshold.

    Returns:
        The threshold (infinite when no threshold keeps the precision with enough cases).
    """
    ordered = sorted(results, key=lambda r: -r.confidence)
    right = np.cumsum([r.offset_acc for r in ordered])
    best = float("inf")
    for count in range(min_cases, len(ordered) + 1):
        if right[count - 1] / count >= precision - 1e-12:
            best = ordered[count - 1].confidence
    return best


def plot_reliability(results: Sequence[CaseResult], out_png: str | os.PathLike[str], *, edges: Sequence[float],
                     thresholds: Sequence[float] = (), title: str = "") -> Path:
    """Bar chart: share of right offsets per confidence bin, with the case counts and thresholds (PNG, atomic)."""
    from matplotlib.figure import Figure

    from avsync.align.plots import save_figure

    table = reliability(results, edges)
    figure = Figure(figsize=(6, 3.2))
    axes = figure.subplots()
    centres = np.arange(len(table))
    shares = [100 * (share if np.isfinite(share) else 0.0) for _, _, _, share in table]
    axes.bar(centres, shares, color="tab:blue")
    for x, (_, _, cases, _), share in zip(centres, table, shares, strict=True):
        axes.text(x, share + 2, f"n={cases}", ha="center", fontsize=7)
    labels = [f"{low:g}-{high:g}" if np.isfinite(high) else f">{low:g}" for low, high, _, _ in table]
    axes.set_xticks(centres, labels, fontsize=7)
    axes.axhline(95, color="k", lw=0.8, ls="--")
    for threshold in thresholds:
        axes.axvline(np.searchsorted(list(edges), threshold) - 0.5, color="tab:red", lw=1.0)
    axes.set_xlabel("confidence reported by avsync align")
    axes.set_ylabel("offset within +-1 frame (%)")
    axes.set_ylim(0, 110)
    axes.set_title(title or "reliability of the confidence")
    figure.tight_layout()
    return save_figure(figure, out_png, dpi=90)
