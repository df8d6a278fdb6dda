"""Networks that score whether a mouth clip `[B, 16, 64, 64]` and a log-mel window `[B, 80, 64]` match.

Both return logits `[B]` from `forward(mouth_clips, log_mel)` and normalise their inputs themselves
(callers pass crops scaled to 0..1 and raw log-mel). Both also have
`score_candidates(mouth_clips [B,16,64,64], mel_candidates [B,K,80,64]) -> logits [B,K]`.
"""

from avsync.models.layers import build_network, describe
from avsync.models.poster_cnn import PosterCNN
from avsync.models.two_tower import TwoTower

__all__ = ["PosterCNN", "TwoTower", "build_network", "describe"]
