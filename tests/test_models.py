"""PosterCNN and TwoTower: shapes, contracts of docs/design.md, input normalisation, learning."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avsync.models import PosterCNN, TwoTower, describe
from datamodules.sampling import ShiftConfig, WindowSampler
from datamodules.toy import toy_clip

MODELS = [PosterCNN, TwoTower]


def inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mouth = torch.rand(batch, 16, 64, 64, generator=generator)
    log_mel = torch.randn(batch, 80, 64, generator=generator) * 3 - 5
    return mouth, log_mel


@pytest.mark.parametrize("cls", MODELS)
def test_forward_returns_one_logit_per_pair(cls):
    torch.manual_seed(0)
    model = cls().eval()
    mouth, log_mel = inputs(3)
    logits = model(mouth, log_mel)
    assert logits.shape == (3,)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("cls", MODELS)
def test_parameter_count_fits_a_cpu_budget(cls):
    count = sum(p.numel() for p in cls().parameters())
    assert 100_000 <= count <= 1_000_000


@pytest.mark.parametrize("cls", MODELS)
def test_wrong_shapes_are_rejected(cls):
    model = cls()
    mouth, log_mel = inputs(2)
    with pytest.raises(ValueError, match="mouth_clips"):
        model(mouth[:, :8], log_mel)
    with pytest.raises(ValueError, match="log_mel"):
        model(mouth, log_mel[:, :, :60])
    with pytest.raises(ValueError, match="batch sizes"):
        model(mouth, log_mel[:1])


@pytest.mark.parametrize("cls", MODELS)
def test_brightness_and_loudness_do_not_change_the_score(cls):
    torch.manual_seed(0)
    model = cls().eval()
    mouth, log_mel = inputs(4)
    with torch.no_grad():
        reference = model(mouth, log_mel)
        changed = model(mouth * 0.5 + 0.2, log_mel + 3.0)  # darker, lower contrast; +13 dB louder
        other = model(mouth, log_mel.flip(-1))
    torch.testing.assert_close(changed, reference, atol=1e-4, rtol=1e-4)
    assert (other - reference).abs().max() > 1e-3  # but the content does


@pytest.mark.parametrize("cls", MODELS)
def test_score_candidates_equals_pairwise_forward(cls):
    torch.manual_seed(0)
    model = cls().eval()
    mouth, _ = inputs(2)
    candidates = torch.randn(2, 5, 80, 64)
    with torch.no_grad():
        scores = model.score_candidates(mouth, candidates)
        pairwise = torch.stack([model(mouth, candidates[:, k]) for k in range(5)], dim=1)
    assert scores.shape == (2, 5)
    torch.testing.assert_close(scores, pairwise, atol=1e-4, rtol=1e-4)


def test_two_tower_embeddings_and_score_matrix():
    torch.manual_seed(0)
    model = TwoTower(embed_dim=32).eval()
    mouth, log_mel = inputs(3)
    with torch.no_grad():
        video_emb = model.encode_video(mouth)
        audio_emb = model.encode_audio(torch.cat([log_mel, log_mel[:1]]))
        matrix = model.score(video_emb, audio_emb)
        paired = model(mouth, log_mel)
    assert video_emb.shape == (3, 32) and audio_emb.shape == (4, 32)
    torch.testing.assert_close(video_emb.norm(dim=1), torch.ones(3))
    assert matrix.shape == (3, 4)
    torch.testing.assert_close(torch.diagonal(matrix[:, :3]), paired, atol=1e-5, rtol=1e-5)
    # the logit is a scaled cosine plus a bias: bounded by scale + |bias|
    assert matrix.abs().max() <= model.log_scale.exp() + model.bias.abs() + 1e-5


def test_poster_cnn_probability_is_the_sigmoid_of_the_logit():
    torch.manual_seed(0)
    model = PosterCNN().eval()
    mouth, log_mel = inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_proba(mouth, log_mel), torch.sigmoid(model(mouth, log_mel)))


@pytest.mark.parametrize("cls", MODELS)
def test_describe_rebuilds_the_same_network(cls):
    model = cls(**({"audio_channels": 2} if cls is PosterCNN else {"embed_dim": 48}))
    description = describe(model)
    module_name, _, class_name = description["class_path"].rpartition(".")
    rebuilt = getattr(importlib.import_module(module_name), class_name)(**description["init_args"])
    rebuilt.load_state_dict(model.state_dict())  # raises on any shape mismatch
    assert description["init_args"] == model.config


def toy_batch(count: int) -> dict[str, torch.Tensor]:
    sampler = WindowSampler([toy_clip(400, seed) for seed in range(2)], ShiftConfig(hard_max=3, easy_max=40))
    rng = np.random.default_rng(0)
    items = [sampler.item(sampler.draw(rng, positive=i % 2 == 0)) for i in range(count)]
    return {
        "mouth": torch.tensor(np.stack([item["mouth"] for item in items])).float() / 255,
        "log_mel": torch.tensor(np.stack([item["log_mel"] for item in items])),
        "label": torch.tensor([item["label"] for item in items]),
    }


@pytest.mark.slow
@pytest.mark.parametrize("cls", MODELS)
def test_fits_a_batch_of_toy_pairs(cls):
    torch.manual_seed(0)
    batch = toy_batch(32)
    model = cls()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = F.binary_cross_entropy_with_logits(model(batch["mouth"], batch["log_mel"]), batch["label"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.5
    assert min(losses[-5:]) < 0.1
