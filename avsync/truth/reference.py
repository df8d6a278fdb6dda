"""The model-free reference for one clip: lip releases, acoustic onsets, pairs, estimate."""

from __future__ import annotations

import numpy as np

from avsync.features.extract import VisualFeatures
from avsync.truth.estimate import BIAS_FRAMES, EventEstimate, estimate_offset
from avsync.truth.events import EventLag, pair_events
from avsync.truth.lips import MAX_TURN, LipRelease, find_releases, head_turn, lip_gap, normalised, seam_darkness

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


def clip_releases(visual: VisualFeatures, signal: str = "gap") -> list[LipRelease]:
    """The clip's lip releases, on frames where the head faces the camera.

    Args:
        visual: the video's features (`avsync.features.extract.VisualFeatures`, at `visual.fps`).
        signal: what releases are timed on (`SIGNALS`).

    Returns:
        The releases in time order (frames at `visual.fps`).
    """
    gap, opening = release_signal(visual, signal)
    with np.errstate(invalid="ignore"):
        frontal = head_turn(visual.landmarks) <= MAX_TURN
    return find_releases(gap, opening, frontal)


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
    return pair_events(clip_releases(visual, signal), samples, sample_rate, visual.fps)


def window_estimates(visual: VisualFeatures, samples: np.ndarray, sample_rate: int, window_s: float,
                     signal: str = "gap") -> list[EventEstimate]:  # fmt: skip
    """The reference on consecutive windows of a clip, each paired on its own (no bias removed).

    How often and how closely a few seconds decide, measured inside long clips.

    Args:
        visual: the video's features.
        samples: float ``[N]``, the audio on the video's timeline.
        sample_rate: Hz.
        window_s: window length; the clip's tail shorter than a window is left out.
        signal: what releases are timed on (`SIGNALS`).

    Returns:
        One raw estimate per whole window, in time order.
    """
    releases = clip_releases(visual, signal)
    window_frames = window_s * visual.fps
    estimates = []
    for index in range(int(len(visual) // window_frames)):
        inside = [r for r in releases if index * window_frames <= r.time_frames < (index + 1) * window_frames]
        events = pair_events(inside, samples, sample_rate, visual.fps)
        estimates.append(estimate_offset([event.lag_s * visual.fps for event in events], 0.0))
    return estimates


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
