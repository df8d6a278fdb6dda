"""Strong appearance augmentation of mouth clips (`datamodules.augment`): off by default, each one
changes the crops when on, one geometric transform per clip, values in 0..1, seeded."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
import torch
import torch.nn.functional as F

from datamodules.augment import (
    AugmentConfig,
    _gaussian_blur,
    _jpeg_blocks,
    augment_mouth,
)

NEW = ("rotate", "gamma", "blur", "pixel_noise", "compress")
QUIET = AugmentConfig(brightness=0, contrast=0, scale=0, translate=0, flip=0.0)  # mouth augmentation off
STRONG = AugmentConfig(brightness=0.2, contrast=0.4, scale=0.2, translate=0.1, rotate=15.0, gamma=0.4, blur=1.5,
                       pixel_noise=0.03, compress=3.0)  # fmt: skip
ON = {"rotate": 15.0, "gamma": 0.4, "blur": 1.5, "pixel_noise": 0.03, "compress": 3.0}


def mouths(batch: int = 4, seed: int = 0) -> torch.Tensor:
    """Smooth random clips `[B, 16, 64, 64]` in 0..1 (blur and coding visibly change them)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 16, 8, 8, generator=generator)
    return F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)


def still_clip(batch: int = 3) -> torch.Tensor:
    """Clips whose 16 frames are one and the same picture (an oriented, off-centre bar)."""
    frame = torch.zeros(64, 64)
    frame[20:28, 10:50] = 1.0
    frame[28:44, 40:46] = 0.6
    return frame.expand(batch, 16, 64, 64).clone()


def old_augment_mouth(mouth: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """`augment_mouth` as it was before the strong augmentations (default experiments must not change)."""
    batch, frames = mouth.shape[:2]

    def uniform(low, high, size):
        return torch.rand(size, dtype=mouth.dtype) * (high - low) + low

    zoom = uniform(1 - cfg.scale, 1 + cfg.scale, (batch,))
    mirror = torch.where(torch.rand(batch) < cfg.flip, -1.0, 1.0).to(mouth.dtype)
    theta = torch.zeros(batch, 2, 3, dtype=mouth.dtype)
    theta[:, 0, 0] = mirror / zoom
    theta[:, 1, 1] = 1 / zoom
    theta[:, :, 2] = uniform(-2 * cfg.translate, 2 * cfg.translate, (batch, 2))
    grid = F.affine_grid(theta, list(mouth.shape), align_corners=False)
    moved = F.grid_sample(mouth, grid, mode="bilinear", padding_mode="border", align_corners=False)
    ramp = torch.linspace(0, 1, frames, dtype=mouth.dtype).view(1, frames, 1, 1)

    def drifting(low, high):
        start, end = uniform(low, high, (batch, 1, 1, 1)), uniform(low, high, (batch, 1, 1, 1))
        return start + (end - start) * ramp

    offset = drifting(-cfg.brightness, cfg.brightness)
    gain = drifting(1 - cfg.contrast, 1 + cfg.contrast)
    mean = moved.mean(dim=(2, 3), keepdim=True)
    return ((moved - mean) * gain + mean + offset).clamp(0.0, 1.0)


def test_strong_augmentations_are_off_by_default_and_leave_the_default_batches_as_they_were():
    defaults = AugmentConfig()
    assert all(getattr(defaults, name) == 0 for name in NEW) and set(NEW) <= {f.name for f in fields(AugmentConfig)}
    mouth = mouths()
    torch.manual_seed(3)
    new = augment_mouth(mouth, defaults)
    torch.manual_seed(3)
    assert torch.equal(new, old_augment_mouth(mouth, defaults))


def test_everything_off_is_the_identity():
    mouth = mouths()
    torch.testing.assert_close(augment_mouth(mouth, QUIET), mouth, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NEW)
def test_each_strong_augmentation_changes_the_clip_when_on(name):
    torch.manual_seed(0)
    mouth = still_clip(8) if name == "rotate" else mouths(8)
    augmented = augment_mouth(mouth, replace(QUIET, **{name: ON[name]}))
    assert augmented.shape == mouth.shape
    assert (augmented - mouth).abs().mean() > 2e-3
    assert augmented.min() >= 0 and augmented.max() <= 1


def test_the_sixteen_frames_share_one_transform():
    """Identical frames stay identical under everything drawn per clip (all but the sensor noise)."""
    torch.manual_seed(1)
    clip = still_clip(6)
    augmented = augment_mouth(clip, replace(STRONG, pixel_noise=0.0, brightness=0.0, contrast=0.0))
    torch.testing.assert_close(augmented, augmented[:, :1].expand_as(augmented), atol=1e-5, rtol=0)
    assert not torch.allclose(augmented[0], augmented[1])  # while each clip gets its own draw
    noisy = augment_mouth(clip, replace(QUIET, pixel_noise=0.05))
    assert not torch.allclose(noisy[:, 0], noisy[:, 1])  # sensor noise is per frame


def test_rotation_turns_a_picture_about_the_centre():
    torch.manual_seed(2)
    clip = still_clip(64)
    rotated = augment_mouth(clip, replace(QUIET, rotate=30.0))
    assert torch.allclose(rotated.mean(dim=(1, 2, 3)), clip.mean(dim=(1, 2, 3)), atol=0.02)  # mostly inside the crop
    changed = (rotated - clip).abs().mean(dim=(1, 2, 3))
    assert (changed > 0.01).float().mean() > 0.8  # almost every clip turned visibly


def test_strong_settings_keep_values_in_range_and_are_seeded():
    mouth = mouths(5)
    torch.manual_seed(7)
    first = augment_mouth(mouth, STRONG)
    torch.manual_seed(7)
    again = augment_mouth(mouth, STRONG)
    torch.manual_seed(8)
    other = augment_mouth(mouth, STRONG)
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert first.min() >= 0 and first.max() <= 1 and torch.isfinite(first).all()
    extreme = augment_mouth(torch.cat([torch.zeros(2, 16, 64, 64), torch.ones(2, 16, 64, 64)]),
                            replace(STRONG, gamma=2.0, pixel_noise=0.5, compress=20.0))  # fmt: skip
    assert extreme.min() >= 0 and extreme.max() <= 1 and torch.isfinite(extreme).all()


def test_blur_keeps_flat_pictures_and_smooths_edges():
    mouth = mouths(2)
    torch.testing.assert_close(_gaussian_blur(mouth, torch.zeros(2), 1.5), mouth, atol=1e-6, rtol=0)
    flat = torch.full((2, 16, 64, 64), 0.3)
    torch.testing.assert_close(_gaussian_blur(flat, torch.tensor([0.7, 1.5]), 1.5), flat)
    edge = torch.zeros(1, 1, 64, 64)
    edge[..., 32:] = 1.0
    blurred = _gaussian_blur(edge, torch.tensor([1.5]), 1.5)
    assert 0.05 < blurred[0, 0, 10, 31] < 0.5 < blurred[0, 0, 10, 32] < 0.95


def test_jpeg_blocks_quantise_each_8x8_block():
    mouth = mouths(2)
    torch.testing.assert_close(_jpeg_blocks(mouth, torch.zeros(2)), mouth, atol=1e-4, rtol=0)
    coarse = _jpeg_blocks(mouth, torch.tensor([1000.0, 1000.0]))  # every coefficient rounded away: flat blocks
    assert coarse.reshape(2, 16, 8, 8, 8, 8).std(dim=(3, 5)).max() < 1e-5
    errors = [(_jpeg_blocks(mouth, torch.tensor([f, f])) - mouth).abs().mean() for f in (0.5, 2.0, 8.0)]
    assert 0 < errors[0] < errors[1] < errors[2]
    odd = torch.rand(1, 2, 20, 30)
    assert _jpeg_blocks(odd, torch.tensor([2.0])).shape == odd.shape


def test_a_yaml_sets_the_new_fields():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--augment", type=AugmentConfig, default=AugmentConfig())
    config = parser.parse_string("augment:\n  rotate: 15\n  blur: 1.5\n  compress: 3\n")
    augment = parser.instantiate(config).augment
    assert isinstance(augment, AugmentConfig)
    assert (augment.rotate, augment.blur, augment.compress, augment.gamma) == (15.0, 1.5, 3.0, 0.0)
    assert augment.scale == AugmentConfig().scale
