"""The model shipped inside the package (avsync.models.pretrained): present, small, loadable, useful."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avsync.errors import AvsyncError
from avsync.models import Ensemble, LipSync, TwoTower
from avsync.models.checkpoints import load_model
from avsync.models.pretrained import (
    pretrained_checkpoint,
    pretrained_metadata,
    strip_checkpoint,
)

MAX_BYTES = 20 * 1024 * 1024


def test_shipped_model_is_small_and_loads_as_lipsync_and_twotower() -> None:
    path = pretrained_checkpoint()
    assert sum(p.stat().st_size for p in path.parent.glob("*.ckpt")) < MAX_BYTES
    loaded = load_model(path, "cpu")
    assert isinstance(loaded.network, Ensemble) and not loaded.network.training
    assert loaded.describe()["network"] == "Ensemble"
    lips, pixels = loaded.network.members
    assert isinstance(lips, LipSync) and isinstance(pixels, TwoTower) and loaded.network.weights == [1.0, 2.0]
    # Unit-length embeddings of the right size for a batch of windows.
    embedding = pixels.encode_video(torch.rand(2, 16, 64, 64))
    assert embedding.shape == (2, pixels.config["embed_dim"])
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(2), atol=1e-5)
    member = load_model(pretrained_checkpoint("twotower_realsynth"), "cpu").network  # the member, shipped on its own
    assert all(torch.equal(a, b) for a, b in zip(member.state_dict().values(), pixels.state_dict().values(), strict=True))


def test_metadata_says_what_it_was_trained_on_and_how_it_scored() -> None:
    metadata = pretrained_metadata()
    assert metadata["checkpoint"] == pretrained_checkpoint().name
    assert metadata["members"]["LipSync"]["experiment"] == "experiments/lipsync_real.yaml"
    assert metadata["members"]["TwoTower"]["experiment"] == "experiments/twotower_realsynth.yaml"
    table = metadata["held_out_results_unseen_by_both_members"]["summary"]
    assert {"model", "baseline", "constant"} <= set(table)
    assert 0.0 <= table["model"]["within1_all"] <= 1.0
    assert pretrained_metadata("twotower_realsynth")["experiment"] == "experiments/twotower_realsynth.yaml"


def test_strip_checkpoint_keeps_what_inference_needs(tmp_path: Path) -> None:
    stripped = strip_checkpoint(pretrained_checkpoint("twotower_realsynth"), tmp_path / "copy.ckpt")
    kept = torch.load(stripped, map_location="cpu", weights_only=False)
    assert set(kept) <= {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "hparams_name", "hyper_parameters"}
    assert isinstance(load_model(stripped, "cpu").network, TwoTower)
    with pytest.raises(AvsyncError, match="overwrite"):
        strip_checkpoint(stripped, stripped)
    not_a_checkpoint = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(1)}, not_a_checkpoint)
    with pytest.raises(AvsyncError, match="Lightning checkpoint"):
        strip_checkpoint(not_a_checkpoint, tmp_path / "out.ckpt")


@pytest.mark.slow
def test_shipped_model_finds_the_shift_of_a_new_synthetic_song(tmp_path: Path) -> None:
    """A song it never saw, shifted by 7 frames: the aligned offset is within one frame."""
    from avsync.align.analysis import sync_features
    from avsync.features.cache import FeatureCache, load_clip
    from avsync.features.manifest import read_manifest
    from avsync.synth.dataset import write_dataset

    write_dataset(tmp_path / "data", songs=1, seconds=8.0, seed=11, distractors=0.0, workers=1, progress=False)
    clip = load_clip(read_manifest(tmp_path / "data")[0], FeatureCache(tmp_path / "cache"))
    shift = 7  # the video starts 7 frames into the song: offset -7
    found = sync_features(clip.mouth_crops[shift:], clip.valid[shift:], clip.log_mel, load_model(pretrained_checkpoint(), "cpu").network,
                          landmarks=clip.landmarks[shift:])  # fmt: skip
    assert abs(found.offset_frames - (-shift)) <= 1
    assert np.isfinite(found.cost).all()
