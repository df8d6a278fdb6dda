"""Moving averages and mask dilation along one axis, in numpy.

The alignment needs only these two of scipy.ndimage, whose import (with the parts of scipy it
loads) took 0.13-0.21 s of CPU in every `avsync align`, while the lips worker needs both cores.
`moving_average` computes what ``scipy.ndimage.uniform_filter1d`` does, the same way (a running
sum divided at the end, in float64): the same numbers to the bit (a test holds them against scipy's).
"""

from __future__ import annotations

import numpy as np

PAD_MODES = {"nearest": "edge", "constant": "constant"}
"""The edge rules of `moving_average`, as scipy.ndimage names them (with numpy's ``pad`` mode)."""


def moving_average(values: np.ndarray, size: int, *, axis: int = -1, mode: str = "nearest") -> np.ndarray:
    """Mean over a window of `size` samples centred on each sample (``size // 2`` before it).

    Args:
        values: float or bool array ``[..., N, ...]``.
        size: window length in samples (>= 1).
        axis: the axis averaged along.
        mode: beyond the ends, ``"nearest"`` repeats the edge sample, ``"constant"`` reads 0.

    Returns:
        An array of `values`' shape: its dtype for float input, float64 otherwise.
    """
    if size < 1:
        raise ValueError(f"window size must be at least 1, got {size}")
    values = np.asarray(values)
    lines = np.moveaxis(values, axis, -1).astype(np.float64)
    before = size // 2
    padded = np.pad(lines, [(0, 0)] * (lines.ndim - 1) + [(before, size - before - 1)], mode=PAD_MODES[mode])
    steps = np.empty(lines.shape, np.float64)
    steps[..., :1] = np.add.accumulate(padded[..., :size], axis=-1)[..., -1:]  # the first window, summed in order
    steps[..., 1:] = padded[..., size:] - padded[..., : lines.shape[-1] - 1]  # sample entering less sample leaving
    means = np.moveaxis(np.add.accumulate(steps, axis=-1) / size, -1, axis)
    return means.astype(values.dtype) if values.dtype.kind == "f" else means


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Each True of a 1-D mask spread to `radius` samples on either side.

    Args:
        mask: bool ``[N]``.
        radius: samples added on each side of every True (0: the mask itself).

    Returns:
        bool ``[N]``.
    """
    mask = np.asarray(mask, bool)
    counts = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    index = np.arange(len(mask))
    return counts[np.minimum(index + radius + 1, len(mask))] > counts[np.maximum(index - radius, 0)]
