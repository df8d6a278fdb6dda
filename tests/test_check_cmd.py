"""`avsync check`: both witnesses on a generated talker whose audio is delayed, and bad input.

The talker is the synthetic face (`avsync.synth`) saying syllables that all start with /p b m/,
its lips moving with the sound (no lead: the lips part when the burst sounds), with the dry
synthetic voice as its audio track.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, write_test_clip

from avsync.cli import main
from avsync.io.media import read_audio, write_audio, write_video
from avsync.synth.articulation import mouth_track
from avsync.synth.face import level_shape, quantize_mouth
from avsync.synth.scene import FrameRenderer, make_identity, scene_tracks
from avsync.synth.singing import compose_score, synthesize_vocal

FPS = 25
SR = 16000
DELAY_FRAMES = 3


def bilabial_talker(path: Path, *, seconds: float = 6.0, seed: int = 0, audio_delay_frames: int = 0) -> Path:
    """Write a synthetic face saying /p b m/-initial syllables, its audio delayed by some frames.

    Args:
        path: the ``.mp4`` to write.
        seconds: length.
        seed: the random seed (score, voice, face, head motion).
        audio_delay_frames: frames (25 fps) of silence put before the voice (the picture is then
            early: t_video - t_audio = -audio_delay_frames / 25 s).
    """
    rng = np.random.default_rng(seed)
    score = compose_score(rng, seconds)
    syllables = [dataclasses.replace(s, consonant="pbm"[i % 3]) for i, s in enumerate(score.syllables)]
    score = dataclasses.replace(score, syllables=syllables)
    voice = synthesize_vocal(score, rng, SR)
    count = round(seconds * FPS)
    track = mouth_track(syllables, count, FPS, lead_s=0.0)
    renderer = FrameRenderer(make_identity(rng, "talker"), rng)
    tracks = scene_tracks(rng, count, FPS)
    frames = np.stack([renderer.render(tracks, k, *level_shape(quantize_mouth(float(o), float(w))))
                       for k, (o, w) in enumerate(zip(track.mouth_open, track.mouth_width, strict=True))])  # fmt: skip
    delay = np.zeros(round(audio_delay_frames / FPS * SR), dtype=np.float32)
    audio = np.concatenate([delay, voice])[: len(voice)]
    write_video(path, frames, fps=FPS, audio=audio, sample_rate=SR, crf=18, preset="ultrafast")
    return path


@pytest.fixture(scope="module")
def talkers(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("talkers")
    return {delay: bilabial_talker(folder / f"talk{delay}.mp4", audio_delay_frames=delay) for delay in (0, DELAY_FRAMES)}


def check(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = main(["check", *map(str, args), "--quiet"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_audio_delayed_three_frames_is_found_by_both_witnesses(capsys, tmp_path: Path, talkers: dict[int, Path]) -> None:
    reports = {}
    for delay, video in talkers.items():
        report = tmp_path / f"r{delay}.json"
        status, out, err = check(capsys, video, "--report", report)
        assert status == 0, err
        assert "events:" in out and "model:" in out
        reports[delay] = json.loads(report.read_text())
    late = reports[DELAY_FRAMES]
    # the picture is early on the delayed audio: t_video - t_audio = -3 frames
    assert late["events"]["verdict"] == "off" and late["events"]["off_by_frames"] == -DELAY_FRAMES
    assert abs(late["events"]["offset_frames"] + DELAY_FRAMES) <= 1.0
    low, high = late["events"]["interval_frames"]
    assert low <= late["events"]["offset_frames"] <= high
    assert late["events"]["n_events"] >= 3 and len(late["events"]["events"]) == late["events"]["n_events"]
    assert abs(late["model"]["offset_frames"] + DELAY_FRAMES) <= 1.0
    # the same clip in sync: the events say so; each witness moves by the delay
    assert reports[0]["events"]["verdict"] == "in sync"
    for witness in ("events", "model"):
        moved = reports[0][witness]["offset_frames"] - late[witness]["offset_frames"]
        assert abs(moved - DELAY_FRAMES) <= (0.25 if witness == "events" else 1.0), (witness, moved)
    for report in reports.values():
        difference = report["events"]["offset_frames"] - report["model"]["offset_frames"]
        assert report["difference_frames"] == pytest.approx(difference, abs=0.011)
        assert report["agreement"] == ("agree" if abs(difference) <= 1.0 else "disagree")
        assert report["audio"] == report["video"]  # its own track


@pytest.mark.slow
def test_another_audio_file_is_checked_against(capsys, tmp_path: Path, talkers: dict[int, Path]) -> None:
    # the in-sync talker against its own voice delayed by 3 frames, given as AUDIO
    voice = read_audio(talkers[0], sample_rate=SR)
    delayed = tmp_path / "late.wav"
    write_audio(delayed, np.concatenate([np.zeros(round(DELAY_FRAMES / FPS * SR), np.float32), voice]), SR)
    report = tmp_path / "r.json"
    status, out, err = check(capsys, talkers[0], delayed, "--report", report)
    assert status == 0, err
    found = json.loads(report.read_text())
    assert found["audio"] == str(delayed)
    assert abs(found["events"]["offset_frames"] + DELAY_FRAMES) <= 1.0


@pytest.mark.slow
def test_the_reference_reads_dlib_landmarks_and_the_model_the_default(capsys, tmp_path: Path, talkers: dict[int, Path]) -> None:
    """The reference's thresholds were set on dlib's points: it reads them whatever the model reads."""
    from avsync.features.cache import FeatureCache
    from avsync.features.extract import VisualParams
    from avsync.truth.lips import REFERENCE_BACKEND

    cache = tmp_path / "cache"
    status, _, err = check(capsys, talkers[DELAY_FRAMES], "--cache", cache)
    assert status == 0, err
    entries = FeatureCache(cache)
    for backend in {REFERENCE_BACKEND, VisualParams().backend}:
        assert entries.entry_path("visual", talkers[DELAY_FRAMES], VisualParams(backend=backend).params()).is_file(), backend


def test_missing_video(capsys, tmp_path: Path) -> None:
    assert_one_line_error(*check(capsys, tmp_path / "nope.mp4")[::2], "nope.mp4")


def test_video_without_its_own_audio_needs_audio(capsys, tmp_path: Path) -> None:
    video = write_test_clip(tmp_path / "mute.mp4", seconds=2.0, audio=False)
    assert_one_line_error(*check(capsys, video)[::2], "mute.mp4", "no audio track")


def test_audio_without_sound_stream(capsys, tmp_path: Path) -> None:
    video = write_test_clip(tmp_path / "v.mp4", seconds=2.0, audio=False)
    other = write_test_clip(tmp_path / "other.mp4", seconds=2.0, audio=False)
    assert_one_line_error(*check(capsys, video, other)[::2], "other.mp4", "no audio stream")


def test_report_options(capsys, tmp_path: Path) -> None:
    video = write_test_clip(tmp_path / "v.mp4", seconds=2.0, click_at=1.0)
    assert_one_line_error(*check(capsys, video, "--report", tmp_path / "r.txt")[::2], "r.txt", ".json")
    existing = tmp_path / "r.json"
    existing.write_text("{}")
    assert_one_line_error(*check(capsys, video, "--report", existing)[::2], "r.json", "--force")
    assert existing.read_text() == "{}"
    assert_one_line_error(*check(capsys, video, "--face", "middle")[::2], "--face")


def test_video_without_any_face(capsys, tmp_path: Path) -> None:
    video = write_test_clip(tmp_path / "v.mp4", seconds=2.0, click_at=1.0)
    report = tmp_path / "r.json"
    status, _, err = check(capsys, video, "--report", report)
    assert_one_line_error(status, err, "v.mp4")
    assert not report.exists()


@pytest.mark.slow
def test_check_real_over_a_manifest(capsys, tmp_path: Path, talkers: dict[int, Path]) -> None:
    from avsync.evaluation.sync_truth import main as check_real

    # the two talkers as if a dataset published them in sync: the delayed one is then 3 frames off
    (tmp_path / "clips.csv").write_text("path,origin_dataset\n" + "".join(f"talk{d}.mp4,GRID (test)\n" for d in talkers))
    lines = []
    for delay, video in talkers.items():
        (tmp_path / video.name).symlink_to(video)
        lines.append(json.dumps({"id": f"talk{delay}", "video": video.name, "audio": None, "split": "test"}))
    (tmp_path / "clips.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "results" / "check.json"
    assert check_real(["--manifest", str(tmp_path / "clips.jsonl"), "--cache", str(tmp_path / "cache"), "--out", str(out), "--quiet"]) == 0
    assert "| GRID | 2 | 2/2" in capsys.readouterr().out
    clips = {clip["id"]: clip for clip in json.loads(out.read_text())["clips"]}
    assert all(clip["dataset"] == "GRID" and clip["synced_by_dataset"] for clip in clips.values())
    # each clip's bias comes from the other one (never itself): each is found the delay away from the other
    assert clips["talk0"]["error_frames"] == pytest.approx(DELAY_FRAMES, abs=0.25)
    assert clips["talk3"]["error_frames"] == pytest.approx(-DELAY_FRAMES, abs=0.25)


@pytest.mark.slow
def test_reaudit_end_to_end_with_out_of_fold_models(capsys, tmp_path: Path, talkers: dict[int, Path]) -> None:
    """make reaudit's command: the reference's results, each clip's fold model run on it, the rule, --apply."""
    import torch
    from test_align_cmd import save_checkpoint

    from avsync.evaluation.reaudit import decide
    from avsync.evaluation.reaudit import main as reaudit
    from avsync.evaluation.sync_truth import main as check_real
    from avsync.features.manifest import read_manifest
    from avsync.models import LipSync

    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "clips.csv").write_text("path,origin_dataset\n" + "".join(f"talk{d}.mp4,social video\n" for d in talkers))
    lines = []
    for delay, video in talkers.items():
        (experiments / video.name).symlink_to(video)
        lines.append(json.dumps({"id": f"talk{delay}", "video": video.name, "split": "test", "speaker": f"s{delay}", "av_offset": 5}))
    manifest = experiments / "clips.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    (experiments / "folds.json").write_text(json.dumps([["s0"], ["s3"]]))
    torch.manual_seed(0)
    for k in (0, 1):
        save_checkpoint(tmp_path / f"runs/fold{k}/run/checkpoints/last.ckpt", LipSync())
    check = tmp_path / "check.json"
    cache = str(tmp_path / "cache")
    assert check_real(["--manifest", str(manifest), "--cache", cache, "--out", str(check), "--quiet"]) == 0
    out = tmp_path / "reaudit.json"
    assert reaudit(["--manifest", str(manifest), "--check", str(check), "--folds", str(experiments / "folds.json"),
                    "--runs", str(tmp_path / "runs/fold{k}"), "--cache", cache, "--out", str(out), "--apply", str(experiments),
                    "--quiet"]) == 0  # fmt: skip
    assert "| talk0 | social video | +5 |" in capsys.readouterr().out
    rows = {row["id"]: row for row in json.loads(out.read_text())["clips"]}
    assert rows["talk3"]["witness_checkpoint"].endswith("fold1/run/checkpoints/last.ckpt")
    for row in rows.values():
        assert row["witness_frames"] is not None and row["reference_verdict"] != "undecided"
        assert (row["truth_by"], row["av_offset"]) == decide(False, 5, row["reference_verdict"], row["reference_frames"],
                                                             row["witness_frames"], row["witness_confidence"])  # fmt: skip
    written = {record.id: record for record in read_manifest(manifest)}
    assert {clip: (record.truth_by, record.av_offset) for clip, record in written.items()} == {
        clip: (row["truth_by"], row["av_offset"]) for clip, row in rows.items()}  # fmt: skip


def test_summary_of_an_undecided_reference() -> None:
    from avsync.pipeline.check import CheckReport, summarise_check

    events = {"offset_s": -0.0072, "offset_frames": -0.18, "interval_frames": [-0.18, -0.18], "n_events": 1,
              "verdict": "undecided", "off_by_frames": None, "bias_frames": 0.64, "events": []}  # fmt: skip
    model = {"offset_s": 0.0, "offset_frames": 0.0, "confidence": 1.75, "confidence_level": "uncertain", "checkpoint": "x"}
    report = CheckReport("v.mp4", "v.mp4", 25.0, events, model, "events undecided", None, ["too few"])
    text = summarise_check(report)
    assert "undecided" in text and "only the model decides" in text and "warning: too few" in text
    nothing = dict(events, offset_s=None, offset_frames=None, interval_frames=None, n_events=0)
    assert "no lip release" in summarise_check(CheckReport("v.mp4", "v.mp4", 25.0, nothing, model, "events undecided", None))
