"""``avsync prepare`` end to end: synthetic songs, real-clip layout, failures, bad input, shards, concurrency."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_stored_frames

import avsync.features.cache
from avsync import cli
from avsync.features.cache import FeatureCache, load_clip
from avsync.features.extract import VisualParams, extract_visual
from avsync.features.landmarks import mouth_centre
from avsync.features.manifest import ClipRecord, read_manifest, write_manifest
from avsync.features.tracking import NO_FACE
from avsync.io.media import read_video, write_video
from avsync.synth.dataset import write_dataset
from benchmarks.bench_prepare import face_frames, write_face_video


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 2 s synthetic songs (URSing layout with manifest.jsonl, 320x320, 25 fps)."""
    out = tmp_path_factory.mktemp("synth") / "data"
    write_dataset(out, songs=2, seconds=2.0, seed=3, distractors=0.0, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def prepared(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The synthetic songs prepared once by the CLI: (cache folder, stdout)."""
    cache = tmp_path_factory.mktemp("cache") / "features"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main(["prepare", str(synth_data), "--cache", str(cache), "--no-progress"]) == 0
    return cache, stdout.getvalue()


def run_cli(*args: str) -> int:
    return cli.main(["prepare", *args, "--no-progress"])


def test_prepare_fills_the_cache_for_every_song_and_says_so(prepared: tuple[Path, str]) -> None:
    cache, stdout = prepared
    assert stdout.startswith("avsync prepare: 2 clips: 2 computed, 0 cached, 0 failed; 100 frames, 0 without a usable face in ")
    assert str(cache) in stdout
    # Per song: the video, the vocal stem (the reference) and the accompaniment.
    assert len(list(cache.rglob("*.npz"))) == 6
    assert sorted(p.name for p in cache.iterdir()) == ["audio", "visual"]


def test_prepared_crops_follow_the_mouth_of_the_synthetic_singer(synth_data: Path, prepared: tuple[Path, str], monkeypatch) -> None:
    cache, _ = prepared
    monkeypatch.setattr(avsync.features.cache, "extract_visual", None)  # loaded, never recomputed
    monkeypatch.setattr(avsync.features.cache, "extract_audio", None)
    for record in read_manifest(synth_data):
        clip = load_clip(record, FeatureCache(cache))
        truth = json.loads(record.truth.read_text())["frames"]
        assert len(clip) == 50 and clip.log_mel.shape == (80, 200) and clip.mouth_crops.shape == (50, 64, 64)
        assert clip.valid.all() and all(truth["face_visible"])
        visual = FeatureCache(cache).visual(record.video)
        centres = mouth_centre(visual.landmarks.astype(np.float64))
        box = np.array(truth["mouth_box"])  # the region the synthetic mouth warp can change
        inside = (centres >= box[:, :2]).all(axis=1) & (centres <= box[:, 2:]).all(axis=1)
        assert inside.all()
        box_width = box[:, 2] - box[:, 0]
        assert (np.abs(centres[:, 0] - (box[:, 0] + box[:, 2]) / 2) < 0.1 * box_width).all()
        assert clip.mouth_crops.std(axis=(1, 2)).min() > 5  # real picture, not blank


def test_a_second_run_does_no_work(synth_data: Path, prepared: tuple[Path, str], monkeypatch, capsys) -> None:
    cache, _ = prepared

    def no_work(*args, **kwargs):
        raise AssertionError("features were extracted again")

    monkeypatch.setattr(avsync.features.cache, "extract_visual", no_work)
    monkeypatch.setattr(avsync.features.cache, "extract_audio", no_work)
    assert run_cli(str(synth_data), "--cache", str(cache)) == 0
    assert "2 clips: 0 computed, 2 cached, 0 failed" in capsys.readouterr().out


def test_shards_split_the_work_between_runs(synth_data: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    lines = []
    for shard in ("0/2", "1/2"):
        assert run_cli(str(synth_data), "--cache", str(cache), "--shard", shard) == 0
        lines.append(capsys.readouterr().out)
    counts = [int(line.split(": ")[1].split(" clips")[0]) for line in lines]
    assert sum(counts) == 2
    assert "(shard 0/2 of 2)" in lines[0] and "(shard 1/2 of 2)" in lines[1]
    assert len(list(cache.rglob("*.npz"))) == 6


def test_a_video_without_a_face_gives_invalid_frames_and_a_clear_report(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "clips"
    write_face_video(folder / "wall.mp4", seconds=1.0, size=(160, 120), blank=(0.0, 1.0))
    assert run_cli(str(folder), "--cache", str(tmp_path / "cache")) == 0
    out = capsys.readouterr().out
    assert "1 clips: 1 computed, 0 cached, 0 failed; 25 frames, 25 without a usable face (no face detected: 25)" in out
    features = FeatureCache(tmp_path / "cache").visual(folder / "wall.mp4")
    assert not features.valid.any() and set(features.invalid_reason) == {NO_FACE}
    assert not features.mouth_crops.any()


def test_bad_clips_fail_alone_exit_1_and_are_listed_one_line_each(tmp_path: Path, capsys) -> None:
    good = write_face_video(tmp_path / "good.mp4", seconds=0.6, size=(160, 120))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(good.read_bytes()[:300])
    silent = write_face_video(tmp_path / "silent.mp4", seconds=0.6, size=(160, 120), audio=False)
    records = [
        ClipRecord("good", good, None, "train"),
        ClipRecord("gone", tmp_path / "gone.mp4", None, "train"),
        ClipRecord("broken", broken, None, "val"),
        ClipRecord("silent", silent, None, "test"),
    ]
    write_manifest(records, tmp_path / "clips.jsonl")
    assert run_cli(str(tmp_path / "clips.jsonl"), "--cache", str(tmp_path / "cache")) == 1
    captured = capsys.readouterr()
    assert "4 clips: 1 computed, 0 cached, 3 failed" in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3
    assert errors[0].startswith("avsync prepare: failed gone: ") and str(tmp_path / "gone.mp4") in errors[0]
    assert errors[1].startswith("avsync prepare: failed broken: ") and str(broken) in errors[1]
    assert errors[2].startswith("avsync prepare: failed silent: ") and "audio" in errors[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--cache", "{tmp}/cache"], "manifest or dataset folder not found"),
        (["{data}", "--cache", "{tmp}/cache", "--shard", "2/2"], "--shard I/N needs 0 <= I < N"),
        (["{data}", "--cache", "{tmp}/cache", "--shard", "half"], "--shard must look like I/N"),
        (["{data}", "--cache", "{tmp}/cache", "--workers", "0"], "workers must be at least 1"),
        (["{data}", "--cache", "{tmp}/cache", "--detect-every", "0"], "--detect-every must be at least 1"),
        (["{data}", "--cache", "{tmp}/file.txt"], "--cache must be a folder"),
        (["{tmp}/bad.jsonl", "--cache", "{tmp}/cache"], "line 1: not valid JSON"),
        (["{data}", "--cache", "{tmp}/cache", "--backend", "fan"], "FAN weights missing: 2DFAN4-11f355bf06.pth.tar"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, monkeypatch, capsys, args: list[str], message: str) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = tmp_path / "data"
    write_face_video(data / "a.mp4", seconds=0.4, size=(96, 96))
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    filled = [arg.format(tmp=tmp_path, data=data, missing=tmp_path / "nowhere") for arg in args]
    assert cli.main(["prepare", *filled, "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avsync: error: ") and message in lines[0]
    assert not (tmp_path / "cache").exists()  # nothing was prepared


@pytest.mark.slow
def test_two_concurrent_prepare_runs_share_the_work_and_leave_a_sound_cache(synth_data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "avsync", "prepare", str(synth_data), "--cache", str(cache), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    for stdout, _ in outputs:
        assert "2 clips:" in stdout and "0 failed" in stdout
    assert len(list(cache.rglob("*.npz"))) == 6
    assert not [p for p in cache.rglob("*") if p.is_file() and p.suffix not in (".npz", ".lock")]
    check = FeatureCache(cache)
    for record in read_manifest(synth_data):
        check.visual(record.video)
        check.audio(record.reference_audio)
    assert check.stats == {"hit": 4}


def write_rotated(path: Path, upright: np.ndarray, rotation: int, fps: float = 25.0) -> Path:
    """Store gray frames ``[T, H, W]`` turned so that a player applying `rotation` (ccw degrees) shows them upright."""
    return write_stored_frames(path, list(np.rot90(upright, -(rotation // 90), axes=(1, 2))), rotation=rotation, fps=round(fps))


def test_phone_rotation_odd_frame_rates_and_large_frames_give_the_same_mouth(tmp_path: Path) -> None:
    """Landmarks are found on upright frames and reported in the displayed source's pixels."""
    upright = face_frames(20, (192, 256), 25.0, face_width=0.5)
    plain = extract_visual(write_video_gray(tmp_path / "plain.mp4", upright, 25.0))
    rotated = extract_visual(write_rotated(tmp_path / "portrait.mp4", upright, 90))
    assert plain.valid.all() and rotated.valid.all()
    plain_mouth = mouth_centre(plain.landmarks.astype(np.float64))
    assert np.abs(mouth_centre(rotated.landmarks.astype(np.float64)) - plain_mouth).max() < 2.0
    # 29.97 fps: resampled to 25 fps by timestamp (frame k shows time k/25).
    ntsc_path = write_video_gray(tmp_path / "ntsc.mp4", face_frames(30, (192, 256), 29.97, face_width=0.5), 29.97)
    ntsc = extract_visual(ntsc_path)
    assert len(ntsc) == len(read_video(ntsc_path, fps=25.0).times) in (25, 26)  # 1.001 s
    assert ntsc.valid.all()
    # 4x larger than the work width: tracked at 640 px, landmarks mapped back to source pixels.
    large = np.stack([cv2.resize(frame, (768, 1024), interpolation=cv2.INTER_LINEAR) for frame in upright])
    big = extract_visual(write_video_gray(tmp_path / "large.mp4", large, 25.0), dataclasses.replace(VisualParams(), work_width=384))
    assert big.valid.all()
    assert np.abs(mouth_centre(big.landmarks.astype(np.float64)) / 4 - plain_mouth).max() < 2.0


def write_video_gray(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Write gray frames ``[T, H, W]`` as an MP4 without audio."""
    write_video(path, np.repeat(frames[..., None], 3, axis=3), fps=fps, preset="veryfast")
    return path
