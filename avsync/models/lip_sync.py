"""LipSync: a two-tower network on lip geometry instead of mouth pixels, scoring whole sequences.

The video tower reads the standardised lip geometry (`avsync.features.lips.lip_geometry`, float
``[T, 88]``), the audio tower the log-mel averaged to one column per video frame and standardised
per band over the clip (`avsync.features.audio.frame_log_mel`, ``[M, 80]``). Each tower is a stack
of 1-D convolutions over time whose receptive field is 15 frames (+-7), applied to the whole
sequence at once (edges padded by repetition), giving a unit embedding per frame; the match logit
of video frame ``i`` and reference frame ``j`` is their cosine times a learned scale. Training
scores every frame of a segment against all offsets at once (`LitAVSync` with ``loss: offsets``).

Small on purpose (53,761 weights): a few minutes of real speech from some 45 people is all the
real data there is, and the geometry already holds what lips say about sound.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avsync.features.audio import frame_log_mel
from avsync.features.lips import LIP_DIM
from avsync.models.layers import N_MELS

HALF_FIELD = 7
"""Frames on each side of the one a tower's output stands for (receptive field 15)."""


def temporal_tower(in_channels: int, channels: int, embed_dim: int) -> nn.Sequential:
    """Conv1d stack with a 15-frame receptive field: ``[B, C, T + 14] -> [B, embed_dim, T]``."""
    return nn.Sequential(
        nn.Conv1d(in_channels, channels, 5), nn.ReLU(),
        nn.Conv1d(channels, channels, 5), nn.ReLU(),
        nn.Conv1d(channels, channels, 5), nn.ReLU(),
        nn.Conv1d(channels, embed_dim, 3),
    )  # fmt: skip


def pad_edges(sequence: Tensor, before: int, after: int) -> Tensor:
    """Repeat the first and last frame of ``[B, T, C]`` sequences `before` and `after` times."""
    index = torch.arange(-before, sequence.shape[1] + after, device=sequence.device).clamp(0, sequence.shape[1] - 1)
    return sequence[:, index]


class LipSync(nn.Module):
    """Per-frame embeddings of lip geometry and of frame log-mel, and their match logits.

    Args:
        lip_dim: values per frame of the lip geometry.
        channels: width of the convolutions.
        embed_dim: embedding size.
        init_scale: initial logit scale (cosine similarity times this).
    """

    video_input = "lips"
    """The video features the network reads: lip geometry (not mouth crops)."""

    def __init__(self, lip_dim: int = LIP_DIM, channels: int = 32, embed_dim: int = 32, init_scale: float = 10.0) -> None:
        super().__init__()
        self.config = {"lip_dim": lip_dim, "channels": channels, "embed_dim": embed_dim, "init_scale": init_scale}
        self.video_tower = temporal_tower(lip_dim, channels, embed_dim)
        self.audio_tower = temporal_tower(N_MELS, channels, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    @staticmethod
    def _embed(tower: nn.Sequential, padded: Tensor) -> Tensor:
        """``[B, T + 14, C]`` (already padded by `HALF_FIELD` frames each side) -> unit ``[B, T, D]``."""
        return F.normalize(tower(padded.transpose(1, 2)).transpose(1, 2), dim=-1)

    def embed_lips(self, padded_lips: Tensor) -> Tensor:
        """Embed lip geometry: float ``[B, T + 14, lip_dim]`` (7 frames of context each side) -> ``[B, T, D]``."""
        return self._embed(self.video_tower, padded_lips)

    def embed_audio(self, padded_frames: Tensor) -> Tensor:
        """Embed frame log-mel: float ``[B, M + 14, 80]`` (7 frames of context each side) -> ``[B, M, D]``."""
        return self._embed(self.audio_tower, padded_frames)

    def offset_logits(self, padded_lips: Tensor, padded_frames: Tensor, max_offset: int, across_batch: bool = False) -> Tensor:
        """Logits of every frame of lip segments against its audio at every offset.

        Args:
            padded_lips: float ``[B, S + 14, lip_dim]``.
            padded_frames: float ``[B, S + 2 * max_offset + 14, 80]``: the audio of the same
                frames with `max_offset` more on each side.
            max_offset: offsets run over ``-max_offset .. max_offset``.
            across_batch: also score every frame against the other segments' audio at the same
                place (other clips or other times: audio that is not the frame's own).

        Returns:
            float ``[B, S, 2 * max_offset + 1]``; index ``max_offset + d`` pairs video frame ``i``
            with audio frame ``i - d`` (offset ``d``: video late by d frames). With
            `across_batch`, ``[B, S, 2 * max_offset + 1 + B]``: index ``2 * max_offset + 1 + c``
            pairs frame ``i`` of segment ``b`` with frame ``i`` of segment ``c``'s audio (``c = b``
            repeats offset 0).
        """
        video = self.embed_lips(padded_lips)  # [B, S, D]
        audio = self.embed_audio(padded_frames)  # [B, S + 2K, D]
        candidates = audio.unfold(1, 2 * max_offset + 1, 1).flip(-1)  # [B, S, D, 2K+1]; [.., r, :, K + d] = audio[r + K - d]
        logits = torch.einsum("bsd,bsdk->bsk", video, candidates)
        if across_batch:
            own_place = audio[:, max_offset : max_offset + video.shape[1]]  # [B, S, D]: offset 0 of each segment
            logits = torch.cat([logits, torch.einsum("bsd,csd->bsc", video, own_place)], dim=-1)
        return self.log_scale.exp() * logits

    @torch.inference_mode()
    def sequence_logits(self, lips: np.ndarray, log_mel: np.ndarray) -> np.ndarray:
        """Match logits of every video frame against every reference frame.

        Args:
            lips: float ``[N, lip_dim]`` lip geometry of the video.
            log_mel: float ``[80, 4M]`` of the reference.

        Returns:
            float32 ``[N, M]``.
        """
        device = self.log_scale.device
        video = torch.from_numpy(np.ascontiguousarray(lips, np.float32))[None].to(device)
        audio = torch.from_numpy(frame_log_mel(log_mel))[None].to(device)
        video_emb = self.embed_lips(pad_edges(video, HALF_FIELD, HALF_FIELD))[0]
        audio_emb = self.embed_audio(pad_edges(audio, HALF_FIELD, HALF_FIELD))[0]
        return (self.log_scale.exp() * video_emb @ audio_emb.T).float().cpu().numpy()
