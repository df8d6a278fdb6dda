"""Acoustic onsets at millisecond steps: where the energy above the voice's fundamental jumps.

When closed lips part, the air held behind them sounds at once: a plosive burst (/p b/) or the
vowel after a nasal murmur (/m/), both an abrupt rise of the energy in 1-7 kHz after a stretch
where that band was quiet (silence, a voice bar or a murmur carry little energy there).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from avsync.smoothing import moving_average

STEP_S = 0.001
"""Time step of the envelope and onset strength (1 ms)."""
BAND_HZ = (1000.0, 7000.0)
"""The band whose energy the lips' release switches on."""
WINDOW_S = 0.008
"""Energy window (centred)."""
BEFORE_MS, AFTER_MS, GAP_MS = 20, 10, 2
"""Onset strength at t: mean level over [t + GAP, t + GAP + AFTER) minus that over [t - BEFORE, t), dB."""


def band_envelope_db(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Energy in `BAND_HZ` per millisecond.

    Args:
        samples: float ``[N]``, mono.
        sample_rate: Hz (at least 16 kHz: the band reaches 7 kHz).

    Returns:
        float64 ``[ceil(N / (sample_rate * STEP_S))]``: 10 log10 of the mean power in a window
        of `WINDOW_S` centred on each millisecond.
    """
    samples = np.asarray(samples, dtype=np.float64)
    high = min(BAND_HZ[1], 0.45 * sample_rate)
    sos = signal.butter(4, [BAND_HZ[0], high], btype="band", fs=sample_rate, output="sos")
    filtered = signal.sosfiltfilt(sos, samples) if len(samples) > 30 else np.zeros_like(samples)
    window = max(1, round(WINDOW_S * sample_rate))
    power = moving_average(filtered**2, window, mode="nearest")
    step = max(1, round(STEP_S * sample_rate))
    return 10.0 * np.log10(power[::step] + 1e-10)


def onset_strength(envelope_db: np.ndarray) -> np.ndarray:
    """How sharply the band's level rises at each millisecond.

    Args:
        envelope_db: float ``[M]`` from `band_envelope_db`.

    Returns:
        float64 ``[M]``: the rise in dB (0 where the level falls).
    """
    count = len(envelope_db)
    index = np.arange(count)
    before = moving_average(envelope_db, BEFORE_MS, mode="nearest")[np.clip(index - BEFORE_MS // 2 - 1, 0, count - 1)]
    after = moving_average(envelope_db, AFTER_MS, mode="nearest")[np.clip(index + AFTER_MS // 2 + GAP_MS, 0, count - 1)]
    return np.clip(after - before, 0.0, None)
