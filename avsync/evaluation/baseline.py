"""Classical baseline: lip opening against the speech-band energy of the reference.

* Video signal: inner-lip opening, the distance between landmarks 62 and 66 (0-based iBUG
  indices: middle of the upper and lower inner lip) divided by the face width (landmarks 0-16).
* Audio signal: log energy of the reference in the speech band (300-3000 Hz), summed over the
  mel bands whose centre lies in the band, averaged over each video frame's four mel columns.
* Constant offset: the lag of the highest normalised cross-correlation of the two signals
  (:func:`xcorr_offset`, same sign convention as the model: positive = video late).
* Non-constant maps: the same DTW as the model on a cost of ``1 - local correlation`` between
  centred windows of the two signals (:func:`baseline_cost`).
"""

from __future__ import annotations

import numpy as np

from avsync.align.cost import normalise_cost
from avsync.align.timemap import OffsetEstimate
from avsync.conventions import FPS
from avsync.features.audio import MelConfig
from avsync.models.layers import MELS_PER_FRAME

SPEECH_BAND_HZ = (300.0, 3000.0)


def _mel_centres_hz(cfg: MelConfig) -> np.ndarray:
    """Centre frequency of each mel band (HTK mel scale, as torchaudio's MelSpectrogram)."""
    def to_mel(f: float | np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    points = np.linspace(to_mel(cfg.f_min), to_mel(cfg.f_max), cfg.n_mels + 2)
    return 700.0 * (10.0 ** (points[1:-1] / 2595.0) - 1.0)


def speech_band_envelope(log_mel: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """Log energy per video frame in the speech band.

    Args:
        log_mel: float [n_mels, 4M], natural-log mel power.
        cfg: the mel parameters the features were made with.

    Returns:
        float [M].
    """
    centres = _mel_centres_hz(cfg)
    bands = (centres >= SPEECH_BAND_HZ[0]) & (centres <= SPEECH_BAND_HZ[1])
    power = np.exp(log_mel[bands].astype(np.float64)).sum(axis=0)
    frames = len(power) // MELS_PER_FRAME
    return np.log(power[: frames * MELS_PER_FRAME].reshape(frames, MELS_PER_FRAME).mean(axis=1) + 1e-10)


def _fill_gaps(signal: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN samples (edges held); all-NaN becomes zeros."""
    good = np.isfinite(signal)
    if not good.any():
        return np.zeros_like(signal)
    index = np.arange(len(signal))
    return np.interp(index, index[good], signal[good])


def xcorr_offset(mouth_open: np.ndarray, envelope: np.ndarray, fps: float = FPS, *, max_offset: int | None = None,
                 min_overlap: int | None = None) -> OffsetEstimate:
    """Constant offset by normalised cross-correlation.

    For each lag ``d`` (video frame ``i`` against reference frame ``i - d``), the Pearson
    correlation over the overlapping frames where the lip opening is known. The estimate's
    ``curve`` is ``-correlation`` (lower is better, as for the model), so ``confidence`` is the
    best correlation minus the median one.

    Args:
        mouth_open: float [N], NaN where unknown.
        envelope: float [M].
        fps: frame rate.
        max_offset: largest ``|d|`` tried; None: every lag with enough overlap.
        min_overlap: fewest valid frames a lag needs; default ``min(N, M) // 2``.

    Returns:
        The :class:`~avsync.align.timemap.OffsetEstimate`.
    """
    n, m = len(mouth_open), len(envelope)
    min_overlap = max(3, min(n, m) // 2 if min_overlap is None else min_overlap)
    low, high = -(m - 1), n - 1
    if max_offset is not None:
        low, high = max(low, -max_offset), min(high, max_offset)
    offsets, curve = [], []
    for d in range(low, high + 1):
        i0, i1 = max(0, d), min(n, m + d)
        video = mouth_open[i0:i1]
        audio = envelope[i0 - d : i1 - d]
        good = np.isfinite(video)
        if good.sum() < min_overlap:
            continue
        v, a = video[good] - video[good].mean(), audio[good] - audio[good].mean()
        denominator = np.sqrt((v * v).sum() * (a * a).sum())
        offsets.append(d)
        curve.append(-float((v * a).sum() / denominator) if denominator > 0 else 0.0)
    if not offsets:
        raise ValueError(f"no lag overlaps {min_overlap} valid frames")
    offsets_arr, curve_arr = np.array(offsets, np.int64), np.array(curve)
    best = int(np.argmin(curve_arr))
    return OffsetEstimate(int(offsets_arr[best]), float(offsets_arr[best] / fps), float(np.median(curve_arr) - curve_arr[best]),
                          offsets_arr, curve_arr)


def _centred_windows(signal: np.ndarray, window: int) -> np.ndarray:
    """Rows of ``window`` samples centred on each frame (edges repeated), zero mean, unit norm."""
    index = np.clip(np.arange(len(signal))[:, None] - window // 2 + np.arange(window)[None, :], 0, len(signal) - 1)
    rows = signal[index]
    rows = rows - rows.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norm, out=np.zeros_like(rows), where=norm > 0)


def baseline_cost(mouth_open: np.ndarray, envelope: np.ndarray, *, window: int = 16,
                  video_valid: np.ndarray | None = None, ref_active: np.ndarray | None = None) -> np.ndarray:
    """DTW cost of the baseline: ``1 - correlation`` of centred signal windows, normalised.

    Args:
        mouth_open: float [N], NaN where unknown (those frames are uninformative rows).
        envelope: float [M].
        window: window length in frames (16, like the model).
        video_valid: bool [N], extra invalid rows.
        ref_active: bool [M], False for silent reference frames.

    Returns:
        float64 [N, M] on the same robust z-scale as the model's cost.
    """
    known = np.isfinite(mouth_open)
    if video_valid is not None:
        known &= np.asarray(video_valid, bool)
    correlation = _centred_windows(_fill_gaps(mouth_open), window) @ _centred_windows(envelope.astype(np.float64), window).T
    return normalise_cost(1.0 - correlation, known, ref_active)
