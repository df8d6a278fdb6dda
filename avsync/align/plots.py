"""PNG plots of alignments: cost matrix with the found and true paths, and time maps.

Beside the analysis they draw (`avsync.align`), so `avsync align` (`avsync.pipeline`), the
evaluation and training's per-epoch callback share them without reaching into the command's
pipeline; a shoot's summary plot is `avsync.pipeline.plots.plot_shots`.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display needed).
Files are written atomically. matplotlib is imported when a plot is drawn: an alignment without
``--plot`` does not load it (0.6 s and ~25 MB on 2 cores).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avsync.align.timemap import TimeMap
from avsync.conventions import FPS
from avsync.io.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_figure(fig: Figure, out_png: str | Path, dpi: int = 100) -> Path:
    """Write `fig` as a PNG, atomically (parent folders created); returns the path."""
    out_png = Path(out_png)
    with atomic_path(out_png) as temporary:
        fig.savefig(temporary, format="png", dpi=dpi)
    return out_png


MAX_IMAGE_CELLS = 1000
"""Most cells a cost image shows along each axis (the plot is about 500 pixels across): a 30-s
shot against a 3-minute song (750 x 4500) is drawn from 750 x 900 block minima, which keeps the
matches visible at a fifth of the memory and time."""


def min_pooled(cost: np.ndarray, max_cells: int) -> np.ndarray:
    """The minimum over blocks of cells, so that neither axis has more than `max_cells`.

    Args:
        cost: float [N, M].
        max_cells: most rows and columns of the result.

    Returns:
        float [ceil(N / a), ceil(M / b)] with ``a = ceil(N / max_cells)``, ``b = ceil(M / max_cells)``.
    """
    for axis in (0, 1):
        step = -(-cost.shape[axis] // max_cells)
        if step > 1:
            cost = np.minimum.reduceat(cost, np.arange(0, cost.shape[axis], step), axis=axis)
    return cost


def plot_alignment(cost: np.ndarray, found_path: np.ndarray | None, true_path: np.ndarray | None, out_png: str | Path,
                   *, title: str = "", fps: float = FPS) -> Path:
    """Cost matrix (reference time across, video time up) with the found and the true path.

    Args:
        cost: float [N, M], rows video frames, columns reference frames.
        found_path: int [L, 2] ``(i, j)`` cells, or None.
        true_path: int [K, 2] ``(i, j)`` cells, or None.
        out_png: output file.
        title: figure title.
        fps: frame rate for the axis labels in seconds.

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure

    n, m = cost.shape
    fig = Figure(figsize=(6.4, 5.6))  # one size for every matrix: W&B shows an epoch's images side by side
    ax = fig.add_subplot()
    shown = min_pooled(cost, MAX_IMAGE_CELLS)
    low, high = np.percentile(shown, [1, 99])
    image = ax.imshow(shown, origin="lower", aspect="auto", cmap="viridis_r", vmin=low, vmax=high,
                      extent=(-0.5 / fps, (m - 0.5) / fps, -0.5 / fps, (n - 0.5) / fps), interpolation="nearest")
    fig.colorbar(image, ax=ax, label="cost (low = match)")
    if true_path is not None:
        ax.plot(true_path[:, 1] / fps, true_path[:, 0] / fps, color="white", lw=3.0, alpha=0.8, label="true")
    if found_path is not None:
        ax.plot(found_path[:, 1] / fps, found_path[:, 0] / fps, color="red", lw=1.0, label="found")
    if found_path is not None or true_path is not None:
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("reference time (s)")
    ax.set_ylabel("video time (s)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_png)


def plot_time_map(time_map: TimeMap, out_png: str | Path, *, true_ref_index: np.ndarray | None = None, title: str = "") -> Path:
    """Offset along the video (``t_video - t_ref`` against video time) of a map and the truth.

    Plotting the offset instead of the map itself makes a one-frame error visible.

    Args:
        time_map: the found map.
        out_png: output file.
        true_ref_index: int [N], the reference frame each video frame belongs at, or None.
        title: figure title.

    Returns:
        The written path.
    """
    fps = time_map.fps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.2))
    ax = fig.add_subplot()
    n = int(round(time_map.knots[-1, 1] * fps)) + 1
    video_frames = np.arange(n)
    found = video_frames - time_map.ref_frames(n)
    if true_ref_index is not None:
        ax.plot(np.arange(len(true_ref_index)) / fps, np.arange(len(true_ref_index)) - np.asarray(true_ref_index),
                color="black", lw=3.0, alpha=0.4, label="true")
    ax.plot(video_frames / fps, found, color="red", lw=1.0, label="found")
    knots = time_map.knots
    ax.plot(knots[:, 1], (knots[:, 1] - knots[:, 0]) * fps, "o", color="red", ms=3)
    ax.set_xlabel("video time (s)")
    ax.set_ylabel("offset t_video - t_ref (frames)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_png)
