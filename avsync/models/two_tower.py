"""Two-tower model: separate mouth and audio encoders, scored by a scaled cosine.

Aligning N video windows against M audio windows costs N + M encoder passes and one `[N, M]`
matrix product (`score`), instead of N x M network calls.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsync.models.layers import (
    MELS_PER_FRAME,
    MOUTH_SIZE,
    N_MELS,
    WINDOW_FRAMES,
    check_inputs,
    conv_block,
    standardise,
)


class MouthEncoder(nn.Module):
    """Mouth clip -> embedding: a per-frame 2-D CNN (on the crop halved to 32x32), then temporal
    convolutions over the 16 frames.

    Args:
        embed_dim: embedding size.
        frame_dim: features per frame after the 2-D CNN.
        temporal_dim: channels of the temporal convolutions.
    """

    def __init__(self, embed_dim: int, frame_dim: int, temporal_dim: int) -> None:
        super().__init__()
        self.frame_cnn = nn.Sequential(
            nn.AvgPool2d(2),  # 64 -> 32: the lip opening stays visible, training is 4x faster on CPU
            conv_block(1, 16, kernel=3, stride=2),  # 32 -> 16
            conv_block(16, 32, kernel=3, stride=2),  # 16 -> 8
            conv_block(32, 64, kernel=3, stride=2),  # 8 -> 4
            nn.Flatten(),
            nn.Linear(64 * (MOUTH_SIZE // 16) ** 2, frame_dim),
            nn.ReLU(inplace=True),
        )
        self.temporal = nn.Sequential(
            conv_block(frame_dim, temporal_dim, kernel=3, dims=1),
            conv_block(temporal_dim, temporal_dim, kernel=3, dims=1),
        )
        self.project = nn.Linear(temporal_dim * WINDOW_FRAMES, embed_dim)

    def forward(self, mouth_clips: Tensor) -> Tensor:
        """Embed mouth clips.

        Args:
            mouth_clips: float `[B, 16, 64, 64]` in 0..1.

        Returns:
            float `[B, embed_dim]` (not normalised).
        """
        batch, frames = mouth_clips.shape[:2]
        mouth = standardise(mouth_clips, dims=(1, 2, 3))
        per_frame = self.frame_cnn(mouth.reshape(batch * frames, 1, *mouth.shape[2:]))
        sequence = per_frame.reshape(batch, frames, per_frame.shape[-1]).transpose(1, 2)  # [B, frame_dim, 16]; no -1: an ONNX export runs empty batches
        return self.project(self.temporal(sequence).flatten(1))


class AudioEncoder(nn.Module):
    """Log-mel window -> embedding: 1-D convolutions over time, pooled to one step per video frame.

    Args:
        embed_dim: embedding size.
        channels: channels of the temporal convolutions.
    """

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.temporal = nn.Sequential(
            conv_block(N_MELS, channels, kernel=3, dims=1),
            nn.Conv1d(channels, channels, MELS_PER_FRAME, stride=MELS_PER_FRAME, bias=False),  # 64 -> 16 steps
            nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True),
            conv_block(channels, channels, kernel=3, dims=1),
        )
        self.project = nn.Linear(channels * WINDOW_FRAMES, embed_dim)

    def forward(self, log_mel: Tensor) -> Tensor:
        """Embed mel windows.

        Args:
            log_mel: float `[B, 80, 64]`.

        Returns:
            float `[B, embed_dim]` (not normalised).
        """
        return self.project(self.temporal(standardise(log_mel, dims=(1, 2))).flatten(1))


class TwoTower(nn.Module):
    """Mouth and audio encoders whose embeddings are compared by a learned, scaled cosine.

    `logit = exp(log_scale) * cos(video_emb, audio_emb) + bias`; both scalars are learned.
    Inputs are standardised inside the encoders (mouth clip over frames and pixels, log-mel over
    the window), so callers pass raw 0..1 crops and raw log-mel.

    Args:
        embed_dim: embedding size D.
        frame_dim: per-frame features of the mouth encoder.
        temporal_dim: temporal channels of the mouth encoder.
        audio_channels: temporal channels of the audio encoder.
        init_scale: initial cosine scale.
    """

    def __init__(
        self,
        embed_dim: int = 128,
        frame_dim: int = 64,
        temporal_dim: int = 128,
        audio_channels: int = 128,
        init_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.config = {
            "embed_dim": embed_dim,
            "frame_dim": frame_dim,
            "temporal_dim": temporal_dim,
            "audio_channels": audio_channels,
            "init_scale": init_scale,
        }
        self.video_encoder = MouthEncoder(embed_dim, frame_dim, temporal_dim)
        self.audio_encoder = AudioEncoder(embed_dim, audio_channels)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def encode_video(self, mouth_clips: Tensor) -> Tensor:
        """Unit-length mouth embeddings.

        Args:
            mouth_clips: float `[B, 16, 64, 64]` in 0..1.

        Returns:
            float `[B, D]`, L2-normalised.
        """
        return F.normalize(self.video_encoder(mouth_clips), dim=-1)

    def encode_audio(self, log_mel: Tensor) -> Tensor:
        """Unit-length audio embeddings.

        Args:
            log_mel: float `[B, 80, 64]`.

        Returns:
            float `[B, D]`, L2-normalised.
        """
        return F.normalize(self.audio_encoder(log_mel), dim=-1)

    def score(self, video_emb: Tensor, audio_emb: Tensor) -> Tensor:
        """Match logits of every video embedding against every audio embedding.

        Args:
            video_emb: float `[N, D]` from `encode_video`.
            audio_emb: float `[M, D]` from `encode_audio`.

        Returns:
            logits `[N, M]`.
        """
        return self.log_scale.exp() * video_emb @ audio_emb.T + self.bias

    def forward(self, mouth_clips: Tensor, log_mel: Tensor) -> Tensor:
        """Match logits of paired windows.

        Args:
            mouth_clips: float `[B, 16, 64, 64]` in 0..1.
            log_mel: float `[B, 80, 64]`.

        Returns:
            logits `[B]`.
        """
        check_inputs(mouth_clips, log_mel)
        video_emb = self.encode_video(mouth_clips)
        audio_emb = self.encode_audio(log_mel)
        return self.log_scale.exp() * (video_emb * audio_emb).sum(-1) + self.bias

    def score_candidates(self, mouth_clips: Tensor, mel_candidates: Tensor) -> Tensor:
        """Logits of each mouth clip against K candidate mel windows (one pass of each encoder).

        Args:
            mouth_clips: float `[B, 16, 64, 64]`.
            mel_candidates: float `[B, K, 80, 64]`.

        Returns:
            logits `[B, K]`.
        """
        batch, count = mel_candidates.shape[:2]
        video_emb = self.encode_video(mouth_clips)  # [B, D]
        audio_emb = self.encode_audio(mel_candidates.reshape(batch * count, *mel_candidates.shape[2:]))
        audio_emb = audio_emb.reshape(batch, count, -1)
        return self.log_scale.exp() * torch.einsum("bd,bkd->bk", video_emb, audio_emb) + self.bias
