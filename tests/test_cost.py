"""Cost matrix from the models: window geometry, equality with pair calls, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from avsync.align import cost as cost_module
from avsync.align.cost import (
    WINDOW_BATCH,
    audio_windows,
    cost_matrix,
    logit_cost,
    model_logits,
    normalise_cost,
    video_windows,
)
from avsync.models import PosterCNN, TwoTower


def tiny_inputs(n: int = 24, m: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (n, 64, 64), dtype=np.uint8)
    log_mel = rng.normal(-5, 2, (80, 4 * m)).astype(np.float32)
    return crops, log_mel


def test_windows_are_centred_and_edge_padded() -> None:
    crops = np.arange(20, dtype=np.uint8)[:, None, None] * np.ones((1, 64, 64), np.uint8)
    clips = video_windows(crops, np.array([0, 10, 19]))
    assert clips.dtype == np.float32
    first_pixel = (clips[:, :, 0, 0] * 255).round().astype(int)
    assert first_pixel[1].tolist() == list(range(2, 18))  # frame 10 sits at position 8
    assert first_pixel[0].tolist() == [0] * 9 + list(range(1, 8))
    assert first_pixel[2].tolist() == list(range(11, 20)) + [19] * 7
    log_mel = np.tile(np.arange(40, dtype=np.float32), (80, 1))  # column value = column index
    windows = audio_windows(log_mel, np.array([8, 0]))
    assert windows.shape == (2, 80, 64)
    assert windows[0, 0].tolist() == list(range(0, 40)) + [39] * 24
    assert windows[1, 0, :33].tolist() == [0] * 33


def test_two_tower_matrix_equals_pair_forward() -> None:
    torch.manual_seed(0)
    model = TwoTower(embed_dim=16, frame_dim=8, temporal_dim=16, audio_channels=16).eval()
    crops, log_mel = tiny_inputs()
    logits = model_logits(model, crops, log_mel, batch_size=7)
    assert logits.shape == (24, 30)
    rows, cols = np.array([0, 5, 23, 11]), np.array([29, 0, 3, 11])
    with torch.no_grad():
        pairs = model(torch.from_numpy(video_windows(crops, rows)), torch.from_numpy(audio_windows(log_mel, cols))).numpy()
    np.testing.assert_allclose(logits[rows, cols], pairs, rtol=1e-4, atol=1e-4)


def test_pair_model_band_and_full() -> None:
    torch.manual_seed(0)
    model = PosterCNN(channels=(8, 8, 8)).eval()
    crops, log_mel = tiny_inputs(n=12, m=16)
    full = model_logits(model, crops, log_mel, batch_size=40)
    assert np.isfinite(full).all()
    banded = model_logits(model, crops, log_mel, band=(2.0, 1.0, 3), batch_size=40)
    i, j = np.indices(banded.shape)
    inside = np.abs(j - (2 + i)) <= 3
    assert np.isnan(banded[~inside]).all()
    np.testing.assert_allclose(banded[inside], full[inside], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        pair = model(torch.from_numpy(video_windows(crops, np.array([4]))), torch.from_numpy(audio_windows(log_mel, np.array([7])))).item()
    assert full[4, 7] == pytest.approx(pair, abs=1e-4)
    assert model.training is False
    with pytest.raises(ValueError, match="band"):
        model_logits(model, *tiny_inputs(n=600, m=600))


class CentreFrameTwoTower(nn.Module):
    """A two-tower whose embedding is the centre frame's brightness (video) or level (audio)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return clips[:, 8, 0, :1] * 255

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return mel[:, 0, 32:33]

    def score(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return -(video - audio.T).abs()


def test_matching_windows_give_the_lowest_cost_on_the_true_diagonal() -> None:
    """Video frame i shows the event of reference frame i + 3: cost is lowest at j = i + 3."""
    n, m = 40, 50
    crops = ((np.arange(n) + 3) * 5)[:, None, None].astype(np.uint8) * np.ones((1, 64, 64), np.uint8)
    log_mel = np.repeat(np.arange(m, dtype=np.float32) * 5, 4)[None, :].repeat(80, axis=0)
    cost = cost_matrix(CentreFrameTwoTower(), crops, log_mel)
    np.testing.assert_array_equal(cost.argmin(axis=1), np.arange(n) + 3)


def test_normalise_cost_and_uninformative_cells() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (30, 40))
    logits[:, 35:] = np.nan
    valid = np.ones(30, bool)
    valid[[3, 4]] = False
    active = np.ones(40, bool)
    active[10:12] = False
    cost = normalise_cost(logit_cost(logits), valid, active)
    assert np.isfinite(cost).all()
    assert (cost[[3, 4]] == 0).all() and (cost[:, 10:12] == 0).all() and (cost[:, 35:] == 0).all()
    informative = cost[np.ix_(valid, active)][:, :33]
    assert np.median(informative) == pytest.approx(0, abs=1e-9)
    assert 1.4826 * np.median(np.abs(informative)) == pytest.approx(1.0, rel=1e-6)
    # Higher logit = lower cost.
    assert np.corrcoef(cost[np.ix_(valid, active)][:, :33].ravel(), logits[np.ix_(valid, active)][:, :33].ravel())[0, 1] < -0.9


def test_a_song_is_embedded_once_per_model_until_the_weights_change() -> None:
    torch.manual_seed(0)
    model = TwoTower(embed_dim=16, frame_dim=8, temporal_dim=8, audio_channels=8)
    rng = np.random.default_rng(0)
    log_mel = rng.standard_normal((80, 4 * 90)).astype(np.float32)
    shots = [(rng.random((n, 64, 64)) * 255).astype(np.uint8) for n in (30, 45)]
    calls = []
    encode_audio = model.encode_audio
    model.encode_audio = lambda windows: calls.append(len(windows)) or encode_audio(windows)
    first = [model_logits(model, shot, log_mel) for shot in shots]
    assert sum(calls) == 90  # the second shot reused the song's embeddings
    assert np.array_equal(model_logits(model, shots[0], log_mel), first[0])
    other_song = log_mel[:, ::-1].copy()
    model_logits(model, shots[0], other_song)
    assert sum(calls) == 180
    with torch.no_grad():
        model.bias.add_(1.0)  # weights changed in place, as an optimiser step does
        next(model.audio_encoder.parameters()).mul_(0.5)
    changed = model_logits(model, shots[0], log_mel)
    assert sum(calls) == 270 and not np.allclose(changed, first[0])


def test_normalising_in_place_gives_the_same_cost_in_the_callers_array() -> None:
    rng = np.random.default_rng(1)
    raw = logit_cost(rng.normal(0, 2, (40, 60)).astype(np.float32))
    valid, active = rng.random(40) > 0.1, rng.random(60) > 0.1
    expected = normalise_cost(raw, valid, active)
    assert not np.shares_memory(expected, raw)
    owned = raw.copy()
    result = normalise_cost(owned, valid, active, in_place=True)
    assert result is owned and np.array_equal(result, expected)
    frozen = raw.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError):
        normalise_cost(frozen, valid, active, in_place=True)


def test_logit_cost_is_the_negative_log_likelihood_and_leaves_the_logits_alone() -> None:
    logits = np.array([[-40.0, -1.0, 0.0, 2.5, 40.0, np.nan]], np.float32)
    before = logits.copy()
    cost = logit_cost(logits)
    with np.errstate(invalid="ignore"):
        expected = -np.log(1.0 / (1.0 + np.exp(-logits.astype(np.float64))))
    assert cost.dtype == np.float64 and np.allclose(cost[:, :5], expected[:, :5], rtol=1e-12) and np.isnan(cost[0, 5])
    assert np.array_equal(logits, before, equal_nan=True)


def test_the_shipped_two_tower_gives_the_same_logits_whatever_the_window_batch() -> None:
    from avsync.models.runtime import load_inference_model

    tower = next(member for member in load_inference_model(None).network.members if hasattr(member, "encode_video"))
    rng = np.random.default_rng(2)
    crops = (rng.random((40, 64, 64)) * 255).astype(np.uint8)
    log_mel = rng.standard_normal((80, 4 * 70)).astype(np.float32)
    by_batch = []
    for size in (WINDOW_BATCH, 64):
        cost_module._song_embeddings.clear()  # the song embedded again at this batch size
        by_batch.append(cost_module._two_tower_logits(tower, crops, log_mel, size, progress=False))
    assert np.array_equal(by_batch[0], by_batch[1])


def _counting_tower(monkeypatch: pytest.MonkeyPatch) -> tuple[object, object, list[int]]:
    """The shipped ensemble and its two-tower member, whose ``encode_video`` counts the windows it embeds."""
    from avsync.models.runtime import load_inference_model

    ensemble = load_inference_model(None).network
    tower = next(member for member in ensemble.members if hasattr(member, "encode_video"))
    embedded: list[int] = []
    real = type(tower).encode_video

    def counted(self, mouth_clips):
        embedded.append(len(mouth_clips))
        return real(self, mouth_clips)

    monkeypatch.setattr(type(tower), "encode_video", counted)
    return ensemble, tower, embedded


def test_crops_embedded_while_they_arrive_give_the_same_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    """`VideoEmbedder`: windows embedded as the lips worker sends the crops, the rest by the cost."""
    ensemble, tower, embedded = _counting_tower(monkeypatch)
    rng = np.random.default_rng(7)
    crops = (rng.random((75, 64, 64)) * 255).astype(np.uint8)
    log_mel = rng.standard_normal((80, 4 * 90)).astype(np.float32)
    whole = cost_module._two_tower_logits(tower, crops, log_mel, WINDOW_BATCH, progress=False)
    assert sum(embedded) == 75

    embedded.clear()
    streaming = cost_module.VideoEmbedder(ensemble)
    for start, end in ((0, 3), (3, 20), (20, 41), (41, 75)):  # chunks of any size
        streaming.add(crops[start:end])
    assert embedded == [WINDOW_BATCH] * 4  # rows 0-63: each batch once its last window (row + 7) had arrived
    embedded.clear()
    assert np.array_equal(cost_module._two_tower_logits(tower, crops, log_mel, WINDOW_BATCH, progress=False), whole)
    assert embedded == [75 - 64]  # only the windows still missing

    embedded.clear()
    streaming = cost_module.VideoEmbedder(ensemble)
    streaming.add(crops[:40])
    changed = crops.copy()
    changed[5] ^= 1  # not the crops it received: all embedded again
    assert np.array_equal(cost_module._two_tower_logits(tower, changed, log_mel, WINDOW_BATCH, progress=False),
                          cost_module._two_tower_logits(tower, changed, log_mel, WINDOW_BATCH, progress=False))  # fmt: skip
    assert embedded == [WINDOW_BATCH] * 2 + ([WINDOW_BATCH] * 4 + [11]) * 2  # rows 0-31 while arriving, then all, twice
