"""Pairing lip releases with acoustic onsets: each event's lag, with gates against wrong pairs.

For every release and every candidate lag within `MAX_LAG_S`, the audio must show what a
bilabial makes when shifted by that lag: the 1-7 kHz band quiet while the lips were closed
(its mean power over the closure at least `QUIET_DB` under the clip's speech level: a loud part
of the closure is enough to refuse the pair) and an onset of at least `MIN_RISE_DB` at
the release. The gated onset strengths of all events, each scaled to its own peak, are added
over the lags; their peak is where most events agree. When another lag more than
`AMBIGUITY_SEPARATION_S` away gathers nearly as much (`MAX_AMBIGUITY` of the peak), the clip has
no clear consensus (syllables recur every 150-250 ms, so a few releases can line up with the
neighbouring syllable's onsets as well) and nothing is paired. Otherwise each event takes the
strongest onset within `PAIR_WINDOW_S` of the peak as its partner (the gate against pairing a
release with the onset of another syllable); events with none there are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsync.smoothing import moving_average
from avsync.truth.acoustic import STEP_S, band_envelope_db, onset_strength
from avsync.truth.lips import LipRelease

MAX_LAG_S = 0.2
"""Largest |t_video - t_audio| searched (5 frames at 25 fps)."""
QUIET_DB = 6.0
"""During the closure the band's mean power must be this far under the clip's speech level (the
80th percentile of its level), in dB."""
MIN_RISE_DB = 6.0
"""Smallest onset that counts as the release's sound."""
EDGE_MS = 10
"""Milliseconds of the closure left out at each end when checking that it is quiet."""
PAIR_WINDOW_S = 0.06
"""An event pairs only with an onset this close to the lag most events agree on."""
MAX_AMBIGUITY = 0.8
"""A second peak of the summed lag curve above this share of the first leaves the clip unpaired.
Chosen on windows of the long clips of other sources (not the dataset-synced clips scored):
10-s windows within +-1 frame of their clip's own estimate 86 % -> 100 %, gross 9 % -> 0 %."""
AMBIGUITY_SEPARATION_S = 0.08
"""How far (two frames) a second peak must lie from the first to count as another lag."""
CONSENSUS_SMOOTH_MS = 9
"""The summed lag curve is smoothed over this many milliseconds before its peak is taken."""
SPEECH_PERCENTILE = 80


@dataclass(frozen=True)
class EventLag:
    """One lip release paired with its acoustic onset.

    Attributes:
        video_s: the release's time in the video (seconds).
        audio_s: its onset's time in the audio (seconds).
        lag_s: ``video_s - audio_s`` (positive: the picture is late).
        rise_db: the onset's strength.
    """

    video_s: float
    audio_s: float
    lag_s: float
    rise_db: float


def lag_curves(releases: list[LipRelease], envelope_db: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Gated onset strength of each release at each candidate lag.

    Args:
        releases: from `avsync.truth.lips.find_releases` (frames at `fps`).
        envelope_db: float ``[M]``, `avsync.truth.acoustic.band_envelope_db` (1 ms steps).
        fps: the releases' frame rate.

    Returns:
        ``(lags_ms, curves)``: int ``[L]`` candidate lags in ms, float64 ``[E, L]`` strengths (0 where gated out).
    """
    step_ms = round(1000 * STEP_S)
    lags_ms = np.arange(-round(1000 * MAX_LAG_S), round(1000 * MAX_LAG_S) + 1, step_ms)
    strength = onset_strength(envelope_db)
    speech_db = float(np.percentile(envelope_db, SPEECH_PERCENTILE)) if len(envelope_db) else 0.0
    summed = np.concatenate([[0.0], np.cumsum(10.0 ** (envelope_db / 10.0))])  # power: a loud part of the closure counts
    count = len(envelope_db)
    curves = np.zeros((len(releases), len(lags_ms)))
    for row, release in enumerate(releases):
        audio_ms = round(1000 * release.time_frames / fps) - lags_ms
        quiet_from = round(1000 * release.closure_start / fps) - lags_ms + EDGE_MS
        quiet_to = audio_ms - EDGE_MS
        usable = (quiet_from >= 0) & (quiet_to > quiet_from) & (audio_ms < count)
        quiet_level = np.full(len(lags_ms), np.inf)
        from_, to = quiet_from[usable], quiet_to[usable]
        quiet_level[usable] = 10.0 * np.log10((summed[to] - summed[from_]) / (to - from_) + 1e-10)
        rise = np.zeros(len(lags_ms))
        rise[usable] = strength[audio_ms[usable]]
        keep = usable & (quiet_level <= speech_db - QUIET_DB) & (rise >= MIN_RISE_DB)
        curves[row, keep] = rise[keep]
    return lags_ms, curves


def pair_events(releases: list[LipRelease], samples: np.ndarray, sample_rate: int, fps: float) -> list[EventLag]:
    """Each release's acoustic partner, where the gates let one through.

    Args:
        releases: the clip's lip releases (frames at `fps`).
        samples: float ``[N]``, the audio on the video's timeline (time 0 = first frame).
        sample_rate: Hz.
        fps: the releases' frame rate.

    Returns:
        The paired events in time order (empty when none passes, or when no lag stands out).
    """
    if not releases:
        return []
    lags_ms, curves = lag_curves(releases, band_envelope_db(samples, sample_rate), fps)
    matched = curves.max(axis=1) > 0
    if not matched.any():
        return []
    scaled = curves[matched] / curves[matched].max(axis=1, keepdims=True)
    summed = moving_average(scaled.sum(axis=0), CONSENSUS_SMOOTH_MS, mode="constant")
    peak = int(np.argmax(summed))
    consensus = int(lags_ms[peak])
    elsewhere = np.abs(lags_ms - consensus) > 1000 * AMBIGUITY_SEPARATION_S
    if elsewhere.any() and summed[elsewhere].max() > MAX_AMBIGUITY * summed[peak]:
        return []
    near = np.abs(lags_ms - consensus) <= 1000 * PAIR_WINDOW_S
    events = []
    for release, curve in zip(releases, curves, strict=True):
        window = np.where(near, curve, 0.0)
        if window.max() <= 0:
            continue
        lag_ms = int(lags_ms[np.argmax(window)])
        video_s = release.time_frames / fps
        events.append(EventLag(video_s, video_s - lag_ms / 1000, lag_ms / 1000, float(window.max())))
    return events
