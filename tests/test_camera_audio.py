"""The take's own audio as a second witness: matched against the music through what a camera microphone does to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import fftconvolve

from avsync.align.audio_match import match_audio
from avsync.align.place import near_candidates
from avsync.align.timemap import OffsetEstimate
from avsync.conventions import SAMPLE_RATE
from avsync.features.audio import log_mel
from avsync.io.media import read_audio, read_video, write_audio, write_video
from avsync.pipeline.camera_audio import CameraAudio, report_block
from avsync.pipeline.report import describe_camera_audio
from tests.conftest import run_cli
from tests.test_align_cmd import untrained_ckpt  # noqa: F401  (fixture)

SCALE = (0, 2, 4, 5, 7, 9, 11)


def music(seconds: float, seed: int) -> np.ndarray:
    """A song-like signal: notes of a scale with harmonics and decays, a bass line and a hi-hat, at 16 kHz."""
    rng = np.random.default_rng(seed)
    samples = np.zeros(int(seconds * SAMPLE_RATE))
    time = 0.0
    while time < seconds - 0.6:
        length = float(rng.choice([0.15, 0.25, 0.5]))
        start = int(time * SAMPLE_RATE)
        t = np.arange(int(length * 1.6 * SAMPLE_RATE)) / SAMPLE_RATE
        pitch = 220.0 * 2 ** ((SCALE[int(rng.integers(len(SCALE)))] + 12 * int(rng.integers(2))) / 12)
        note = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6)) * np.exp(-t / (0.4 * length))
        samples[start : start + len(note)] += note[: len(samples) - start]
        if rng.random() < 0.5:
            burst = rng.normal(0, 0.3, int(0.03 * SAMPLE_RATE)) * np.exp(-np.arange(int(0.03 * SAMPLE_RATE)) / 80)
            samples[start : start + len(burst)] += burst[: len(samples) - start]
        time += length
    return (0.3 * samples / np.abs(samples).max()).astype(np.float32)


def through_a_room(take: np.ndarray, rng: np.random.Generator, snr_db: float = 0.0) -> np.ndarray:
    """What a camera hears of playback: 30 dB quieter, a 0.6-s reverb tail, white noise at `snr_db`."""
    t = np.arange(int(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
    response = rng.normal(0, 1, len(t)) * np.exp(-6.9 * t / 0.6)
    response[0] = 4.0
    wet = fftconvolve(take, response)[: len(take)]
    wet *= 10 ** (-30 / 20) * np.abs(take).max() / np.abs(wet).max()
    return (wet + rng.normal(0, np.sqrt(np.mean(wet**2) / 10 ** (snr_db / 10)), len(wet))).astype(np.float32)


def mel(samples: np.ndarray) -> np.ndarray:
    return np.asarray(log_mel(samples))


@pytest.fixture(scope="module")
def tune() -> np.ndarray:
    """A 60-s song."""
    return music(60.0, seed=1)


def test_a_take_heard_through_a_room_is_placed_to_a_fraction_of_a_frame(tune: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    start = 23.44
    take = tune[int(start * SAMPLE_RATE) : int((start + 5.0) * SAMPLE_RATE)]
    match = match_audio(mel(through_a_room(take, rng)), mel(tune))
    assert match is not None and match.confident
    assert match.offset_s == pytest.approx(-start, abs=0.02)  # t_video - t_music: the take starts 23.44 s into the song
    assert match.candidates_s[0] == match.offset_s and not match.ambiguous


def test_another_song_noise_and_silence_are_not_the_music(tune: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    other = music(10.0, seed=7)
    for sound in (through_a_room(other, rng, snr_db=20), rng.normal(0, 0.1, 10 * SAMPLE_RATE).astype(np.float32)):
        match = match_audio(mel(sound), mel(tune))
        assert match is not None and not match.confident, match.confidence
    assert match_audio(mel(np.zeros(10 * SAMPLE_RATE, np.float32)), mel(tune)) is None
    assert match_audio(mel(tune[: SAMPLE_RATE]), mel(tune)) is None  # 1 s: too short to say


def test_a_repeated_section_gives_both_places_as_candidates() -> None:
    verse, chorus = music(20.0, seed=2), music(8.0, seed=3)
    song = np.concatenate([verse[: 10 * SAMPLE_RATE], chorus, verse[10 * SAMPLE_RATE :], chorus, music(6.0, seed=4)])
    take = through_a_room(chorus[SAMPLE_RATE : 6 * SAMPLE_RATE], np.random.default_rng(2), snr_db=10)
    match = match_audio(mel(take), mel(song))
    assert match is not None and match.confident and match.ambiguous
    assert sorted(round(-offset) for offset in match.candidates_s[:2]) == [11, 29]


def test_the_lips_choose_among_the_candidates_near_one_of_them() -> None:
    offsets = np.arange(-100, 10)
    curve = np.zeros(len(offsets))
    curve[offsets == -80] = -5.0  # the lips' best, far from the sound
    curve[offsets == -31] = -3.0  # the best near a candidate
    song = OffsetEstimate(-80, -3.2, 5.0, offsets, curve)
    near = near_candidates(song, [-30.0, -60.0], radius=3)
    assert near.offset_frames == -31 and near.offset_s == pytest.approx(-31 / 25) and near.confidence == 3.0
    assert near.curve is song.curve
    assert near_candidates(song, [500.0], radius=3) is song  # no offset near any candidate: the lips alone


def test_report_block_and_summary_line() -> None:
    class Match:
        offset_s, confidence, candidates_s = -20.0, 9.3, (-20.0,)

    camera = CameraAudio("matched", Match())  # type: ignore[arg-type]
    block = report_block(camera, -19.92, "lips", 25.0)
    assert block == {"status": "matched", "offset_s": -20.0, "offset_frames": -500, "confidence": 9.3, "candidates_s": [-20.0],
                     "agrees_with_lips": False, "lips_minus_audio_frames": 2}  # fmt: skip
    assert describe_camera_audio(block, -19.92, "lips").endswith("lips -19.92 s: the singer is 2 frames late against the playback")
    assert report_block(camera, -20.0, "camera audio", 25.0)["lips_minus_audio_frames"] is None
    assert "placed by it" in describe_camera_audio(report_block(camera, -20.0, "camera audio", 25.0), -20.0, "camera audio")
    assert report_block(CameraAudio("no audio"), 0.0, None, 25.0) == {"status": "no audio"}
    assert describe_camera_audio({"status": "no audio"}, 0.0, None) == "camera audio: no audio; not placed"


def test_placed_by_camera_audio_end_to_end(capsys, tmp_path: Path, song: Path, untrained_ckpt: Path) -> None:
    """`avsync align` on a take whose own audio is the playback heard through a room, inside a longer song:
    the untrained model cannot place it, the sound does; --ignore-camera-audio leaves it to the lips; the
    shoot command places it and puts its sound under its picture on the timeline."""
    take_audio = read_audio(song / "Mix.wav", sample_rate=SAMPLE_RATE)
    filler = music(20.0, seed=5)
    long_song = tmp_path / "long.wav"
    write_audio(long_song, np.concatenate([filler[: 12 * SAMPLE_RATE], take_audio, filler[12 * SAMPLE_RATE :]]), SAMPLE_RATE)
    frames = read_video(song / "Video.mp4")
    take = tmp_path / "take.mp4"
    heard = through_a_room(take_audio, np.random.default_rng(3), snr_db=10)
    write_video(take, frames.frames, fps=25, audio=heard / np.abs(heard).max() * 0.5, sample_rate=SAMPLE_RATE, preset="ultrafast")
    report = tmp_path / "report.json"
    status, out, err = run_cli(capsys, take, long_song, "--report", report, "--checkpoint", untrained_ckpt)
    assert status == 0, err
    data = json.loads(report.read_text())
    block = data["camera_audio"]
    assert block["status"] == "matched" and block["offset_s"] == pytest.approx(-12.0, abs=0.04)
    if data["placed_by"] == "camera audio":  # the untrained lips found nothing: the sound's constant offset is the result
        assert data["offset_s"] == pytest.approx(block["offset_s"], abs=1e-3) and data["retimed_fraction"] == 0.0
    else:  # the lips placed it near the sound
        assert data["placed_by"] == "lips" and abs(data["offset_s"] + 12.0) <= 0.5
    assert f"camera audio: {block['offset_s']:+.2f} s" in out
    status, out, err = run_cli(capsys, take, long_song, "--report", report, "--checkpoint", untrained_ckpt,
                               "--force", "--ignore-camera-audio")  # fmt: skip
    assert status == 0, err
    data = json.loads(report.read_text())
    assert data["camera_audio"] is None and "camera audio" not in out and data["placed_by"] in ("lips", None)
    shoot = tmp_path / "shoot"
    status, out, err = run_cli(capsys, take, long_song, "--out-dir", shoot, "--checkpoint", untrained_ckpt, "--mode", "offset",
                               "--timeline", shoot / "cut.otio")  # fmt: skip
    assert status == 0, err
    summary = json.loads((shoot / "summary.json").read_text())
    (row,) = summary["shots"]
    assert row["status"] == "placed" and row["camera_audio_offset_s"] == pytest.approx(-12.0, abs=0.04)
    import opentimelineio as otio

    timeline = otio.adapters.read_from_file(str(shoot / "cut.otio"))
    (sound,) = [track for track in timeline.audio_tracks() if track.name == "Camera audio V1"]
    (clip,) = sound.find_clips()
    assert clip.range_in_parent() == timeline.video_tracks()[0].find_clips()[0].range_in_parent()
