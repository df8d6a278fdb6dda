"""A take's own sound against the music: where a camera microphone heard the playback.

Most music-video takes are shot to playback, and the camera's microphone records it through the
room: the song, quieter, coloured by the microphone and the room, smeared by reverb, under talk
and handling noise. Both recordings are reduced to their band contours: each mel band's log power
with its own slow level taken off (a 2-s moving average: a level or a fixed colouring adds a
constant to a band's log and vanishes), standardised per band. The take's contours are slid along
the music's: at each position the normalised correlation over the overlapping part (both sides'
energy measured there, so a quiet verse and a loud chorus compare alike). The best position,
refined between mel columns, is the take's offset; its confidence is how far it stands out among
all positions, in robust z units (median and MAD of the correlation curve, as
`avsync.align.robust.offset_confidence` reads the lips' curve).

Contours rather than onsets (the rise of each band's power, as beat trackers use): under a 0.8-s
reverb at 0 dB noise, a phone's band and another song's vocal over the take, onsets placed 66 % of
3-10 s takes within a frame and contours 91 %, with another song's takes lower in confidence
(experiments/probes/camera_audio.py; docs/takes.md has the table).

A song that repeats a section note for note has one peak per repeat: positions whose score comes
close to the best (`AUDIO_RUNNER_UP_SHARE`) are returned as candidates, for the lips to choose
among (`avsync.align.place.near_candidates`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsync.align.tuning import (
    AUDIO_LEVEL_SECONDS,
    AUDIO_MATCH_CONFIDENCE,
    AUDIO_MIN_SECONDS,
    AUDIO_RUNNER_UP_SHARE,
    AUDIO_SEPARATION_S,
)
from avsync.conventions import FPS, MELS_PER_FRAME
from avsync.smoothing import moving_average

COLUMNS_PER_S = FPS * MELS_PER_FRAME
"""Mel columns per second (the log-mel's hop, `avsync.features.audio.MelConfig`)."""


@dataclass(frozen=True)
class AudioMatch:
    """Where a take's sound lies in the music.

    Attributes:
        offset_s: ``t_video - t_music`` of the best position (positive: the take is late), refined
            between mel columns.
        confidence: the best position's robust z among all positions.
        candidates_s: offsets of every position scoring at least `AUDIO_RUNNER_UP_SHARE` of the
            best's z, at least `AUDIO_SEPARATION_S` apart; the first is `offset_s`.
    """

    offset_s: float
    confidence: float
    candidates_s: tuple[float, ...]

    @property
    def confident(self) -> bool:
        """Whether the take's sound is the music's (`AUDIO_MATCH_CONFIDENCE`)."""
        return self.confidence >= AUDIO_MATCH_CONFIDENCE

    @property
    def ambiguous(self) -> bool:
        """Whether another position of the music sounds nearly as alike (a repeated section)."""
        return len(self.candidates_s) > 1


def band_contours(log_mel: np.ndarray) -> np.ndarray:
    """Each mel band's log power less its `AUDIO_LEVEL_SECONDS` moving average, standardised per band.

    Args:
        log_mel: float [80, C] natural-log mel power (100 columns a second).

    Returns:
        float64 [80, C]; a band that never moves is all zeros.
    """
    power = log_mel.astype(np.float64)
    width = max(1, round(AUDIO_LEVEL_SECONDS * COLUMNS_PER_S))
    contours = power - moving_average(power, width, axis=1, mode="nearest")
    contours -= contours.mean(axis=1, keepdims=True)
    spread = contours.std(axis=1, keepdims=True)
    return np.divide(contours, spread, out=np.zeros_like(contours), where=spread > 1e-9)


def match_audio(take_log_mel: np.ndarray, music_log_mel: np.ndarray) -> AudioMatch | None:
    """Slide the take's band contours along the music's (`band_contours`).

    Every position keeping at least half the take on the music is tried.

    Args:
        take_log_mel: float [80, C] of the take's own audio (on the video's timeline).
        music_log_mel: float [80, K] of the music, same mel parameters.

    Returns:
        The match, or None when the take's audio is shorter than `AUDIO_MIN_SECONDS` or never
        changes (silence, a steady hum).
    """
    take, music = band_contours(take_log_mel), band_contours(music_log_mel)
    n, m = take.shape[1], music.shape[1]
    if n < AUDIO_MIN_SECONDS * COLUMNS_PER_S or not take.any() or not music.any():
        return None
    # position p: take column t meets music column t + p; kept below where half the take is on the music
    products = _correlations(take, music)
    positions = np.arange(-(n - 1), m)  # products[k] is position k - (n - 1)
    take_energy = np.concatenate([[0.0], np.cumsum((take**2).sum(axis=0))])
    music_energy = np.concatenate([[0.0], np.cumsum((music**2).sum(axis=0))])
    first_take = np.clip(-positions, 0, n)  # overlap: take columns [first_take, last_take)
    last_take = np.clip(m - positions, 0, n)
    overlap = last_take - first_take
    norms = np.sqrt((take_energy[last_take] - take_energy[first_take])
                    * (music_energy[last_take + positions] - music_energy[first_take + positions]))  # fmt: skip
    keep = (overlap >= n / 2) & (norms > 1e-9)
    if keep.sum() < 3:
        return None
    curve = products[keep] / norms[keep]
    positions = positions[keep]
    median = float(np.median(curve))
    spread = max(1.4826 * float(np.median(np.abs(curve - median))), 1e-9)
    z = (curve - median) / spread
    best = int(np.argmax(curve))
    offset_s = -(float(positions[best]) + _parabolic_peak(curve, best)) / COLUMNS_PER_S
    return AudioMatch(offset_s=offset_s, confidence=float(z[best]), candidates_s=(offset_s, *_runners_up(z, positions, best)))


def _correlations(take: np.ndarray, music: np.ndarray) -> np.ndarray:
    """Full cross-correlation summed over bands: ``[k] = sum_b sum_t music[b, t + k - (N - 1)] * take[b, t]``.

    Args:
        take: float [B, N].
        music: float [B, M].

    Returns:
        float64 [N + M - 1].
    """
    n, m = take.shape[1], music.shape[1]
    size = 1 << (n + m - 2).bit_length()  # a power of two >= N + M - 1
    spectrum = (np.fft.rfft(music, size, axis=1) * np.fft.rfft(take[:, ::-1], size, axis=1)).sum(axis=0)
    return np.fft.irfft(spectrum, size)[: n + m - 1]


def _parabolic_peak(curve: np.ndarray, index: int) -> float:
    """Sub-column position of a peak (-0.5..0.5) from the parabola through it and its neighbours."""
    if index == 0 or index == len(curve) - 1:
        return 0.0
    left, centre, right = curve[index - 1 : index + 2]
    bend = left - 2 * centre + right
    return 0.0 if bend >= 0 else float(np.clip(0.5 * (left - right) / bend, -0.5, 0.5))


def _runners_up(z: np.ndarray, positions: np.ndarray, best: int) -> tuple[float, ...]:
    """Offsets (s) of the other positions near the best in z, each `AUDIO_SEPARATION_S` from the best and one another."""
    separation = AUDIO_SEPARATION_S * COLUMNS_PER_S
    chosen = [best]
    for index in np.argsort(-z):
        if z[index] < AUDIO_RUNNER_UP_SHARE * z[best]:
            break
        if all(abs(positions[index] - positions[other]) >= separation for other in chosen):
            chosen.append(int(index))
    return tuple(float(-positions[index] / COLUMNS_PER_S) for index in chosen[1:])
