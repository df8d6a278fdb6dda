"""The model-free sync reference (`avsync.truth`) on hand-made signals with known timing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avsync.truth.acoustic import band_envelope_db, onset_strength
from avsync.truth.estimate import MAX_HALF_WIDTH_FRAMES, estimate_offset
from avsync.truth.events import pair_events
from avsync.truth.lips import JAW_LEFT_END, JAW_RIGHT_END, NOSE_TIP, LipRelease, find_releases, head_turn
from avsync.truth.validate import ClipCheck, calibrate_and_score, origin_dataset, summarise

SR = 16000
FPS = 25.0


def syllable_gap(pattern: list[tuple[int, int]]) -> np.ndarray:
    """An inner-lip gap made of (closed frames, open frames) syllables; opening takes 2 frames."""
    gap: list[float] = [1.0] * 4
    for closed, open_ in pattern:
        gap += [0.0] * closed + [0.5] + [1.0] * (open_ - 1)
    return np.array(gap + [1.0] * 4)


def test_releases_are_found_between_frames_after_short_closures_only() -> None:
    # a 3-frame bilabial, a 1-frame dip (noise), a 12-frame rest, another 2-frame bilabial
    gap = syllable_gap([(3, 6), (1, 6), (12, 6), (2, 6)])
    releases = find_releases(gap)
    assert [r.closure_frames for r in releases] == [3, 2]
    # closed frames 4-6 then 0.5 at frame 7: the half-way crossing is at frame 7 exactly
    assert releases[0].closure_start == 4
    assert releases[0].time_frames == pytest.approx(7.0)
    # a slower opening crosses half-way between frames
    slow = np.array([1.0] * 4 + [0.0] * 3 + [0.3, 0.7, 1.0] + [1.0] * 6)
    assert find_releases(slow)[0].time_frames == pytest.approx(7.5)


def test_releases_need_usable_frames_and_turned_heads_are_not() -> None:
    gap = syllable_gap([(3, 6), (2, 6)])
    usable = np.ones(len(gap), dtype=bool)
    usable[6] = False  # inside the first closure
    assert [r.closure_frames for r in find_releases(gap, usable=usable)] == [2]
    face = np.zeros((2, 68, 2))
    face[:, JAW_LEFT_END, 0], face[:, JAW_RIGHT_END, 0] = 0.0, 100.0
    face[0, NOSE_TIP, 0], face[1, NOSE_TIP, 0] = 50.0, 85.0  # frontal; turned (nose near one end)
    assert head_turn(face) == pytest.approx([0.0, 0.7])


def burst_audio(seconds: float, bursts_s: list[float], seed: int = 0) -> np.ndarray:
    """Quiet noise with loud noise (a plosive and its vowel) switched on at each burst for 400 ms."""
    rng = np.random.default_rng(seed)
    audio = 0.001 * rng.standard_normal(round(seconds * SR))
    for at in bursts_s:
        start = round(at * SR)
        audio[start : start + round(0.4 * SR)] += 0.2 * rng.standard_normal(len(audio[start : start + round(0.4 * SR)]))
    return audio.astype(np.float32)


def test_onset_strength_peaks_at_the_burst() -> None:
    audio = burst_audio(1.0, [0.5])
    strength = onset_strength(band_envelope_db(audio, SR))
    assert abs(int(np.argmax(strength)) - 500) <= 6  # ms
    assert strength.max() > 20


def test_pairs_recover_a_known_lag_and_skip_releases_without_sound() -> None:
    lag_s = 0.05  # the picture 50 ms late
    release_frames = [10.3, 25.6, 40.1, 55.8]
    # the last release has no sound near it: the audio there stays quiet
    audio = burst_audio(2.6, [t / FPS - lag_s for t in release_frames[:3]])
    releases = [LipRelease(t, int(t) - 2, 2) for t in release_frames]
    events = pair_events(releases, audio, SR, FPS)
    assert len(events) == 3
    for event in events:
        assert event.lag_s == pytest.approx(lag_s, abs=0.008)
        assert event.video_s - event.audio_s == pytest.approx(event.lag_s)


def test_two_lags_equally_supported_pair_nothing() -> None:
    # two releases whose sounds come 40 ms after one and 120 ms before the other: no lag stands out
    release_frames = [15.0, 40.0]
    audio = burst_audio(2.4, [15.0 / FPS + 0.04, 40.0 / FPS - 0.12])
    releases = [LipRelease(t, int(t) - 2, 2) for t in release_frames]
    assert pair_events(releases, audio, SR, FPS) == []
    # a third release agreeing with the first settles it
    audio = burst_audio(3.4, [15.0 / FPS + 0.04, 40.0 / FPS - 0.12, 65.0 / FPS + 0.04])
    events = pair_events([*releases, LipRelease(65.0, 63, 2)], audio, SR, FPS)
    assert [round(e.lag_s, 2) for e in events] == [-0.04, -0.04]


def test_a_closure_that_sounds_is_not_a_bilabial() -> None:
    # an onset right at the release, but the audio was loud through most of the closure before it
    # (frames 17-19: 0.68-0.8 s) with only a 40 ms dip: no lips pressed together made that
    rng = np.random.default_rng(1)
    audio = 0.001 * rng.standard_normal(round(1.6 * SR))
    for start, end in ((0.3, 0.76), (0.8, 1.2)):
        audio[round(start * SR) : round(end * SR)] += 0.2 * rng.standard_normal(round(end * SR) - round(start * SR))
    releases = [LipRelease(20.0, 17, 3)]
    assert pair_events(releases, audio.astype(np.float32), SR, FPS) == []
    # the same release after a quiet closure pairs
    audio[round(0.66 * SR) : round(0.8 * SR)] = 0.001 * rng.standard_normal(round(0.8 * SR) - round(0.66 * SR))
    assert len(pair_events(releases, audio.astype(np.float32), SR, FPS)) == 1


def test_verdicts() -> None:
    late = estimate_offset([3.1, 2.9, 3.0, 3.2], bias_frames=0.0)
    assert late.verdict == "off" and late.off_by_frames == 3
    assert late.interval_frames[0] <= late.offset_frames <= late.interval_frames[1]
    in_sync = estimate_offset([0.8, 0.6, 0.7], bias_frames=0.7)
    assert in_sync.verdict == "in sync" and in_sync.offset_frames == pytest.approx(0.0)
    assert estimate_offset([3.0], bias_frames=0.0).verdict == "undecided"  # one event
    scattered = estimate_offset([-4.0, 3.0, 0.0, 4.5, -2.0], bias_frames=0.0)
    assert scattered.verdict == "undecided"
    assert (scattered.interval_frames[1] - scattered.interval_frames[0]) / 2 > MAX_HALF_WIDTH_FRAMES
    assert estimate_offset([], bias_frames=0.0).offset_frames is None
    # the interval is a bootstrap with a fixed seed: the same lags, the same interval
    assert estimate_offset([0.1, 0.9, 0.4], 0.0).interval_frames == estimate_offset([0.1, 0.9, 0.4], 0.0).interval_frames


def test_origin_dataset_from_clips_csv(tmp_path: Path) -> None:
    (tmp_path / "set" / "sub").mkdir(parents=True)
    (tmp_path / "set" / "clips.csv").write_text("path,origin_dataset\nsub/a.mp4,LRS2 (BBC)\nsub/b.mp4,\n")
    assert origin_dataset(tmp_path / "set" / "sub" / "a.mp4") == "LRS2"
    assert origin_dataset(tmp_path / "set" / "sub" / "b.mp4") == "unknown"
    assert origin_dataset(tmp_path / "elsewhere.mp4") == "unknown"


def test_each_clip_is_scored_with_a_bias_from_the_other_clips() -> None:
    # four GRID clips in sync whose raw lags sit at +0.5, and one at +3.5 (a bad clip)
    checks = [ClipCheck(f"g{i}", "GRID", 0.0, True, [0.5 + 0.01 * i, 0.52, 0.48]) for i in range(4)]
    checks.append(ClipCheck("bad", "GRID", 0.0, True, [3.5, 3.52, 3.48]))
    checks.append(ClipCheck("other", "MEAD", -2.0, False, [-1.5, -1.52, -1.48]))
    calibrate_and_score(checks)
    assert checks[0].bias_frames == pytest.approx(0.51, abs=0.02)  # the median of the others, itself left out
    assert checks[0].verdict == "in sync" and abs(checks[0].error_frames) < 0.1
    assert checks[4].verdict == "off" and checks[4].error_frames == pytest.approx(3.0, abs=0.05)
    assert checks[5].error_frames == pytest.approx(0.0, abs=0.05)  # -1.5 - 0.5 against its audit of -2
    rows = {row["group"]: row for row in summarise(checks)}
    assert rows["GRID"]["decided"] == 5 and rows["GRID"]["within_half"] == 4 and rows["GRID"]["gross"] == 1
    assert rows["MEAD"]["agree_with_audit"] == 1
    json.dumps(rows)  # JSON-ready


def test_the_lips_are_read_with_the_backend_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import avsync.truth.validate as validate
    from avsync.features.manifest import ClipRecord

    asked = []

    class Cache:
        def visual(self, video, params):
            asked.append(params.backend)
            return type("Visual", (), {"fps": FPS})()

    monkeypatch.setattr(validate, "read_audio", lambda path, sample_rate: np.zeros(SR, np.float32))
    monkeypatch.setattr(validate, "clip_events", lambda visual, samples, rate, signal: [])
    record = ClipRecord(id="a", split="test", speaker="s", video=tmp_path / "a.mp4", audio=tmp_path / "a.wav")
    for backend in ("dlib", "mesh"):
        (check,) = validate.raw_checks([record], Cache(), "gap", progress=False, backend=backend)  # type: ignore[arg-type]
        assert check.lags_frames == []
    assert asked == ["dlib", "mesh"]
