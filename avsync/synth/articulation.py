"""From syllables to a per-frame mouth shape: openness and width, like a singer's lips move.

The lips are closed on rests and on m/b/p, nearly closed on f, partly open on the other
consonants and open by vowel (widest on 'a', spread on 'i', rounded and narrow on 'o'/'u').
Targets are smoothed (the lips have inertia) and the mouth leads the sound by `lead_s`, as
singers shape a vowel slightly before it sounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from avsync.conventions import FPS
from avsync.synth.singing import Syllable

# Mouth (openness 0..1, width relative to the resting mouth) per vowel.
VOWEL_SHAPES: dict[str, tuple[float, float]] = {
    "a": (1.0, 1.0), "e": (0.55, 1.12), "i": (0.32, 1.22), "o": (0.72, 0.72), "u": (0.42, 0.6),
}  # fmt: skip
# Openness during a consonant; width None = already the coming vowel's width.
CONSONANT_SHAPES: dict[str, tuple[float, float | None]] = {
    "m": (0.0, None), "b": (0.0, None), "p": (0.0, None), "f": (0.07, None),
    "s": (0.12, 1.1), "sh": (0.2, 0.72), "t": (0.2, None), "d": (0.2, None), "n": (0.18, None),
    "l": (0.25, None), "k": (0.25, None), "g": (0.25, None), "h": (0.45, None),
}  # fmt: skip
REST_WIDTH = 1.0
# Talking opens the mouth less than singing.
TALK_LEVEL = 0.65
# Seconds the mouth leads the sound (one frame at 25 fps).
MOUTH_LEAD_S = 0.04
GRID_HZ = 500.0
OPEN_SMOOTHING_S = 0.02
WIDTH_SMOOTHING_S = 0.035


@dataclass
class MouthTrack:
    """The mouth per video frame (frame k shows time ``k / fps``).

    Args:
        mouth_open: float32 ``[T]`` 0 (closed) .. 1 (widest 'a').
        mouth_width: float32 ``[T]`` width relative to the resting mouth.
        phone: per frame the vowel or consonant being articulated, ``""`` at rest.
    """

    mouth_open: np.ndarray
    mouth_width: np.ndarray
    phone: list[str]


def mouth_track(syllables: list[Syllable], n_frames: int, fps: float = FPS, lead_s: float = MOUTH_LEAD_S) -> MouthTrack:
    """Articulate `syllables` into per-frame mouth shapes.

    Sung syllables open the mouth by vowel and loudness; mouthed ones (``pitch_hz == 0``, talking)
    open it less (`TALK_LEVEL`).

    Args:
        syllables: syllables in time order (non-overlapping).
        n_frames: number of video frames T.
        fps: video frame rate.
        lead_s: the mouth shows at time t the shape of the sound at ``t + lead_s``.

    Returns:
        The mouth track.
    """
    n_grid = int(np.ceil((n_frames / fps + lead_s + 0.5) * GRID_HZ))
    open_target = np.zeros(n_grid)
    width_target = np.full(n_grid, REST_WIDTH)
    phone_index = np.full(n_grid, -1)
    phones: list[str] = []

    def span(start: float, end: float) -> slice:
        return slice(max(0, round(start * GRID_HZ)), max(0, round(end * GRID_HZ)))

    for syllable in syllables:
        vowel_open, vowel_width = VOWEL_SHAPES[syllable.vowel]
        vowel_open *= (0.8 + 0.2 * syllable.loudness) * (1.0 if syllable.pitch_hz > 0 else TALK_LEVEL)
        if syllable.consonant:
            consonant_open, consonant_width = CONSONANT_SHAPES[syllable.consonant]
            head = span(syllable.start, syllable.vowel_start)
            open_target[head] = consonant_open * (vowel_open if syllable.consonant == "h" else 1.0)
            width_target[head] = vowel_width if consonant_width is None else consonant_width
            phone_index[head] = len(phones)
            phones.append(syllable.consonant)
        # The lips start closing during the release, so the vowel target ends a little early.
        body = span(syllable.vowel_start, syllable.end - 0.03)
        open_target[body] = vowel_open
        width_target[body] = vowel_width
        phone_index[span(syllable.vowel_start, syllable.end)] = len(phones)
        phones.append(syllable.vowel)
    mouth_open = np.clip(ndimage.gaussian_filter1d(open_target, OPEN_SMOOTHING_S * GRID_HZ, mode="nearest"), 0, 1)
    mouth_width = ndimage.gaussian_filter1d(width_target, WIDTH_SMOOTHING_S * GRID_HZ, mode="nearest")
    at = np.minimum(np.round((np.arange(n_frames) / fps + lead_s) * GRID_HZ).astype(int), n_grid - 1)
    return MouthTrack(
        mouth_open=mouth_open[at].astype(np.float32),
        mouth_width=mouth_width[at].astype(np.float32),
        phone=[phones[i] if i >= 0 else "" for i in phone_index[at]],
    )


def active_frames(syllables: list[Syllable], n_frames: int, fps: float = FPS) -> np.ndarray:
    """Frames during which a syllable sounds for at least half the frame.

    Args:
        syllables: the sung syllables.
        n_frames: number of video frames T.
        fps: video frame rate.

    Returns:
        bool ``[T]``; frame k covers ``[k / fps, (k + 1) / fps)``.
    """
    per_frame = 40
    sounding = np.zeros(n_frames * per_frame, dtype=bool)
    for syllable in syllables:
        first = max(0, round(syllable.start * fps * per_frame))
        sounding[first : max(first, round(syllable.end * fps * per_frame))] = True
    return sounding.reshape(n_frames, per_frame).mean(axis=1) >= 0.5
