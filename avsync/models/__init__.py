"""Networks that score whether a mouth clip `[B, 16, 64, 64]` and a log-mel window `[B, 80, 64]` match.

Both return logits `[B]` from `forward(mouth_clips, log_mel)` and normalise their inputs themselves
(callers pass crops scaled to 0..1 and raw log-mel). Both also have
`score_candidates(mouth_clips [B,16,64,64], mel_candidates [B,K,80,64]) -> logits [B,K]`.
"""

from torch import nn

from avsync.models.layers import build_network, describe
from avsync.models.lip_sync import LipSync
from avsync.models.poster_cnn import PosterCNN
from avsync.models.two_tower import TwoTower


def video_input(network: nn.Module) -> str:
    """What a network reads from the video: ``"mouth"`` (64x64 crops in 0..1) or ``"lips"`` (lip geometry)."""
    return getattr(network, "video_input", "mouth")


def is_sequence_model(network: nn.Module) -> bool:
    """Whether a network scores whole sequences (LipSync: ``offset_logits``, ``sequence_logits``)."""
    return hasattr(network, "offset_logits")


__all__ = ["LipSync", "PosterCNN", "TwoTower", "build_network", "describe", "is_sequence_model", "video_input"]
