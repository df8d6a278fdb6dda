"""`avsync.smoothing`: scipy.ndimage's moving average and dilation, to the bit, without scipy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, uniform_filter1d

from avsync.smoothing import dilate, moving_average


@pytest.mark.parametrize("mode", ["nearest", "constant"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_moving_average_is_scipys_to_the_bit(mode: str, dtype: type) -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        length, size = int(rng.integers(1, 300)), int(rng.integers(1, 60))
        values = (rng.normal(size=length) * rng.choice([1e-3, 1.0, 1e4])).astype(dtype)
        ours = moving_average(values, size, mode=mode)
        assert ours.dtype == values.dtype
        np.testing.assert_array_equal(ours, uniform_filter1d(values, size, mode=mode))


def test_moving_average_along_an_axis_and_of_a_mask() -> None:
    rng = np.random.default_rng(4)
    bands = rng.normal(size=(5, 120)) * 10
    np.testing.assert_array_equal(moving_average(bands, 9, axis=1), uniform_filter1d(bands, 9, axis=1, mode="nearest"))
    np.testing.assert_array_equal(moving_average(bands, 4, axis=0, mode="constant"), uniform_filter1d(bands, 4, axis=0, mode="constant"))
    mask = rng.random(80) > 0.6
    assert moving_average(mask, 16).dtype == np.float64
    np.testing.assert_array_equal(moving_average(mask, 16), uniform_filter1d(mask.astype(np.float64), 16, mode="nearest"))
    with pytest.raises(ValueError, match="at least 1"):
        moving_average(bands, 0)


def test_dilate_is_scipys_binary_dilation() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        mask = rng.random(int(rng.integers(1, 200))) > rng.uniform(0.5, 0.99)
        radius = int(rng.integers(1, 20))
        np.testing.assert_array_equal(dilate(mask, radius), binary_dilation(mask, iterations=radius))
    np.testing.assert_array_equal(dilate(np.array([False, True, False, False]), 0), [False, True, False, False])


def test_the_alignment_does_not_import_scipy() -> None:
    """`avsync align`'s analysis and its camera-audio match run without scipy's modules (scipy.ndimage's
    import cost 0.13-0.21 s of CPU beside the lips worker; numba loads the bare package, 6 ms)."""
    code = ("import sys, avsync.commands.align, avsync.pipeline.sync, avsync.pipeline.camera_audio, avsync.align.analysis; "
            "print(sorted({'scipy.ndimage', 'scipy.signal', 'scipy.linalg', 'scipy.sparse'} & set(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
