"""Networks that score whether what the lips do and what the audio says match.

`PosterCNN` and `TwoTower` read a mouth clip `[B, 16, 64, 64]` and a log-mel window `[B, 80, 64]`:
both return logits `[B]` from `forward(mouth_clips, log_mel)`, normalise their inputs themselves
(callers pass crops scaled to 0..1 and raw log-mel) and have
`score_candidates(mouth_clips [B,16,64,64], mel_candidates [B,K,80,64]) -> logits [B,K]`.
`LipSync` reads lip geometry and scores whole sequences (`avsync.models.lip_sync`); an `Ensemble`
adds its members' costs (`avsync.models.ensemble`). `avsync.models.runtime` runs the shipped
networks' ONNX exports (`avsync.models.export`) without torch.

Importing this package does not import torch: the network classes load on first access
(``avsync.models.TwoTower``), and the helpers below only look at what a network has, so they
serve the torch networks and their onnxruntime counterparts alike.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avsync.models.ensemble import Ensemble
    from avsync.models.layers import build_network, describe
    from avsync.models.lip_sync import LipSync
    from avsync.models.poster_cnn import PosterCNN
    from avsync.models.two_tower import TwoTower

_LAZY = {
    "Ensemble": "avsync.models.ensemble",
    "LipSync": "avsync.models.lip_sync",
    "PosterCNN": "avsync.models.poster_cnn",
    "TwoTower": "avsync.models.two_tower",
    "build_network": "avsync.models.layers",
    "describe": "avsync.models.layers",
}
"""The names that need torch, and the module each comes from (imported on first access)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def video_input(network: Any) -> str:
    """What a network reads from the video: ``"mouth"`` (64x64 crops in 0..1) or ``"lips"`` (lip geometry)."""
    return getattr(network, "video_input", "mouth")


def is_sequence_model(network: Any) -> bool:
    """Whether a network scores whole sequences (LipSync: ``offset_logits``, ``sequence_logits``)."""
    return hasattr(network, "offset_logits")


def is_ensemble(network: Any) -> bool:
    """Whether a network is an ensemble (``members`` and their cost ``weights``; `Ensemble` or its ONNX runtime)."""
    return hasattr(network, "members") and hasattr(network, "weights")


def is_pair_model(model: Any) -> bool:
    """Whether a network scores (mouth, audio) pairs one by one (PosterCNN), not through embeddings.

    A pair model costs one forward pass per scored cell: ``N * (2 * radius + 1)`` in `pair_band`
    (about 24,000 for a 6 s clip, 210,000 for 30 s), against ``N + M`` encoder passes for a TwoTower.
    """
    return not (hasattr(model, "encode_video") or hasattr(model, "sequence_logits") or is_sequence_model(model)
                or is_ensemble(model))  # fmt: skip


__all__ = ["Ensemble", "LipSync", "PosterCNN", "TwoTower", "build_network", "describe", "is_ensemble", "is_pair_model",
           "is_sequence_model", "video_input"]  # fmt: skip
