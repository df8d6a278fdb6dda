"""Log-mel spectrogram with its hop tied to the video frame rate.

Video frame ``k`` covers ``[k/fps, (k+1)/fps)`` and owns mel columns ``mels_per_frame * k`` up to
``mels_per_frame * (k+1) - 1``; column ``j`` is centred on sample ``j * hop_length``
(``center=True``). The hop must divide the audio of one video frame exactly: other frame rates
(29.97, 30 fps) are handled by resampling the video to the model's rate
(`avsync.io.media.read_video(fps=25)`), never by bending the hop.

torch and torchaudio are imported on first use: the video-only feature path (`extract_visual`,
run in a process of its own by `avsync.pipeline.shot_features`) never loads them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import numpy as np

from avsync.conventions import FPS, MELS_PER_FRAME, SAMPLE_RATE

if TYPE_CHECKING:
    import torch
    import torchaudio

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
    n_mels: int = 80
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


@functools.lru_cache(maxsize=8)
def _mel_transform(cfg: MelConfig, device: torch.device) -> torchaudio.transforms.MelSpectrogram:
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        f_min=cfg.f_min,
        f_max=cfg.f_max,
        n_mels=cfg.n_mels,
        center=True,
        power=2.0,
    ).to(device)


def log_mel(waveform: np.ndarray | torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """Log-mel spectrogram in whole video frames.

    The waveform is cut to ``T = N // cfg.samples_per_frame`` whole video frames, so frame ``k``
    owns columns ``mels_per_frame*k .. mels_per_frame*(k+1) - 1``.

    Args:
        waveform: float ``[N]`` or ``[B, N]`` at ``cfg.sample_rate``, sample 0 at video time 0.
        cfg: mel parameters.

    Returns:
        float32 ``[n_mels, mels_per_frame * T]`` (or ``[B, n_mels, mels_per_frame * T]``),
        ``log(mel power + 1e-6)``, on the waveform's device.
    """
    import torch

    samples = torch.as_tensor(waveform, dtype=torch.float32)
    if samples.ndim not in (1, 2):
        raise ValueError(f"waveform must be [N] or [B, N], got shape {tuple(samples.shape)}")
    frames = samples.shape[-1] // cfg.samples_per_frame
    columns = frames * cfg.mels_per_frame
    samples = samples[..., : frames * cfg.samples_per_frame]
    if frames == 0:
        return samples.new_zeros((*samples.shape[:-1], cfg.n_mels, 0))
    mel = _mel_transform(cfg, samples.device)(samples)
    return torch.log(mel[..., :columns] + LOG_OFFSET)


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
