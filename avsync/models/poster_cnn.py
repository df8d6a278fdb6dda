"""The poster's network: audio and mouth fused early into one tensor, three convolutions, one linear.

The poster concatenates the audio time-frequency feature with the mouth images into a single
spatio-temporal tensor, applies three convolutional layers and one linear layer with a sigmoid and
reads a match / no-match probability. That is kept. What differs, and why:

- The audio has no spatial relation to mouth pixels, so a spectrogram pasted onto the image plane
  puts unrelated mel bands next to unrelated lip pixels. Here each video frame's four mel columns
  (`[80, 4]`) are projected by a learned linear map to `audio_channels` values, and each value is
  tiled over the 64x64 plane; every pixel then sees the sound of its own frame.
- Time is folded into channels: 16 mouth frames plus `16 * audio_channels` audio planes form a
  `[16 + 16 * audio_channels, 64, 64]` tensor, and the three layers are 2-D convolutions. This keeps
  the first layer's view of all 16 frames (a one-frame shift is visible to it) and is cheap on CPU.
- Inputs are standardised per sample (mouth clip: over frames and pixels; log-mel: over the whole
  window), the convolutions use BatchNorm, and there is dropout before the linear layer. Without
  these (as on the poster) training on a few thousand windows does not converge.
- `forward` returns the logit; training uses `BCEWithLogitsLoss` (numerically safe). The poster's
  sigmoid output is `predict_proba`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avsync.models.layers import (
    MELS_PER_FRAME,
    N_MELS,
    WINDOW_FRAMES,
    candidates_by_pairs,
    check_inputs,
    conv_block,
    mel_per_frame,
    standardise,
)


class PosterCNN(nn.Module):
    """Early-fusion match / no-match classifier of a mouth clip and a log-mel window.

    Args:
        audio_channels: values each frame's mel columns are projected to (tiled over the plane).
        channels: output channels of the three convolutional layers.
        dropout: dropout probability before the linear layer.
    """

    def __init__(self, audio_channels: int = 4, channels: tuple[int, int, int] = (32, 64, 64), dropout: float = 0.2) -> None:
        super().__init__()
        self.config = {"audio_channels": audio_channels, "channels": list(channels), "dropout": dropout}
        first, second, third = channels
        self.audio_projection = nn.Linear(MELS_PER_FRAME * N_MELS, audio_channels)
        fused_channels = WINDOW_FRAMES * (1 + audio_channels)
        self.convolutions = nn.Sequential(
            conv_block(fused_channels, first, kernel=5, stride=2),  # 64 -> 32
            conv_block(first, second, kernel=3, stride=2),  # 32 -> 16
            conv_block(second, third, kernel=3, stride=2),  # 16 -> 8
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(third * 8 * 8, 1))

    def fuse(self, mouth_clips: Tensor, log_mel: Tensor) -> Tensor:
        """Build the spatio-temporal input tensor.

        Args:
            mouth_clips: float `[B, 16, 64, 64]`, pixel values in 0..1.
            log_mel: float `[B, 80, 64]`.

        Returns:
            float `[B, 16 * (1 + audio_channels), 64, 64]`: the standardised mouth frames, then
            each frame's projected audio values tiled over the plane.
        """
        check_inputs(mouth_clips, log_mel)
        mouth = standardise(mouth_clips, dims=(1, 2, 3))
        audio = self.audio_projection(mel_per_frame(standardise(log_mel, dims=(1, 2))))  # [B, 16, A]
        batch, height, width = mouth.shape[0], mouth.shape[2], mouth.shape[3]
        planes = audio.reshape(batch, -1, 1, 1).expand(-1, -1, height, width)
        return torch.cat([mouth, planes], dim=1)

    def forward(self, mouth_clips: Tensor, log_mel: Tensor) -> Tensor:
        """Match logits.

        Args:
            mouth_clips: float `[B, 16, 64, 64]` in 0..1.
            log_mel: float `[B, 80, 64]`.

        Returns:
            logits `[B]` (positive: the audio belongs to these lips at this time).
        """
        return self.classifier(self.convolutions(self.fuse(mouth_clips, log_mel))).squeeze(1)

    def predict_proba(self, mouth_clips: Tensor, log_mel: Tensor) -> Tensor:
        """The poster's sigmoid output: match probabilities `[B]`."""
        return torch.sigmoid(self(mouth_clips, log_mel))

    def score_candidates(self, mouth_clips: Tensor, mel_candidates: Tensor) -> Tensor:
        """Logits of each mouth clip against K candidate mel windows (one pair call each).

        Args:
            mouth_clips: float `[B, 16, 64, 64]`.
            mel_candidates: float `[B, K, 80, 64]`.

        Returns:
            logits `[B, K]`.
        """
        return candidates_by_pairs(self, mouth_clips, mel_candidates)
