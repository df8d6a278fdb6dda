"""Ensembles: members' normalised costs added with weights; checkpoints combined and loaded like any model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avsync.align.cost import cost_matrix, normalise_cost
from avsync.errors import AvsyncError
from avsync.models import Ensemble, LipSync, TwoTower, describe, is_pair_model
from avsync.models.checkpoints import load_model
from avsync.models.ensemble import combine_checkpoints
from datamodules.toy import toy_clip


def save(network: torch.nn.Module, path: Path) -> Path:
    torch.save({"state_dict": {f"model.{k}": v for k, v in network.state_dict().items()},
                "hyper_parameters": {"model": describe(network)}}, path)  # fmt: skip
    return path


def test_ensemble_cost_is_the_weighted_sum_of_member_costs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lips, pixels = LipSync().eval(), TwoTower(embed_dim=16, frame_dim=8, temporal_dim=8, audio_channels=8).eval()
    target = combine_checkpoints([save(lips, tmp_path / "l.ckpt"), save(pixels, tmp_path / "t.ckpt")], [1.0, 2.0], tmp_path / "e.ckpt")
    ensemble = load_model(target, "cpu").network
    assert isinstance(ensemble, Ensemble) and ensemble.weights == [1.0, 2.0] and not is_pair_model(ensemble)
    clip = toy_clip(60, seed=4)
    kwargs = {"landmarks": clip.landmarks, "video_valid": clip.valid}
    each = [cost_matrix(member, clip.mouth_crops, clip.log_mel, **kwargs) for member in (lips, pixels)]
    combined = cost_matrix(ensemble, clip.mouth_crops, clip.log_mel, **kwargs)
    assert np.allclose(combined, normalise_cost(each[0] + 2.0 * each[1], clip.valid), atol=1e-5)
    alone = Ensemble([describe(lips), describe(pixels)], [1.0, 0.0])
    alone.load_state_dict(ensemble.state_dict())
    assert np.allclose(cost_matrix(alone, clip.mouth_crops, clip.log_mel, **kwargs), each[0], atol=1e-5)
    with pytest.raises(ValueError, match="pass the landmarks"):
        cost_matrix(ensemble, clip.mouth_crops, clip.log_mel)


def test_combining_refuses_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    with pytest.raises(AvsyncError, match="not an avsync model checkpoint"):
        combine_checkpoints([bogus], [1.0], tmp_path / "out.ckpt")
    with pytest.raises(ValueError, match="one weight each"):
        Ensemble([describe(LipSync())], [1.0, 2.0])
