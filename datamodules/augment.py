"""Training augmentation on batches (on the training device): mouth crops and log-mel windows.

Every sample gets its own random parameters; the 16 frames of one mouth clip share one geometric
transform, so lip motion is preserved. The networks standardise each window, so an overall gain or
an overall brightness is invisible to them: what is augmented is what they do see (lighting that
changes within the clip, geometry, the level of the vocal relative to noise and accompaniment).

The strong appearance augmentations of the mouth crops (``rotate``, ``gamma``, ``blur``,
``pixel_noise``, ``compress``) are off by default; an augmentation that is off draws no random
numbers, so a configuration without them gives exactly the batches it gave before they existed.
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
        rotate: in-plane rotation range +- rotate degrees (per clip, with the zoom and shift: head
            roll).
        gamma: gamma curve ``x ** exp(g)`` with g uniform in +- gamma (per clip; exposure and
            camera response, which a window's standardisation does not undo).
        blur: Gaussian blur of sigma uniform in 0..blur pixels (per clip; focus, motion, a face
            far from the camera upsampled to the crop).
        pixel_noise: sensor noise: each pixel of each frame gets Gaussian noise of a standard
            deviation uniform in 0..pixel_noise (0..1 pixel units, drawn per clip).
        compress: JPEG-like coding artefacts: each 8x8 block of each frame is DCT-transformed and
            its coefficients rounded to the JPEG luminance quantisation table times a factor
            uniform in 0..compress (per clip; factor 1 is JPEG quality 50, 2 quality 25, 5 quality 10).
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
    rotate: float = 0.0
    gamma: float = 0.0
    blur: float = 0.0
    pixel_noise: float = 0.0
    compress: float = 0.0


def _uniform(low: float, high: float, size: tuple[int, ...], like: Tensor) -> Tensor:
    return torch.rand(size, device=like.device, dtype=like.dtype) * (high - low) + low


def augment_mouth(mouth: Tensor, cfg: AugmentConfig) -> Tensor:
    """Random geometry and lighting drift of mouth clips, then (when on) gamma, blur, noise and coding artefacts.

    The geometry (zoom, rotation, shift, mirror) is one affine transform per clip; then come the
    lighting drift and the appearance augmentations in the order a camera applies them (exposure,
    optics, sensor, codec).

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
    theta[:, :, 2] = _uniform(-2 * cfg.translate, 2 * cfg.translate, (batch, 2), mouth)  # grid units span 2
    # output -> input coordinates: rotation after the mirror; the crops are square (rotate 0 draws nothing)
    angle = _uniform(-math.radians(cfg.rotate), math.radians(cfg.rotate), (batch,), mouth) if cfg.rotate > 0 else zoom.new_zeros(batch)
    cos, sin = angle.cos(), angle.sin()
    theta[:, 0, 0] = mirror * cos / zoom
    theta[:, 0, 1] = -sin / zoom
    theta[:, 1, 0] = mirror * sin / zoom
    theta[:, 1, 1] = cos / zoom
    grid = F.affine_grid(theta, list(mouth.shape), align_corners=False)
    moved = F.grid_sample(mouth, grid, mode="bilinear", padding_mode="border", align_corners=False)

    ramp = torch.linspace(0, 1, frames, device=mouth.device, dtype=mouth.dtype).view(1, frames, 1, 1)

    def drifting(low: float, high: float) -> Tensor:
        start, end = _uniform(low, high, (batch, 1, 1, 1), mouth), _uniform(low, high, (batch, 1, 1, 1), mouth)
        return start + (end - start) * ramp  # [B, 16, 1, 1]

    offset = drifting(-cfg.brightness, cfg.brightness)
    gain = drifting(1 - cfg.contrast, 1 + cfg.contrast)
    mean = moved.mean(dim=(2, 3), keepdim=True)
    out = ((moved - mean) * gain + mean + offset).clamp(0.0, 1.0)

    if cfg.gamma > 0:
        out = out.pow(_uniform(-cfg.gamma, cfg.gamma, (batch, 1, 1, 1), mouth).exp())
    if cfg.blur > 0:
        out = _gaussian_blur(out, _uniform(0.0, cfg.blur, (batch,), mouth), cfg.blur)
    if cfg.pixel_noise > 0:
        out = (out + _uniform(0.0, cfg.pixel_noise, (batch, 1, 1, 1), mouth) * torch.randn_like(out)).clamp(0.0, 1.0)
    if cfg.compress > 0:
        out = _jpeg_blocks(out, _uniform(0.0, cfg.compress, (batch,), mouth))
    return out


def _gaussian_blur(images: Tensor, sigma: Tensor, max_sigma: float) -> Tensor:
    """Separable Gaussian blur of `images` `[B, T, H, W]`, sigma `[B]` pixels per sample (edges replicated).

    Each direction is one matrix product per frame (a banded `[B, n, n]` blur matrix per sample):
    much faster on CPU than a grouped convolution with one kernel per frame.
    """
    batch, _, height, width = images.shape
    radius = max(1, math.ceil(3 * max_sigma))
    taps = torch.arange(-radius, radius + 1, device=images.device)
    kernel = torch.exp(-0.5 * (taps.to(images.dtype) / sigma.clamp_min(1e-3).view(batch, 1)) ** 2)  # sigma ~0: an impulse
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [B, K]

    def blur_matrix(n: int) -> Tensor:  # [B, 1, n, n]: row i averages the (edge-clamped) pixels i + taps
        columns = (torch.arange(n, device=images.device).view(n, 1) + taps).clamp(0, n - 1)  # [n, K]
        matrix = torch.zeros(batch, n, n, device=images.device, dtype=images.dtype)
        matrix.scatter_add_(2, columns.expand(batch, n, -1), kernel.view(batch, 1, -1).expand(batch, n, -1))
        return matrix.unsqueeze(1)

    return blur_matrix(height) @ images @ blur_matrix(width).transpose(-1, -2)


# JPEG's luminance quantisation table (ITU-T T.81 Annex K, quality 50), in 0..255 pixel units.
_JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


def _dct_matrix(n: int, like: Tensor) -> Tensor:
    """Orthonormal DCT-II matrix `[n, n]` (rows: frequencies)."""
    k = torch.arange(n, device=like.device, dtype=like.dtype).view(n, 1)
    x = torch.arange(n, device=like.device, dtype=like.dtype).view(1, n)
    matrix = torch.cos(math.pi * (2 * x + 1) * k / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    return matrix


def _jpeg_blocks(images: Tensor, factor: Tensor) -> Tensor:
    """JPEG-like coding of `images` `[B, T, H, W]` in 0..1: 8x8 DCT, coefficients rounded to the
    luminance table times `factor` `[B]` (0: unchanged), inverse DCT (sides padded to whole blocks).

    The blockwise DCT of a whole frame is one product with a block-diagonal matrix on each side.
    """
    batch, _, height, width = images.shape
    pad_h, pad_w = -height % 8, -width % 8
    padded = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else images
    rows, cols = padded.shape[2] // 8, padded.shape[3] // 8
    dct = _dct_matrix(8, images)
    left = torch.block_diag(*[dct] * rows)  # [8 rows, 8 rows]
    right = torch.block_diag(*[dct] * cols)
    coefficients = left @ (padded * 255 - 128) @ right.T
    table = torch.tensor(_JPEG_LUMA, device=images.device, dtype=images.dtype).repeat(rows, cols)
    step = (table * factor.view(batch, 1, 1, 1)).clamp_min(1e-3)
    coded = left.T @ (torch.round(coefficients / step) * step) @ right
    out = ((coded + 128) / 255).clamp(0.0, 1.0)
    return out[:, :, :height, :width]


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
