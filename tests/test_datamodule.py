"""Window-pair sampling, augmentation and the DataModule's epoch keys, on in-memory clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsync.features.audio import LOG_OFFSET, voiced_frames
from avsync.features.cache import ClipFeatures
from datamodules.augment import AugmentConfig, augment_mel, augment_mouth
from datamodules.sampling import ShiftConfig, WindowSampler, window_share
from datamodules.toy import toy_clip

CLIP_STRIDE = 1000  # clip c, frame t is encoded as c * CLIP_STRIDE + t
CODE_SCALE = 1000.0


def indexed_clip(clip_number: int, frames: int) -> ClipFeatures:
    """A clip whose truth is known: every mouth pixel of frame t holds t % 256, and the four mel
    columns of frame t hold `(clip_number * CLIP_STRIDE + t) / CODE_SCALE` (within 1.5 nats of each
    other, so every frame counts as voiced)."""
    codes = clip_number * CLIP_STRIDE + np.arange(frames)
    mouth = np.broadcast_to((np.arange(frames) % 256).astype(np.uint8)[:, None, None], (frames, 64, 64)).copy()
    log_mel = np.broadcast_to((np.repeat(codes, 4) / CODE_SCALE).astype(np.float32)[None, :], (80, 4 * frames)).copy()
    return ClipFeatures(f"clip{clip_number}", "train", mouth, np.ones(frames, bool), log_mel, None, 25.0)


def decode(item: dict) -> tuple[int, int, int]:
    """(clip number, video start, audio start) from an item of `indexed_clip`s."""
    audio_code = round(float(item["log_mel"][0, 0]) * CODE_SCALE)
    clip_number, audio_start = divmod(audio_code, CLIP_STRIDE)
    return clip_number, int(item["mouth"][0, 0, 0]), audio_start


def test_labels_and_shifts_are_right_on_clips_with_known_truth():
    clips = [indexed_clip(0, 200), indexed_clip(1, 240)]
    shifts = ShiftConfig(hard_max=3, easy_max=50, hard_fraction=0.5)
    sampler = WindowSampler(clips, shifts)
    rng = np.random.default_rng(0)
    seen_shifts = []
    for index in range(600):
        pair = sampler.draw(rng, positive=index % 2 == 0)
        item = sampler.item(pair)
        clip_number, video_start, audio_start = decode(item)
        assert clip_number == pair.clip_index  # negatives come from the same clip
        assert video_start == pair.video_start and audio_start == pair.audio_start
        assert item["shift"] == audio_start - video_start
        assert item["label"] == (1.0 if audio_start == video_start else 0.0)
        assert item["mouth"].shape == (16, 64, 64) and item["log_mel"].shape == (80, 64)
        # the mel window covers exactly frames audio_start .. audio_start + 15
        frames = np.round(item["log_mel"][0, ::4] * CODE_SCALE).astype(int) % CLIP_STRIDE
        np.testing.assert_array_equal(frames, np.arange(audio_start, audio_start + 16))
        seen_shifts.append(item["shift"])
    seen = np.array(seen_shifts)
    negatives = seen[1::2]
    assert np.all(seen[0::2] == 0)
    assert np.all(negatives != 0) and np.abs(negatives).max() <= 50
    hard = np.abs(negatives) <= 3
    assert 0.4 < hard.mean() < 0.6  # hard_fraction
    assert (negatives > 0).mean() == pytest.approx(0.5, abs=0.1)  # both directions
    assert set(np.unique(negatives[hard])) == {-3, -2, -1, 1, 2, 3}


def test_windows_with_invalid_mouth_frames_are_never_drawn():
    clip = indexed_clip(0, 120)
    clip.valid[50:55] = False
    sampler = WindowSampler([clip], ShiftConfig(easy_max=20))
    rng = np.random.default_rng(1)
    starts = {sampler.draw(rng, positive=bool(i % 2)).video_start for i in range(400)}
    assert not any(start <= 54 and start + 15 >= 50 for start in starts)
    assert sampler.usable_windows == (120 - 15) - (16 + 4)  # 105 starts, 20 of them touch frames 50-54


def test_silent_audio_windows_are_skipped():
    clip = indexed_clip(0, 160)
    floor = np.log(LOG_OFFSET)
    clip.log_mel[:, 4 * 60 : 4 * 100] = floor  # frames 60-99 silent
    voiced = voiced_frames(clip.log_mel, silence_db=30)
    assert voiced[:60].all() and not voiced[60:100].any() and voiced[100:].all()
    sampler = WindowSampler([clip], ShiftConfig(easy_max=30, min_voiced=0.5))
    rng = np.random.default_rng(2)
    for index in range(300):
        pair = sampler.draw(rng, positive=index % 2 == 0)
        for start in (pair.video_start, pair.audio_start):
            assert voiced[start : start + 16].mean() >= 0.5


def test_window_share_counts_each_window():
    flags = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    np.testing.assert_allclose(window_share(flags, 3), [2 / 3, 2 / 3, 1 / 3, 1 / 3])
    assert window_share(flags, 7).size == 0


def test_fixed_pairs_are_deterministic_balanced_and_carry_centred_context():
    clips = [toy_clip(300, seed) for seed in range(3)]
    sampler = WindowSampler(clips, ShiftConfig(), max_offset=15)
    first = sampler.fixed_pairs(101, seed=7)
    assert first == WindowSampler(clips, ShiftConfig(), max_offset=15).fixed_pairs(101, seed=7)
    assert first != sampler.fixed_pairs(100, seed=8)
    assert len(first) == 100 and sum(pair.label for pair in first) == 50
    for pair in first:
        item = sampler.item(pair, context=True)
        assert item["mel_context"].shape == (80, 4 * (16 + 30))
        video_audio = clips[pair.clip_index].log_mel[:, 4 * pair.video_start : 4 * pair.video_start + 64]
        np.testing.assert_array_equal(item["mel_context"][:, 60 : 60 + 64], video_audio)


def test_too_short_clips_raise_a_clear_error():
    sampler = WindowSampler([indexed_clip(0, 12)], ShiftConfig())
    assert sampler.usable_windows == 0
    with pytest.raises(ValueError, match="no usable windows"):
        sampler.draw(np.random.default_rng(0), positive=True)


def test_augment_mouth_keeps_range_and_mirrors():
    torch.manual_seed(0)
    mouth = torch.rand(4, 16, 64, 64)
    augmented = augment_mouth(mouth, AugmentConfig())
    assert augmented.shape == mouth.shape and augmented.min() >= 0 and augmented.max() <= 1
    assert (augmented - mouth).abs().mean() > 0.01
    mirror_only = AugmentConfig(brightness=0, contrast=0, scale=0, translate=0, flip=1.0)
    torch.testing.assert_close(augment_mouth(mouth, mirror_only), mouth.flip(-1), atol=1e-5, rtol=0)
    identity = AugmentConfig(brightness=0, contrast=0, scale=0, translate=0, flip=0.0)
    torch.testing.assert_close(augment_mouth(mouth, identity), mouth, atol=1e-5, rtol=0)


def test_augment_mel_mixes_accompaniment_at_the_drawn_ratio():
    torch.manual_seed(0)
    vocal = torch.randn(3, 80, 64)
    accompaniment = torch.randn(3, 80, 64)
    cfg = AugmentConfig(noise_prob=0.0, mix_prob=1.0, mix_snr_db=(10.0, 10.0))
    mixed = augment_mel(vocal, accompaniment, cfg)
    scale = vocal.exp().mean(dim=(1, 2), keepdim=True) / (accompaniment.exp().mean(dim=(1, 2), keepdim=True) * 10)
    torch.testing.assert_close(mixed, (vocal.exp() + scale * accompaniment.exp()).log(), atol=1e-4, rtol=1e-4)
    untouched = augment_mel(vocal, accompaniment, AugmentConfig(noise_prob=0.0, mix_prob=0.0))
    torch.testing.assert_close(untouched, vocal, atol=1e-5, rtol=0)
    noisy = augment_mel(vocal, accompaniment, AugmentConfig(noise_prob=1.0, mix_prob=0.0, noise_snr_db=(0.0, 0.0)))
    added = noisy.exp() - vocal.exp()  # noise power, as loud as the vocal on average at 0 dB
    assert (added > 0).all()
    torch.testing.assert_close(added.mean(dim=(1, 2)), vocal.exp().mean(dim=(1, 2)), rtol=1e-3, atol=1e-5)
