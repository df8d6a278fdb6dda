"""Log-mel spectrogram with its hop tied to the video frame rate.

Video frame ``k`` covers ``[k/fps, (k+1)/fps)`` and owns mel columns ``mels_per_frame * k`` up to
``mels_per_frame * (k+1) - 1``; column ``j`` is centred on sample ``j * hop_length``
(``center=True``). The hop must divide the audio of one video frame exactly: other frame rates
(29.97, 30 fps) are handled by resampling the video to the model's rate
(`avsync.io.media.read_video(fps=25)`), never by bending the hop.

The spectrogram is numpy's (`log_mel`): the features of every command, training's cache included,
come from this one implementation, and no command needs torch to compute them. It is torchaudio's
``MelSpectrogram`` (HTK mel scale, periodic Hann window, reflect padding) recomputed;
tests/test_audio.py holds the two within 1e-3 in log power.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from avsync.conventions import FPS, MELS_PER_FRAME, N_MELS, SAMPLE_RATE

LOG_OFFSET = 1e-6
SILENCE_DB = 30.0
"""A frame is voiced when its power is within this many dB of the clip's loud frames (`voiced_frames`)."""


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """Log-mel parameters (defaults: 16 kHz, 25 fps, 4 mel frames per video frame, 10 ms hop).

    Attributes:
        sample_rate: audio rate in Hz.
        fps: video frame rate the mel columns are tied to.
        mels_per_frame: mel columns per video frame.
        n_mels: mel bands.
        n_fft: FFT size in samples.
        win_length: analysis window in samples.
        f_min: lowest mel band edge in Hz.
        f_max: highest mel band edge in Hz.
    """

    sample_rate: int = SAMPLE_RATE
    fps: float = FPS
    mels_per_frame: int = MELS_PER_FRAME
    n_mels: int = N_MELS
    n_fft: int = 512
    win_length: int = 400
    f_min: float = 55.0
    f_max: float = 7600.0

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per video frame; raises ValueError unless ``sample_rate / fps`` is whole."""
        exact = self.sample_rate / self.fps
        if abs(exact - round(exact)) > 1e-9:
            raise ValueError(
                f"sample_rate/fps = {self.sample_rate}/{self.fps} is not a whole number of samples per "
                "video frame; resample the video to the model's fps instead"
            )
        return round(exact)

    @property
    def hop_length(self) -> int:
        """Samples between mel columns; raises ValueError unless ``sample_rate / (fps * mels_per_frame)`` is whole."""
        per_frame = self.samples_per_frame
        if per_frame % self.mels_per_frame:
            raise ValueError(
                f"{per_frame} samples per video frame do not split into {self.mels_per_frame} whole mel hops"
            )
        return per_frame // self.mels_per_frame

    def params(self) -> dict:
        """All parameters as a plain dict (for cache keys and feature metadata)."""
        return {**dataclasses.asdict(self), "hop_length": self.hop_length, "log_offset": LOG_OFFSET}


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """The inverse of `hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """Triangular HTK mel filters without area normalisation (torchaudio's ``melscale_fbanks``).

    Returns:
        float32 ``[n_fft // 2 + 1, n_mels]`` (read-only).
    """
    freqs = np.linspace(0.0, cfg.sample_rate // 2, cfg.n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - freqs[:, None]  # [F, n_mels + 2]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    bank = np.maximum(0.0, np.minimum(down, up)).astype(np.float32)
    bank.flags.writeable = False
    return bank


@functools.lru_cache(maxsize=8)
def _window(cfg: MelConfig) -> np.ndarray:
    """Periodic Hann window of ``win_length`` samples centred in ``n_fft`` (torch.stft's padding), float32."""
    window = np.zeros(cfg.n_fft)
    left = (cfg.n_fft - cfg.win_length) // 2
    window[left : left + cfg.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.win_length) / cfg.win_length)
    window = window.astype(np.float32)
    window.flags.writeable = False
    return window


COLUMN_CHUNK = 2048
"""Mel columns computed per FFT batch: bounds the spectrogram's working memory (a 4-minute song
at once held ~200 MB of float64 frames and spectra) at no cost in speed."""


def _mel_power(samples: np.ndarray, columns: int, cfg: MelConfig) -> np.ndarray:
    """Mel power of the first `columns` columns of one waveform; float32 ``[n_mels, columns]``."""
    half = cfg.n_fft // 2
    padded = np.pad(samples, half, mode="reflect" if len(samples) > half else "constant")
    window, bank = _window(cfg), mel_filterbank(cfg)
    out = np.empty((cfg.n_mels, columns), np.float32)
    for first in range(0, columns, COLUMN_CHUNK):
        count = min(COLUMN_CHUNK, columns - first)
        starts = (first + np.arange(count)) * cfg.hop_length
        frames = padded[starts[:, None] + np.arange(cfg.n_fft)[None, :]] * window  # [count, n_fft]
        spectrum = np.fft.rfft(frames, axis=1)
        power = spectrum.real**2 + spectrum.imag**2  # float32 [count, F]
        out[:, first : first + count] = (power @ bank).T
    return out


def log_mel(waveform: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """Log-mel spectrogram in whole video frames.

    The waveform is cut to ``T = N // cfg.samples_per_frame`` whole video frames, so frame ``k``
    owns columns ``mels_per_frame*k .. mels_per_frame*(k+1) - 1``. Each column is the mel power of
    a periodic-Hann-windowed ``n_fft`` frame centred on its sample (the signal reflected at its
    ends), as torchaudio's ``MelSpectrogram(center=True, power=2)`` with the HTK mel scale.

    Args:
        waveform: float ``[N]`` or ``[B, N]`` at ``cfg.sample_rate``, sample 0 at video time 0.
        cfg: mel parameters.

    Returns:
        float32 ``[n_mels, mels_per_frame * T]`` (or ``[B, n_mels, mels_per_frame * T]``),
        ``log(mel power + 1e-6)``.
    """
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim not in (1, 2):
        raise ValueError(f"waveform must be [N] or [B, N], got shape {tuple(samples.shape)}")
    frames = samples.shape[-1] // cfg.samples_per_frame
    columns = frames * cfg.mels_per_frame
    samples = samples[..., : frames * cfg.samples_per_frame]
    if frames == 0:
        return np.zeros((*samples.shape[:-1], cfg.n_mels, 0), np.float32)
    rows = samples.reshape(-1, samples.shape[-1])
    mel = np.stack([_mel_power(row, columns, cfg) for row in rows])
    np.log(mel + np.float32(LOG_OFFSET), out=mel)
    return mel.reshape(*samples.shape[:-1], cfg.n_mels, columns)


def voiced_frames(log_mel: np.ndarray, silence_db: float = SILENCE_DB) -> np.ndarray:
    """Frames whose audio power is within `silence_db` of the clip's loud frames.

    Args:
        log_mel: float `[80, 4T]` (natural log of mel power).
        silence_db: dynamic range in dB below the 99th percentile frame power counted as voiced.

    Returns:
        bool `[T]`.
    """
    frames = log_mel.shape[1] // MELS_PER_FRAME
    if frames == 0:
        return np.zeros(0, dtype=bool)
    grouped = log_mel[:, : frames * MELS_PER_FRAME].reshape(log_mel.shape[0], frames, MELS_PER_FRAME)
    grouped = grouped.astype(np.float64)
    peak = grouped.max(axis=(0, 2), keepdims=True)
    level = (peak + np.log(np.exp(grouped - peak).mean(axis=(0, 2), keepdims=True))).ravel()  # log mean power
    reference = np.percentile(level, 99)
    return level > max(reference - silence_db * np.log(10.0) / 10.0, np.log(LOG_OFFSET) + 1.0)


def frame_log_mel(log_mel: np.ndarray) -> np.ndarray:
    """Log-mel with one column per video frame, each band standardised over the clip.

    The mean of a frame's `MELS_PER_FRAME` columns; standardising each band over the whole clip
    takes out the recording's colour and level and keeps how the voice moves.

    Args:
        log_mel: float `[80, 4M]`.

    Returns:
        float32 `[M, 80]`.
    """
    frames = log_mel.shape[1] // MELS_PER_FRAME
    per_frame = log_mel[:, : frames * MELS_PER_FRAME].reshape(log_mel.shape[0], frames, MELS_PER_FRAME).mean(axis=2).T
    per_frame = per_frame.astype(np.float64)
    return ((per_frame - per_frame.mean(axis=0)) / (per_frame.std(axis=0) + 1e-6)).astype(np.float32)
