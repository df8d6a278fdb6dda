"""Building blocks shared by the networks: window geometry, input standardisation, conv blocks."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from torch import Tensor, nn

from avsync.conventions import MELS_PER_FRAME, MOUTH_SIZE, N_MELS, WINDOW_FRAMES  # noqa: F401  (the networks' window geometry)


def standardise(values: Tensor, dims: Sequence[int], eps: float = 1e-5) -> Tensor:
    """Shift and scale each sample to zero mean and unit variance over `dims`.

    Makes the networks indifferent to lighting (mouth crops) and to loudness (log-mel), which
    carry no information about synchrony.

    Args:
        values: any float tensor whose first axis is the batch.
        dims: the axes that are pooled for the mean and the standard deviation.
        eps: added to the standard deviation so constant inputs stay finite.

    Returns:
        Tensor of the same shape as `values`.
    """
    mean = values.mean(dim=tuple(dims), keepdim=True)
    std = values.std(dim=tuple(dims), keepdim=True, unbiased=False)
    return (values - mean) / (std + eps)


def mel_per_frame(log_mel: Tensor) -> Tensor:
    """Regroup a mel window by video frame.

    Args:
        log_mel: float `[B, 80, 4 * F]`; columns `4k .. 4k+3` belong to frame `k`.

    Returns:
        float `[B, F, 4 * 80]`: for each frame its four mel columns, concatenated.
    """
    batch, n_mels, columns = log_mel.shape
    frames = columns // MELS_PER_FRAME
    grouped = log_mel.reshape(batch, n_mels, frames, MELS_PER_FRAME)
    return grouped.permute(0, 2, 3, 1).reshape(batch, frames, MELS_PER_FRAME * n_mels)


def conv_block(in_channels: int, out_channels: int, kernel: int, stride: int = 1, dims: int = 2) -> nn.Sequential:
    """Convolution (padding keeps the size up to the stride), BatchNorm and ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: kernel size (odd for size-preserving padding).
        stride: stride.
        dims: 1 for `Conv1d`, 2 for `Conv2d`.
    """
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[dims]
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    return nn.Sequential(
        conv(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        norm(out_channels),
        nn.ReLU(inplace=True),
    )


def check_inputs(mouth_clips: Tensor, log_mel: Tensor) -> None:
    """Raise `ValueError` unless the shapes are `[B, 16, 64, 64]` and `[B, 80, 64]`."""
    expected_mouth = (WINDOW_FRAMES, MOUTH_SIZE, MOUTH_SIZE)
    expected_mel = (N_MELS, WINDOW_FRAMES * MELS_PER_FRAME)
    if mouth_clips.dim() != 4 or tuple(mouth_clips.shape[1:]) != expected_mouth:
        raise ValueError(f"mouth_clips must be [B, 16, 64, 64], got {list(mouth_clips.shape)}")
    if log_mel.dim() != 3 or tuple(log_mel.shape[1:]) != expected_mel:
        raise ValueError(f"log_mel must be [B, 80, 64], got {list(log_mel.shape)}")
    if mouth_clips.shape[0] != log_mel.shape[0]:
        raise ValueError(f"batch sizes differ: {mouth_clips.shape[0]} mouth clips, {log_mel.shape[0]} mel windows")


def describe(module: nn.Module) -> dict:
    """The `{"class_path", "init_args"}` description that rebuilds a network (LightningCLI style).

    Args:
        module: a network of this package (it keeps its constructor arguments in `config`).
    """
    config = getattr(module, "config", None)
    if not isinstance(config, dict):
        raise TypeError(f"{type(module).__name__} does not record its constructor arguments in `config`")
    cls = type(module)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(config)}


def build_network(description: dict) -> nn.Module:
    """The network a `describe` description names, freshly initialised (the inverse of `describe`).

    Args:
        description: ``{"class_path": "package.module.Class", "init_args": {...}}``.

    Raises:
        ValueError: the description is malformed, or its class cannot be imported or is not an
            `nn.Module`.
    """
    if not isinstance(description, dict) or not isinstance(description.get("class_path"), str):
        raise ValueError(f"a network description needs a class_path, got {description!r:.80}")
    module_name, _, class_name = description["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot import the network class {description['class_path']}") from exc
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{description['class_path']} is not a network (nn.Module)")
    return cls(**dict(description.get("init_args") or {}))


def candidates_by_pairs(network: nn.Module, mouth_clips: Tensor, mel_candidates: Tensor) -> Tensor:
    """Score every candidate mel window against its mouth clip with one pair call each.

    Args:
        network: maps (`[N, 16, 64, 64]`, `[N, 80, 64]`) to logits `[N]`.
        mouth_clips: float `[B, 16, 64, 64]`.
        mel_candidates: float `[B, K, 80, 64]`.

    Returns:
        logits `[B, K]`.
    """
    batch, count = mel_candidates.shape[:2]
    repeated = mouth_clips.repeat_interleave(count, dim=0)
    logits = network(repeated, mel_candidates.reshape(batch * count, *mel_candidates.shape[2:]))
    return logits.reshape(batch, count)


__all__ = [
    "MELS_PER_FRAME",
    "MOUTH_SIZE",
    "N_MELS",
    "WINDOW_FRAMES",
    "candidates_by_pairs",
    "check_inputs",
    "conv_block",
    "describe",
    "mel_per_frame",
    "standardise",
]
