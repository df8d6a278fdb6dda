"""`avsync align SHOT [SHOT ...] MUSIC --out-dir DIR`: many shots, one song, a summary and a timeline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from conftest import assert_one_line_error, run_cli

from avsync.io import media
from avsync.pipeline.edl import timecode as to_timecode
from avsync.errors import AvsyncError
from avsync.pipeline.shot_files import collect_shots
from avsync.pipeline.shots import find_shots, name_shots
from avsync.shards import in_shard
from avsync.synth.dataset import SongSpec, synthesize_song

SAMPLE_RATE = 16000
SHOT_SECONDS = 10.0
TAKE_A_AT, TAKE_B_AT = 3.0, 15.0
"""Where the two takes' own music starts in the master (seconds)."""


@pytest.fixture(scope="module")
def shoot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of takes (two from the master, one of another song, one broken file) and the master.

    The master is 3 s of another song, take A's music, 2 s more, take B's music, 3 s more (28 s).
    """
    root = tmp_path_factory.mktemp("shoot")
    takes = root / "takes"
    takes.mkdir()
    mixes = {}
    for name, seed in (("take_a", 21), ("take_b", 22), ("other_song", 23)):
        song = synthesize_song(SongSpec(name, f"{name}_singer", seed=seed, index=0, seconds=SHOT_SECONDS), sample_rate=SAMPLE_RATE)
        media.write_video(takes / f"{name}.mp4", iter(song.frames), fps=25.0, audio=song.stems.mix, sample_rate=SAMPLE_RATE,
                          reproducible=True)  # the same bytes every run, so the confidences never move
        mixes[name] = song.stems.mix
    pad = synthesize_song(SongSpec("pad", "pad_singer", seed=24, index=0, seconds=8.0), sample_rate=SAMPLE_RATE).stems.mix
    second = SAMPLE_RATE
    master = np.concatenate([pad[: 3 * second], mixes["take_a"], pad[3 * second : 5 * second], mixes["take_b"], pad[5 * second : 8 * second]])
    media.write_audio(root / "master.wav", master.astype(np.float32), SAMPLE_RATE)
    (takes / "broken.mp4").write_bytes(b"not a video")
    (takes / "notes.txt").write_text("not a shot")
    return takes, root / "master.wav"


def test_folders_expand_to_their_videos_and_names_stay_unique(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.MOV", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.mp4").write_bytes(b"")
    paths = find_shots([tmp_path, other / "a.mp4"])
    assert [p.name for p in paths] == ["a.MOV", "b.mp4", "a.mp4"]
    assert [shot.name for shot in name_shots(paths)] == ["a", "b", "a-2"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="no video files"):
        find_shots([empty])


def test_shards_split_the_shots_without_overlap() -> None:
    names = [f"take{k:02d}" for k in range(40)]
    parts = [{name for name in names if in_shard(name, (index, 3))} for index in range(3)]
    assert set().union(*parts) == set(names)
    assert sum(len(part) for part in parts) == len(names)
    assert all(parts)


def test_a_shoot_is_placed_summarised_and_put_on_a_timeline(capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:
    takes, master = shoot
    out = tmp_path / "out"
    timeline = tmp_path / "cut.otio"
    status, stdout, err = run_cli(capsys, takes, master, "--out-dir", out, "--mode", "offset", "--timeline", timeline, "--device", "cpu")
    # One bad shot is reported and skipped; the others go on; exit 1 at the end with the list.
    assert status == 1
    assert err.strip().splitlines()[-1] == f"avsync: error: 1 of 4 shots failed: {takes / 'broken.mp4'}"
    summary = json.loads((out / "summary.json").read_text())
    rows = {Path(row["shot"]).stem: row for row in summary["shots"]}
    assert summary["counts"] == {"placed": 2, "no match": 1, "failed": 1}
    assert rows["broken"]["status"] == "failed" and "not a media file" in rows["broken"]["error"]
    assert rows["other_song"]["status"] == "no match"
    for name, at in (("take_a", TAKE_A_AT), ("take_b", TAKE_B_AT)):
        assert rows[name]["status"] == "placed"
        assert rows[name]["offset_frames"] == pytest.approx(-25 * at, abs=1)
        assert rows[name]["song_start_s"] == pytest.approx(at, abs=0.041)
        assert (out / f"{name}.json").exists() and (out / f"{name}.png").stat().st_size > 1000
        # Each take is its song at one constant offset: its time map re-times nothing (take A's
        # path once wiggled through its weak first 2 s into a false 3-s cut: 40% re-timed).
        assert json.loads((out / f"{name}.json").read_text())["retimed_fraction"] == 0.0
    with open(out / "summary.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(row["shot"], row["status"], row["offset_s"]) for row in table] == [
        (row["shot"], row["status"], "" if row["offset_s"] is None else str(row["offset_s"])) for row in summary["shots"]]
    assert (out / "summary.png").stat().st_size > 1000
    assert "take_a" in stdout and "no match" in stdout and "2 placed, 1 no match, 1 failed" in stdout
    # The timeline: the music at 0 on an audio track, each placed shot at its place with its source range.
    read = otio.adapters.read_from_file(str(timeline))
    audio = {track.name: track for track in read.tracks if track.kind == otio.schema.TrackKind.Audio}
    assert audio["Music"][0].range_in_parent().start_time.to_seconds() == 0.0
    clips = {clip.name: clip for track in read.video_tracks() if track.name != "No match" for clip in track.find_clips()}
    assert set(clips) == {"take_a.mp4", "take_b.mp4"}
    # the takes carry their song's mix: each one's own sound sits under its picture on its track's camera-audio track
    heard = {clip.name: clip for name, track in audio.items() if name.startswith("Camera audio") for clip in track.find_clips()}
    assert set(heard) == set(clips)
    assert all(heard[name].range_in_parent() == clips[name].range_in_parent() for name in clips)
    (no_match,) = [track for track in read.video_tracks() if track.name == "No match"]
    assert [clip.name for clip in no_match.find_clips()] == ["other_song.mp4"] and not no_match.enabled
    assert read.global_start_time.to_timecode() == "01:00:00:00"
    for name in ("take_a", "take_b"):
        report = json.loads((out / f"{name}.json").read_text())
        clip = clips[f"{name}.mp4"]
        record = clip.range_in_parent().start_time.to_seconds()
        assert record == pytest.approx(max(0.0, -report["offset_s"]), abs=0.5 / 25)
        assert clip.source_range.start_time.to_seconds() == pytest.approx(max(0.0, report["offset_s"]), abs=0.5 / 25)
    unplaced = {entry["name"] for entry in read.metadata["avsync"]["unplaced"]}
    assert unplaced == {"broken", "other_song"}


def test_a_take_keeps_its_camera_timecode_on_a_relinkable_edl(capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:
    takes, master = shoot
    take = tmp_path / "takes" / "take_b camera.mov"
    video = media.read_video(takes / "take_b.mp4")
    media.write_video(take, video.frames, fps=25.0, audio=media.read_audio(takes / "take_b.mp4"), sample_rate=SAMPLE_RATE,
                      reproducible=True, timecode="14:30:00:10")  # fmt: skip
    out = tmp_path / "out"
    status, stdout, err = run_cli(capsys, take, master, "--out-dir", out, "--mode", "offset", "--timeline", out / "cut.edl",
                                  "--timeline-start", "10:00:00:00", "--relative-paths", "--device", "cpu")  # fmt: skip
    assert status == 0, err
    report = json.loads((out / "take_b camera.json").read_text())
    lines = (out / "cut.edl").read_text().splitlines()
    (event, sound) = [line.split() for line in lines if line[:3].isdigit() and line.split()[1] == "TAKEBCAM"]
    record = 10 * 3600 * 25 + round(-report["offset_s"] * 25)  # the take's first frame lands where the song is
    assert event[4] == "14:30:00:10" and event[6] == to_timecode(record, 25.0)  # its source in: the camera's own timecode
    assert event[2] == "V" and sound[2] == "A2" and sound[4:] == event[4:]  # the take's own sound, under its picture
    assert "* FROM FILE: ../takes/take_b camera.mov" in lines and "* REEL TAKEBCAM IS ../takes/take_b camera.mov" in lines
    assert otio.adapters.read_from_file(str(out / "cut.edl"), rate=25).find_clips()  # OTIO reads it
    status, _, err = run_cli(capsys, take, master, "--out-dir", out, "--timeline", out / "cut.edl", "--timeline-start", "25:00",
                             "--force")  # fmt: skip
    assert_one_line_error(status, err, "--timeline-start must be a timecode")


def test_warp_mode_places_the_rendered_shots(capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:
    takes, master = shoot
    out = tmp_path / "out"
    status, stdout, err = run_cli(capsys, takes / "take_b.mp4", master, "--out-dir", out, "--timeline", tmp_path / "cut.otio", "--device", "cpu")
    assert status == 0, err
    report = json.loads((out / "take_b.json").read_text())
    rendered = out / "take_b.synced.mp4"
    assert report["output"] == str(rendered) and report["mode"] == "warp"
    assert report["output_start_s"] == pytest.approx(TAKE_B_AT, abs=0.041)
    assert media.probe(rendered).duration == pytest.approx(report["output_duration_s"], abs=0.05)
    read = otio.adapters.read_from_file(str(tmp_path / "cut.otio"))  # kept: a clip's parent lives as long as its timeline
    clip = read.video_tracks()[0].find_clips()[0]
    assert clip.media_reference.target_url.endswith("take_b.synced.mp4")
    assert clip.range_in_parent().start_time.to_seconds() == pytest.approx(report["output_start_s"], abs=0.5 / 25)


def test_several_shots_need_an_output_folder_and_refuse_single_outputs(capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:
    takes, master = shoot
    shot = takes / "take_a.mp4"
    status, _, err = run_cli(capsys, shot, takes / "take_b.mp4", master)
    assert_one_line_error(status, err, "--out-dir")
    status, _, err = run_cli(capsys, shot, takes / "take_b.mp4", master, "--out-dir", tmp_path / "o", "-o", tmp_path / "x.mp4")
    assert_one_line_error(status, err, "-o is for one video")
    status, _, err = run_cli(capsys, shot, master, "--jobs", "2")
    assert_one_line_error(status, err, "--jobs needs --out-dir")
    for flag in ("--render", "--recursive", "--relative-paths"):  # switches too (True == 1 once let them through)
        status, _, err = run_cli(capsys, shot, master, flag)
        assert_one_line_error(status, err, f"{flag} needs --out-dir")
    status, _, err = run_cli(capsys, takes, master, "--out-dir", tmp_path / "o", "--timeline", tmp_path / "cut.txt")
    assert_one_line_error(status, err, "cut.txt")
    status, _, err = run_cli(capsys, takes, master, "--out-dir", tmp_path / "o", "--shard", "2/2")
    assert_one_line_error(status, err, "--shard")
    status, _, err = run_cli(capsys, takes, master, "--out-dir", tmp_path / "o", "--shard", "0/2", "--timeline", tmp_path / "cut.otio")
    assert_one_line_error(status, err, "--timeline needs every shot")
    for jobs in ("1", "2"):
        status, _, err = run_cli(capsys, takes, master, "--out-dir", tmp_path / "o", "--jobs", jobs, "--checkpoint", tmp_path / "nope.ckpt")
        assert_one_line_error(status, err, "nope.ckpt", "checkpoint not found")
    status, _, err = run_cli(capsys, takes, master, "--out-dir", tmp_path / "o", "--jobs", "0")
    assert_one_line_error(status, err, "--jobs")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "summary.json").write_text("{}")
    status, _, err = run_cli(capsys, takes, master, "--out-dir", tmp_path / "o")
    assert_one_line_error(status, err, "summary.json", "--force")
    assert (tmp_path / "o" / "summary.json").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["summary.json"]
    # An earlier EDL timeline's second track is part of what --timeline would replace.
    (tmp_path / "cut.V2.edl").write_text("earlier")
    status, _, err = run_cli(capsys, takes, master, "--out-dir", tmp_path / "o2", "--timeline", tmp_path / "cut.edl")
    assert_one_line_error(status, err, "cut.V2.edl", "--force")
    assert (tmp_path / "cut.V2.edl").read_text() == "earlier" and not (tmp_path / "o2").exists()


def test_a_forked_worker_reading_the_next_shot_gives_the_same_results(capsys, monkeypatch, tmp_path: Path,
                                                                      shoot: tuple[Path, Path]) -> None:  # fmt: skip
    """`avsync align` forks the lips reader before torch loads; this test process has torch, so it forces the fork."""
    from avsync.pipeline import shot_features

    takes, master = shoot
    results = []
    for forked in (False, True):
        monkeypatch.setattr(shot_features, "can_fork", lambda forked=forked: forked)
        out = tmp_path / f"forked{forked}"
        status, _, err = run_cli(capsys, takes, master, "--out-dir", out, "--mode", "offset", "--device", "cpu", "--quiet")
        assert status == 1 and "broken.mp4" in err.strip().splitlines()[-1]  # a bad shot fails alone, as without the worker
        rows = json.loads((out / "summary.json").read_text())["shots"]
        results.append([(row["shot"], row["status"], row["offset_frames"], row["confidence"], row["error"]) for row in rows])
        stages = json.loads((out / "take_b.json").read_text())["timings_s"]
        assert ("video features (waited)" in stages) == forked and ("video features" in stages) == (not forked)
    assert results[0] == results[1]


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results(capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:
    takes, master = shoot
    shots = [takes / "take_a.mp4", takes / "take_b.mp4", takes / "other_song.mp4"]
    results = []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        status, _, err = run_cli(capsys, *shots, master, "--out-dir", out, "--jobs", jobs, "--device", "cpu")
        assert status == 0, err
        rows = json.loads((out / "summary.json").read_text())["shots"]
        results.append([(row["shot"], row["status"], row["offset_frames"], row["confidence"]) for row in rows])
    assert results[0] == results[1]


def test_shards_of_one_folder_write_their_own_summaries_and_cover_every_shot(capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:
    takes, master = shoot
    seen = []
    for index in range(2):
        status, _, err = run_cli(capsys, takes, master, "--out-dir", tmp_path, "--shard", f"{index}/2", "--mode", "offset", "--device", "cpu")
        assert status in (0, 1), err
        summary = json.loads((tmp_path / f"summary.shard-{index}-of-2.json").read_text())
        assert summary["shard"] == f"{index}/2"
        seen += [Path(row["shot"]).name for row in summary["shots"]]
    assert sorted(seen) == sorted(p.name for p in takes.iterdir() if p.suffix == ".mp4")
    assert not (tmp_path / "summary.json").exists()


def test_folders_give_each_take_once_and_never_hidden_files_outputs_or_subfolders_unasked(tmp_path: Path) -> None:
    takes = tmp_path / "takes"
    (takes / "day2" / ".hidden").mkdir(parents=True)
    for name in ("a.mp4", "._a.mp4", ".b.mp4", "a.synced.mp4", "c.MOV", "day2/d.mp4", "day2/.hidden/e.mp4", "day2/._d.mp4"):
        (takes / name).write_bytes(b"")
    (takes / "link.mp4").symlink_to(takes / "c.MOV")
    (takes / "synced").mkdir()  # the output folder, inside the takes' folder
    (takes / "synced" / "z.mp4").write_bytes(b"")
    found = collect_shots([takes, takes / "a.mp4"], out_dir=takes / "synced")
    assert [path.name for path in found.paths] == ["a.mp4", "c.MOV"]
    assert found.notes == [f"{takes}: 1 subfolder not read (day2); --recursive reads them",
                           f"{takes / 'link.mp4'}: given twice (also as {takes / 'c.MOV'}); aligned once",
                           f"{takes / 'a.mp4'}: given twice (also as {takes / 'a.mp4'}); aligned once"]  # fmt: skip
    deep = collect_shots([takes], recursive=True, out_dir=takes / "synced")
    assert [path.relative_to(takes).as_posix() for path in deep.paths] == ["a.mp4", "c.MOV", "day2/d.mp4"]
    (takes / "day2" / "d.mp4").unlink()
    with pytest.raises(AvsyncError, match=r"no video files .* add --recursive"):
        collect_shots([tmp_path])  # a folder whose videos are all in a subfolder


def test_a_rerun_skips_current_takes_and_redoes_the_rest(capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:
    takes, master = shoot
    out = tmp_path / "out"
    both = (takes / "take_a.mp4", takes / "take_b.mp4")
    status, stdout, err = run_cli(capsys, *both, master, "--out-dir", out, "--mode", "offset", "--timeline", out / "cut.otio",
                                  "--device", "cpu")  # fmt: skip
    assert status == 0, err
    reports = {name: (out / f"{name}.json").read_bytes() for name in ("take_a", "take_b")}
    assert json.loads(reports["take_a"])["batch"]["status"] == "placed"
    # Again, the same take given twice: nothing is aligned, every file is kept, the timeline is written again.
    status, stdout, err = run_cli(capsys, *both, takes / "take_a.mp4", master, "--out-dir", out, "--mode", "offset",
                                  "--timeline", out / "cut.otio", "--device", "cpu")  # fmt: skip
    assert status == 0, err
    assert "given twice" in stdout and "skipped 2 of 2 shots whose reports are current" in stdout
    assert {name: (out / f"{name}.json").read_bytes() for name in reports} == reports
    assert json.loads((out / "summary.json").read_text())["counts"]["placed"] == 2
    # Another mode changes the outputs: both are redone, replacing what avsync wrote (no --force needed).
    status, stdout, err = run_cli(capsys, *both, master, "--out-dir", out, "--mode", "warp", "--device", "cpu")
    assert status == 0, err
    assert "skipped" not in stdout and json.loads((out / "take_a.json").read_text())["batch"]["key"]["options"]["mode"] == "warp"
    # A file avsync did not write is never replaced without --force.
    (out / "take_b.json").unlink()
    (out / "take_b.png").write_text("the editor's own")
    (out / "summary.json").write_text("{}")  # no list of what was written: nothing is known to be avsync's
    status, stdout, err = run_cli(capsys, *both, master, "--out-dir", out, "--mode", "warp", "--device", "cpu")
    assert_one_line_error(status, err, "take_b.png", "file exists (use --force to replace it)")


def test_a_forced_run_with_fewer_takes_removes_only_what_the_earlier_run_wrote_for_the_others(
        capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:  # fmt: skip
    takes, master = shoot
    out = tmp_path / "out"
    status, _, err = run_cli(capsys, takes / "take_a.mp4", takes / "other_song.mp4", master, "--out-dir", out, "--mode", "offset",
                             "--timeline", out / "cut.edl", "--device", "cpu")  # fmt: skip
    assert status == 0, err
    (out / "notes.txt").write_text("the editor's own")
    status, stdout, err = run_cli(capsys, takes / "take_a.mp4", master, "--out-dir", out, "--mode", "offset", "--force", "--device", "cpu")
    assert status == 0, err
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt", "summary.csv", "summary.json", "summary.png", "take_a.json",
                                                           "take_a.png"]  # fmt: skip
    assert f"removed {out / 'other_song.json'} (an earlier run's for a take no longer given)" in stdout
    assert f"removed {out / 'cut.edl'} (an earlier run's timeline, not written again)" in stdout


def test_one_take_synced_alone_covers_only_its_part_of_the_master(capsys, tmp_path: Path, shoot: tuple[Path, Path]) -> None:
    takes, master = shoot
    out, report = tmp_path / "take_a.synced.mp4", tmp_path / "take_a.json"
    status, stdout, err = run_cli(capsys, takes / "take_a.mp4", master, "-o", out, "--report", report, "--device", "cpu", "--quiet")
    assert status == 0, err
    written = json.loads(report.read_text())
    assert written["offset_frames"] == pytest.approx(-25 * TAKE_A_AT, abs=1) and written["retimed_fraction"] == 0.0
    # the take's 10 s at their place in the master, not the whole master with its first and last frames held
    assert written["output_start_s"] == pytest.approx(TAKE_A_AT, abs=0.041)
    assert written["output_duration_s"] == pytest.approx(SHOT_SECONDS, abs=0.081)
    assert media.probe(out).duration == pytest.approx(SHOT_SECONDS, abs=0.1)
    assert not any("held outside" in warning for warning in written["warnings"])
