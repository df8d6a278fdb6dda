"""Training augmentation on batches (on the training device): mouth crops and log-mel windows.

Every sample gets its own random parameters; the 16 frames of one mouth clip share one geometric
transform, so lip motion is preserved. The networks standardise each window, so an overall gain or
an overall brightness is invisible to them: what is augmented is what they do see (lighting that
changes within the clip, geometry, the level of the vocal relative to noise and accompaniment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths (0 disables an augmentation).

    Attributes:
        brightness: offset range (+-, in 0..1 pixel units) at the clip's first and last frame,
            interpolated in between (lighting drift within the clip).
        contrast: contrast factor range 1 +- contrast (per clip, drifting like brightness).
        scale: zoom range 1 +- scale.
        translate: shift range +- translate (fraction of the crop side) in x and y.
        flip: probability of a horizontal mirror.
        noise_prob: probability of adding coloured noise to the audio.
        noise_snr_db: (low, high) vocal-to-noise ratio range in dB.
        mix_prob: probability of mixing in the accompaniment (when the clip has one).
        mix_snr_db: (low, high) vocal-to-accompaniment ratio range in dB (the vocal's gain in the mix).
        lip_scale: per-clip gain range 1 +- lip_scale of each lip-geometry value (speakers move
            their lips more or less).
        lip_noise: standard deviation of the noise added to the standardised lip geometry
            (landmark jitter).
        frame_gain, frame_offset, frame_tilt, frame_noise: per-clip gain spread, level offset and
            spectral tilt (standard deviations) and per-value noise of standardised frame log-mel
            (`avsync.features.audio.frame_log_mel`): other microphones, rooms and voices.
    """

    brightness: float = 0.1
    contrast: float = 0.2
    scale: float = 0.08
    translate: float = 0.06
    flip: float = 0.5
    noise_prob: float = 0.5
    noise_snr_db: tuple[float, float] = (5.0, 30.0)
    mix_prob: float = 0.5
    mix_snr_db: tuple[float, float] = (-5.0, 15.0)
    lip_scale: float = 0.1
    lip_noise: float = 0.15
    frame_gain: float = 0.1
    frame_offset: float = 0.3
    frame_tilt: float = 0.3
    frame_noise: float = 0.15


def _uniform(low: float, high: float, size: tuple[int, ...], like: Tensor) -> Tensor:
    return torch.rand(size, device=like.device, dtype=like.dtype) * (high - low) + low


def augment_mouth(mouth: Tensor, cfg: AugmentConfig) -> Tensor:
    """Random lighting drift, zoom, translation and mirror of mouth clips.

    Args:
        mouth: float `[B, 16, 64, 64]` in 0..1.
        cfg: strengths.

    Returns:
        float `[B, 16, 64, 64]` in 0..1.
    """
    batch, frames = mouth.shape[:2]
    zoom = _uniform(1 - cfg.scale, 1 + cfg.scale, (batch,), mouth)
    mirror = torch.where(torch.rand(batch, device=mouth.device) < cfg.flip, -1.0, 1.0).to(mouth.dtype)
    theta = torch.zeros(batch, 2, 3, device=mouth.device, dtype=mouth.dtype)
    theta[:, 0, 0] = mirror / zoom
    theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = _uniform(-2 * cfg.translate, 2 * cfg.translate, (batch, 2), mouth)  # grid units span 2
    grid = F.affine_grid(theta, list(mouth.shape), align_corners=False)
    moved = F.grid_sample(mouth, grid, mode="bilinear", padding_mode="border", align_corners=False)

    ramp = torch.linspace(0, 1, frames, device=mouth.device, dtype=mouth.dtype).view(1, frames, 1, 1)

    def drifting(low: float, high: float) -> Tensor:
        start, end = _uniform(low, high, (batch, 1, 1, 1), mouth), _uniform(low, high, (batch, 1, 1, 1), mouth)
        return start + (end - start) * ramp  # [B, 16, 1, 1]

    offset = drifting(-cfg.brightness, cfg.brightness)
    gain = drifting(1 - cfg.contrast, 1 + cfg.contrast)
    mean = moved.mean(dim=(2, 3), keepdim=True)
    return ((moved - mean) * gain + mean + offset).clamp(0.0, 1.0)


def augment_mel(log_mel: Tensor, accompaniment: Tensor, cfg: AugmentConfig) -> Tensor:
    """Mix accompaniment and coloured noise into vocal log-mel windows (in the power domain).

    Args:
        log_mel: float `[B, 80, 64]`, natural log of mel power of the vocal reference.
        accompaniment: float `[B, 80, 64]`, the same for the accompaniment at the same time
            (silence where the clip has none).
        cfg: strengths.

    Returns:
        float `[B, 80, 64]` log-mel of the mixture.
    """
    batch, n_mels, _ = log_mel.shape
    vocal = log_mel.exp()
    vocal_power = vocal.mean(dim=(1, 2), keepdim=True)
    mixture = vocal

    accompaniment_power = accompaniment.exp()
    level = accompaniment_power.mean(dim=(1, 2), keepdim=True)
    snr = _uniform(*cfg.mix_snr_db, (batch, 1, 1), log_mel)
    scale = vocal_power / (level * 10 ** (snr / 10)).clamp_min(1e-12)
    mix = (torch.rand(batch, 1, 1, device=log_mel.device) < cfg.mix_prob).to(log_mel.dtype)
    mixture = mixture + mix * scale * accompaniment_power

    tilt_db = _uniform(-10.0, 10.0, (batch, 1, 1), log_mel)  # level of the top band relative to the bottom one
    bands = torch.linspace(-0.5, 0.5, n_mels, device=log_mel.device, dtype=log_mel.dtype).view(1, n_mels, 1)
    shape = torch.exp(tilt_db * bands * math.log(10) / 10)
    noise = shape * torch.empty_like(log_mel).exponential_()  # power of complex Gaussian noise per bin
    noise = noise / noise.mean(dim=(1, 2), keepdim=True)
    snr = _uniform(*cfg.noise_snr_db, (batch, 1, 1), log_mel)
    add_noise = (torch.rand(batch, 1, 1, device=log_mel.device) < cfg.noise_prob).to(log_mel.dtype)
    mixture = mixture + add_noise * vocal_power / 10 ** (snr / 10) * noise
    return mixture.log()


def augment_lips(lips: Tensor, cfg: AugmentConfig) -> Tensor:
    """Per-clip gain of each lip-geometry value and landmark jitter.

    Args:
        lips: float `[B, 16, C]` standardised lip geometry (`avsync.features.lips.lip_geometry`).
        cfg: strengths.

    Returns:
        float `[B, 16, C]`.
    """
    gain = 1 + cfg.lip_scale * torch.randn(lips.shape[0], 1, lips.shape[2], device=lips.device, dtype=lips.dtype)
    return lips * gain + cfg.lip_noise * torch.randn_like(lips)


def augment_frames(frames: Tensor, cfg: AugmentConfig) -> Tensor:
    """Gain, level offset, spectral tilt and noise on standardised frame log-mel.

    Args:
        frames: float `[B, M, 80]`.
        cfg: strengths.

    Returns:
        float `[B, M, 80]`.
    """
    batch, _, n_mels = frames.shape

    def per_clip() -> Tensor:
        return torch.randn(batch, 1, 1, device=frames.device, dtype=frames.dtype)

    tilt = torch.linspace(-1, 1, n_mels, device=frames.device, dtype=frames.dtype).view(1, 1, n_mels) * cfg.frame_tilt * per_clip()
    return frames * (1 + cfg.frame_gain * per_clip()) + cfg.frame_offset * per_clip() + tilt + cfg.frame_noise * torch.randn_like(frames)
