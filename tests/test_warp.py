"""Known-truth warps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import identity_map

from avsync.errors import AvsyncError
from avsync.evaluation.warp import (
    WARP_KINDS,
    FrameMap,
    apply_frame_map,
    make_warp,
    warp_video_file,
)


@pytest.mark.parametrize("kind", WARP_KINDS)
def test_warps_are_deterministic_monotone_and_in_range(kind: str) -> None:
    a, b = make_warp(kind, 750, 11), make_warp(kind, 750, 11)
    np.testing.assert_array_equal(a.src_index, b.src_index)
    assert a.params == b.params
    assert np.diff(a.src_index).min() >= 0
    assert a.src_index.min() >= 0 and a.src_index.max() <= 749
    others = [make_warp(kind, 750, seed).src_index for seed in range(5)]
    assert len({x.tobytes() for x in others}) > 1


def test_shift() -> None:
    for seed in range(20):
        warp = make_warp("shift", 300, seed)
        s = warp.params["shift"]
        assert 1 <= abs(s) <= 15
        assert warp.true_offset_frames == -s
        if s > 0:
            np.testing.assert_array_equal(warp.src_index, np.arange(s, 300))
        else:
            assert (warp.src_index[: -s] == 0).all() and len(warp) == 300


def test_tempo() -> None:
    rates = []
    for seed in range(20):
        warp = make_warp("tempo", 750, seed)
        rate = warp.params["rate"]
        assert 0.9 <= rate <= 1.1 and abs(rate - 1) >= 0.03
        slope = np.polyfit(np.arange(len(warp)), warp.src_index, 1)[0]
        assert slope == pytest.approx(rate, abs=1e-3)
        assert len(warp) == pytest.approx((750 - warp.params["start"]) / rate, abs=1.5)
        rates.append(rate)
    assert min(rates) < 1 < max(rates)


def test_cut_freeze_combo() -> None:
    cut = make_warp("cut", 750, 0)
    jumps = np.diff(cut.src_index)
    assert (jumps == 1).sum() == len(cut) - 2 and jumps.max() == cut.params["cut_frames"] + 1
    freeze = make_warp("freeze", 750, 0)
    assert (np.diff(freeze.src_index) == 0).sum() == freeze.params["freeze_frames"]
    assert len(freeze) == 750 + freeze.params["freeze_frames"]
    combo = make_warp("combo", 750, 0)
    steps = np.diff(combo.src_index)
    assert steps.max() >= 10 and (steps == 0).sum() >= 10
    assert {"rate", "cut_frames", "freeze_frames"} <= set(combo.params)


def test_apply_and_round_trip() -> None:
    warp = make_warp("combo", 200, 3)
    data = np.arange(200 * 2).reshape(200, 2)
    warped = apply_frame_map(data, warp)
    np.testing.assert_array_equal(warped[:, 0] // 2, warp.src_index)
    back = FrameMap.from_dict(json.loads(json.dumps(warp.to_dict())))
    np.testing.assert_array_equal(back.src_index, warp.src_index)
    assert back.params == warp.params and back.kind == "combo"
    with pytest.raises(ValueError, match="frames"):
        apply_frame_map(data[:10], warp)
    assert identity_map(5).true_offset_frames == 0
    with pytest.raises(ValueError):
        make_warp("reverse", 200, 0)
    with pytest.raises(ValueError):
        make_warp("shift", 100, 0)


def test_warp_video_file(tmp_path) -> None:
    from avsync.io.media import read_video, write_video

    n = 160
    bits = (np.arange(n)[:, None] >> np.arange(8)[None, :]) & 1  # frame index as an 8-block bar code
    frames = np.repeat(np.repeat(bits * 255, 8, axis=1)[:, None, :], 16, axis=1).astype(np.uint8)
    frames = np.repeat(frames[..., None], 3, axis=3)
    src = tmp_path / "clip.mp4"
    write_video(src, frames, fps=25.0, crf=0)
    warp = make_warp("freeze", n, 2)
    dst = tmp_path / "warped.mp4"
    truth_path = warp_video_file(src, dst, warp)
    decoded = read_video(dst, fps=25.0)
    assert len(decoded.frames) == len(warp)
    shown = ((decoded.frames[:, 8, 4::8, 0] > 128) << np.arange(8)).sum(axis=1)
    np.testing.assert_array_equal(shown, warp.src_index)
    truth = json.loads(truth_path.read_text())
    assert truth["src_index"] == warp.src_index.tolist() and truth["fps"] == 25.0
    with pytest.raises(AvsyncError, match="overwrite"):
        warp_video_file(src, src, warp)
    with pytest.raises(AvsyncError, match="frames"):
        warp_video_file(src, tmp_path / "x.mp4", make_warp("cut", 300, 0))
