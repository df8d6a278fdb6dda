"""From the events' lags to one offset, its interval and a verdict.

The offset is the median of the paired events' lags minus the reference's bias (the lag an in-sync
clip shows: the lip opening is timed a little after the physical release); its interval is a
bootstrap over the events (fixed seed: the same clip always gets the same interval). The
reference decides only with at least `MIN_EVENTS` events and an interval no wider than
``2 * MAX_HALF_WIDTH_FRAMES``; it then says "in sync" within `TOLERANCE_FRAMES` and "off"
(by the rounded offset) beyond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_EVENTS = 2
"""Fewest paired events behind a decision."""
MAX_HALF_WIDTH_FRAMES = 0.75
"""Widest half-interval (frames) behind a decision."""
TOLERANCE_FRAMES = 1.0
"""|offset| up to this is "in sync" (the project's +-1 frame)."""
INTERVAL = 0.9
"""Coverage of the bootstrap interval."""
BOOTSTRAP = 1000
BIAS_FRAMES = 0.58
"""The lag (frames at 25 fps) of dataset-synced clips: the median raw estimate of the 6 decided GRID
and LRS2 clips, `make check-real` (docs/sync_truth.md); subtracted from every estimate of
`avsync check`. Measured on low-resolution faces (mouths 30-45 px wide); see the doc for what it
may be on sharper video."""
VERDICTS = ("in sync", "off", "undecided")


@dataclass(frozen=True)
class EventEstimate:
    """The model-free reference's answer for one clip.

    Attributes:
        offset_frames: t_video - t_audio in frames, bias removed (positive: the picture is late);
            None without events.
        interval_frames: ``(low, high)`` bootstrap interval of `offset_frames`, or None.
        n_events: paired events behind it.
        verdict: ``"in sync"``, ``"off"`` or ``"undecided"``.
        off_by_frames: the rounded offset when the verdict is ``"off"``, else None.
        bias_frames: the bias removed.
        lags_frames: each event's raw lag (frames).
    """

    offset_frames: float | None
    interval_frames: tuple[float, float] | None
    n_events: int
    verdict: str
    off_by_frames: int | None
    bias_frames: float
    lags_frames: tuple[float, ...]

    @property
    def decided(self) -> bool:
        """Whether the reference gives a verdict."""
        return self.verdict != "undecided"


def bootstrap_interval(lags: np.ndarray, coverage: float = INTERVAL, resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the median of `lags`.

    Args:
        lags: float ``[E]``, E >= 1.
        coverage: the interval's coverage.
        resamples: bootstrap resamples.
        seed: random seed.

    Returns:
        ``(low, high)``.
    """
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(lags, size=(resamples, len(lags))), axis=1)
    tail = 100 * (1 - coverage) / 2
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def estimate_offset(lags_frames: np.ndarray | list[float], bias_frames: float = BIAS_FRAMES) -> EventEstimate:
    """The offset, interval and verdict from the events' lags.

    Args:
        lags_frames: float ``[E]``, each event's t_video - t_audio in frames.
        bias_frames: the in-sync lag to remove.

    Returns:
        The `EventEstimate`.
    """
    lags = np.asarray(lags_frames, dtype=np.float64)
    if len(lags) == 0:
        return EventEstimate(None, None, 0, "undecided", None, bias_frames, ())
    offset = float(np.median(lags)) - bias_frames
    low, high = bootstrap_interval(lags)
    interval = (low - bias_frames, high - bias_frames)
    verdict, off_by = "undecided", None
    if len(lags) >= MIN_EVENTS and (high - low) / 2 <= MAX_HALF_WIDTH_FRAMES:
        if abs(offset) <= TOLERANCE_FRAMES:
            verdict = "in sync"
        else:
            verdict, off_by = "off", int(np.round(offset))
    return EventEstimate(offset, interval, len(lags), verdict, off_by, bias_frames, tuple(float(lag) for lag in lags))
