"""Ensemble: several trained networks whose normalised costs are added, each with its weight.

Networks that read different things make different mistakes: LipSync (lip geometry) carries to
faces it never saw, the TwoTower (mouth pixels) is sharp on the synthetic singers and on faces like
its training faces. `avsync.align.cost.cost_matrix` puts each member's cost on the robust z-scale,
adds them with the weights and normalises the sum again. `combine_checkpoints` builds an ensemble
checkpoint from members' checkpoints (loadable by `avsync.models.checkpoints.load_model`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from avsync.errors import AvsyncError
from avsync.io.files import atomic_path
from avsync.models.checkpoints import NETWORK_PREFIX, network_weights
from avsync.models.layers import build_network, describe


class Ensemble(nn.Module):
    """Member networks and their cost weights.

    Args:
        members: each member's `avsync.models.describe` description.
        weights: one weight per member (its normalised cost is multiplied by it).
    """

    def __init__(self, members: Sequence[dict], weights: Sequence[float]) -> None:
        super().__init__()
        if not members or len(members) != len(weights):
            raise ValueError(f"an ensemble needs members and one weight each, got {len(members)} and {len(weights)}")
        self.config = {"members": [dict(m) for m in members], "weights": [float(w) for w in weights]}
        self.members = nn.ModuleList(build_network(description) for description in members)
        self.weights = [float(w) for w in weights]


def combine_checkpoints(checkpoints: Sequence[str | os.PathLike[str]], weights: Sequence[float],
                        target: str | os.PathLike[str]) -> Path:
    """Write an ensemble checkpoint of trained networks (weights and descriptions only).

    Args:
        checkpoints: the members' checkpoints (`avsync fit`'s, or other ensembles' parts).
        weights: one cost weight per member.
        target: the ``.ckpt`` to write (atomically).

    Raises:
        AvsyncError: a member that is not an avsync checkpoint.
    """
    descriptions, state = [], {}
    for index, path in enumerate(checkpoints):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            description = checkpoint["hyper_parameters"]["model"]
            weights_of = network_weights(checkpoint["state_dict"])
        except (OSError, KeyError, TypeError, RuntimeError) as exc:
            raise AvsyncError(f"not an avsync model checkpoint ({exc})", path) from exc
        descriptions.append(description)
        state.update({f"members.{index}.{k}": v for k, v in weights_of.items()})
    ensemble = Ensemble(descriptions, weights)
    ensemble.load_state_dict(state)
    with atomic_path(target) as temporary:
        torch.save({"state_dict": {NETWORK_PREFIX + k: v for k, v in state.items()}, "hyper_parameters": {"model": describe(ensemble)}},
                   temporary)  # fmt: skip
    return Path(target)
