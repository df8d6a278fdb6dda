"""Lip geometry and the LipSync network: face-invariant input, training over all offsets, alignment."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from avsync.align.analysis import sync_features
from avsync.features.lips import LIP_DIM, lip_geometry
from avsync.models import LipSync, is_sequence_model, video_input
from avsync.training.lit_module import LitAVSync
from datamodules.augment import AugmentConfig, augment_frames, augment_lips
from datamodules.lip_segments import FixedSegments, RandomSegments, SegmentSource
from datamodules.toy import face_template, toy_clip


def similarity(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return scale * points @ rotation.T + np.array(shift)


def test_lip_geometry_ignores_head_position_roll_and_scale() -> None:
    clip = toy_clip(120, seed=3)
    rng = np.random.default_rng(0)
    moved = np.stack([similarity(frame, rng.uniform(-0.4, 0.4), rng.uniform(0.5, 2.0), tuple(rng.uniform(-50, 50, 2)))
                      for frame in clip.landmarks.astype(np.float64)])  # fmt: skip
    geometry, again = lip_geometry(clip.landmarks), lip_geometry(moved)
    assert geometry.shape == (120, LIP_DIM) and geometry.dtype == np.float32
    assert np.abs(geometry - again).max() < 0.05  # standardised units; the reference face is a mean over the poses seen
    opening = np.corrcoef(geometry[:, 40], clip.log_mel.reshape(80, 120, 4).mean(axis=(0, 2)))[0, 1]
    assert opening > 0.8  # the inner opening follows the sound


def test_lip_geometry_fills_faceless_frames_and_needs_two_faces() -> None:
    landmarks = toy_clip(60, seed=1).landmarks.copy()
    landmarks[10:20] = np.nan
    geometry = lip_geometry(landmarks)
    assert np.isfinite(geometry).all()
    assert np.allclose(geometry[:, :44].mean(axis=0)[:4], 0.0, atol=0.3)
    lonely = np.full((30, 68, 2), np.nan)
    lonely[5] = face_template()
    assert not lip_geometry(lonely).any()


def test_lipsync_scores_every_frame_against_every_offset_and_whole_sequences() -> None:
    torch.manual_seed(0)
    network = LipSync()
    assert video_input(network) == "lips" and is_sequence_model(network)
    assert video_input(torch.nn.Linear(1, 1)) == "mouth" and not is_sequence_model(torch.nn.Linear(1, 1))
    lips, frames = torch.randn(2, 20 + 14, LIP_DIM), torch.randn(2, 20 + 2 * 3 + 14, 80)
    logits = network.offset_logits(lips, frames, max_offset=3)
    assert logits.shape == (2, 20, 7)
    video, audio = network.embed_lips(lips), network.embed_audio(frames)
    # index K + d pairs video frame i with audio frame i - d (audio frame a sits at a + K in `frames`)
    for i, d in ((0, 0), (5, 2), (19, -3)):
        expected = network.log_scale.exp() * (video[:, i] * audio[:, i + 3 - d]).sum(-1)
        assert torch.allclose(logits[:, i, 3 + d], expected, atol=1e-5)
    across = network.offset_logits(lips, frames, max_offset=3, across_batch=True)
    assert across.shape == (2, 20, 7 + 2) and torch.allclose(across[..., :7], logits)
    assert torch.allclose(across[0, :, 7], logits[0, :, 3]) and torch.allclose(across[1, :, 8], logits[1, :, 3])  # c = b: offset 0
    expected = network.log_scale.exp() * (video[0] * audio[1, 3 : 3 + 20]).sum(-1)  # segment 0's lips, segment 1's audio
    assert torch.allclose(across[0, :, 8], expected, atol=1e-5)
    changed = lips.clone()
    changed[:, 0] += 5.0  # only video frame 0's field (padded frames 0-14) sees it
    assert torch.allclose(network.embed_lips(changed)[:, 8:], video[:, 8:])
    clip = toy_clip(80, seed=2)
    full = network.sequence_logits(lip_geometry(clip.landmarks), clip.log_mel)
    assert full.shape == (80, 80) and full.dtype == np.float32


def test_augment_lips_and_frames_keep_shapes_and_change_values() -> None:
    lips, frames = torch.randn(4, 30, LIP_DIM), torch.randn(4, 50, 80)
    assert augment_lips(lips, AugmentConfig()).shape == lips.shape and not torch.allclose(augment_lips(lips, AugmentConfig()), lips)
    assert torch.equal(augment_lips(lips, AugmentConfig(lip_scale=0.0, lip_noise=0.0)), lips)
    assert augment_frames(frames, AugmentConfig()).shape == frames.shape
    quiet = AugmentConfig(frame_gain=0.0, frame_offset=0.0, frame_tilt=0.0, frame_noise=0.0)
    assert torch.equal(augment_frames(frames, quiet), frames)


def test_segments_mask_what_cannot_be_scored() -> None:
    clips = [toy_clip(100, seed) for seed in range(2)]
    clips[0].valid[50:] = False
    source = SegmentSource(clips, segment_frames=20, max_offset=5)
    item = source.item(0, 0)
    assert item["lips"].shape == (20 + 14, LIP_DIM) and item["audio_frames"].shape == (20 + 10 + 14, 80)
    mask = item["offset_mask"]
    assert mask.shape == (20, 11)
    assert not mask[0, 5 + 1] and mask[0, 5 - 1]  # video frame 0 has no audio frame -1 (offset +1), has frame 1
    assert mask[:, 5].all()
    assert not source.item(0, 45)["offset_mask"][5:].any()  # frames 50+ have no face
    again = RandomSegments(source, 4, seed=1)
    assert all(np.array_equal(again[k]["lips"], again[k]["lips"]) for k in range(4))
    assert len(FixedSegments(source, 6, seed=0)) == 6
    with pytest.raises(ValueError, match="no landmarks"):
        SegmentSource([replace(clips[1], landmarks=None)])


def segment_loaders(clips, count: int) -> tuple[DataLoader, DataLoader]:
    source = SegmentSource(clips, segment_frames=48, max_offset=15)
    return (DataLoader(RandomSegments(source, count, seed=0), batch_size=24),
            DataLoader(FixedSegments(source, 48, seed=1), batch_size=24))  # fmt: skip


@pytest.mark.slow
def test_lipsync_learns_lips_and_aligns_a_new_clip_through_the_analysis() -> None:
    """LitAVSync trains LipSync over all offsets on toy lips; a held-out clip shifted by 6 frames is
    then aligned through the analysis `avsync align` runs."""
    pl.seed_everything(0)
    train, val = segment_loaders([toy_clip(300, seed) for seed in range(4)], 24 * 30)
    module = LitAVSync(LipSync(), lr=3e-3, weight_decay=1e-3, loss="offsets")
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(module, train, val)
    assert trainer.callback_metrics["val/offset_acc"] > 0.5  # per frame; chance: 3 of 31 offsets

    held_out = toy_clip(300, seed=11)
    shift = 6  # the video starts 6 frames into the reference: offset -6
    sync = sync_features(held_out.mouth_crops[shift:], held_out.valid[shift:], held_out.log_mel, module.model.eval(),
                         landmarks=held_out.landmarks[shift:])  # fmt: skip
    assert abs(sync.offset_frames - (-shift)) <= 1
    with pytest.raises(ValueError, match="pass the landmarks"):
        sync_features(held_out.mouth_crops, held_out.valid, held_out.log_mel, module.model)


def test_batch_negatives_add_the_other_segments_audio_as_wrong_classes() -> None:
    torch.manual_seed(0)
    train, _ = segment_loaders([toy_clip(200, seed) for seed in range(3)], 24)
    batch = next(iter(train))
    module = LitAVSync(LipSync(), loss="offsets", batch_negatives=True)
    plain, _ = module._segment_loss(batch)
    across, right = module._segment_loss(batch, across_batch=True)
    assert across > plain  # more wrong classes: the same logits' cross-entropy can only grow
    assert right.shape == module._segment_loss(batch)[1].shape  # counted over the offsets alone
    # a segment's own audio repeated as a "negative" would make the loss grow when the truth's logit grows
    lonely = {key: value[:1] for key, value in batch.items()}
    assert torch.allclose(module._segment_loss(lonely, across_batch=True)[0], module._segment_loss(lonely)[0])
    with pytest.raises(ValueError, match="batch_negatives needs a sequence network"):
        LitAVSync(torch.nn.Linear(1, 1), batch_negatives=True)


def test_batches_of_the_wrong_kind_are_a_clear_error() -> None:
    from avsync.models import TwoTower

    _, val = segment_loaders([toy_clip(200, seed) for seed in range(2)], 24)
    module = LitAVSync(TwoTower(embed_dim=16, frame_dim=8, temporal_dim=8, audio_channels=8))
    with pytest.raises(Exception, match="set data.video_input: mouth"):
        module._video(next(iter(val)))
    with pytest.raises(Exception, match="set data.video_input: lips"):
        LitAVSync(LipSync())._segment_loss({"mouth": torch.zeros(1)})
