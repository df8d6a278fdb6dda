"""The model-free reference for one clip: lip releases, acoustic onsets, pairs, estimate."""

from __future__ import annotations

import numpy as np

from avsync.features.extract import VisualFeatures
from avsync.truth.estimate import BIAS_FRAMES, EventEstimate, estimate_offset
from avsync.truth.events import EventLag, pair_events
from avsync.truth.lips import MAX_TURN, find_releases, head_turn, lip_gap, normalised, seam_darkness

SIGNALS = ("gap", "seam", "both")
"""What the release is timed on: the landmarks' inner-lip gap, the seam's darkness in the mouth
crop, or their sum (each normalised to its clip)."""


def release_signal(visual: VisualFeatures, signal: str = "gap") -> tuple[np.ndarray, np.ndarray | None]:
    """The gap closures are found on, and the signal releases are timed on.

    Args:
        visual: the video's features (landmarks ``[T, 68, 2]``, mouth crops ``[T, 64, 64]``).
        signal: one of `SIGNALS`.

    Returns:
        ``(gap [T], opening [T] or None)``: None times on the gap itself.
    """
    gap = lip_gap(visual.landmarks)
    if signal == "gap":
        return gap, None
    seam = normalised(seam_darkness(visual.mouth_crops, visual.valid))
    return gap, seam if signal == "seam" else seam + normalised(gap)


def clip_events(visual: VisualFeatures, samples: np.ndarray, sample_rate: int, signal: str = "gap") -> list[EventLag]:
    """The clip's paired lip-release events.

    Args:
        visual: the video's features (`avsync.features.extract.VisualFeatures`, at `visual.fps`).
        samples: float ``[N]``, the audio on the video's timeline.
        sample_rate: Hz.
        signal: what releases are timed on (`SIGNALS`).

    Returns:
        The events in time order.
    """
    gap, opening = release_signal(visual, signal)
    with np.errstate(invalid="ignore"):
        frontal = head_turn(visual.landmarks) <= MAX_TURN
    return pair_events(find_releases(gap, opening, frontal), samples, sample_rate, visual.fps)


def event_sync(visual: VisualFeatures, samples: np.ndarray, sample_rate: int, *, bias_frames: float = BIAS_FRAMES,
               signal: str = "gap") -> tuple[EventEstimate, list[EventLag]]:  # fmt: skip
    """Is the picture in sync with the audio, by the lip releases alone?

    Args:
        visual: the video's features.
        samples: float ``[N]``, the audio on the video's timeline.
        sample_rate: Hz.
        bias_frames: the in-sync lag to remove, in frames at the features' rate (25 fps).
        signal: what releases are timed on (`SIGNALS`).

    Returns:
        ``(estimate, events)``; the estimate is in frames at the features' rate (`visual.fps`).
    """
    events = clip_events(visual, samples, sample_rate, signal)
    return estimate_offset([event.lag_s * visual.fps for event in events], bias_frames), events
