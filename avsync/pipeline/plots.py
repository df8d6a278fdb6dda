"""A shoot's summary plot: each shot as a bar on the song's timeline (`plot_shots`).

The alignment plots (cost matrix and paths, time maps) are `avsync.align.plots`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from avsync.align.plots import save_figure

if TYPE_CHECKING:
    from avsync.pipeline.shots import ShotOutcome


def plot_shots(outcomes: Sequence[ShotOutcome], music_duration_s: float, out_png: str | Path, *, title: str = "") -> Path:
    """Each shot as a bar on the song's timeline, coloured by its confidence; unplaced shots listed below.

    Args:
        outcomes: the batch's shots (`avsync.pipeline.shots.align_shots`).
        music_duration_s: length of the song.
        out_png: output file.
        title: figure title.

    Returns:
        The written path.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from avsync.pipeline.report import CONFIDENCE_RELIABLE, song_span

    placed = sorted((outcome for outcome in outcomes if outcome.status == "placed"), key=lambda outcome: song_span(outcome.report, outcome.mode))
    unplaced = [outcome for outcome in outcomes if outcome.status != "placed"]
    rows = max(1, len(placed))
    fig = Figure(figsize=(10, 1.2 + 0.32 * rows + 0.22 * len(unplaced)))
    ax = fig.add_subplot(1, 1, 1)
    colours = colormaps["RdYlGn"]
    scale = Normalize(0.0, 1.5 * CONFIDENCE_RELIABLE)
    for row, outcome in enumerate(placed):
        start, end = song_span(outcome.report, outcome.mode)
        confidence = outcome.report["confidence"]
        ax.barh(row, max(end - start, 0.05), left=start, height=0.7, color=colours(scale(confidence)), edgecolor="black", linewidth=0.5)
        ax.text(end + 0.005 * music_duration_s, row, f"{confidence:.1f}", va="center", fontsize=7)
    ax.set_yticks(range(len(placed)), [outcome.name for outcome in placed], fontsize=7)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_xlim(0, music_duration_s)
    ax.set_xlabel("song time (s)")
    fig.colorbar(ScalarMappable(scale, colours), ax=ax, label="confidence", pad=0.01)
    ax.set_title(title or f"{len(placed)} of {len(outcomes)} shots placed", fontsize=9)
    if unplaced:
        listed = "; ".join(f"{o.name}: {o.status}" for o in unplaced)
        fig.text(0.01, 0.01, f"not placed: {listed}", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.03 + 0.02 * min(len(unplaced), 5), 1, 1))
    return save_figure(fig, out_png)
