"""Manifests: the JSONL format, and the readers for synthetic, URSing-layout and plain video folders."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from avsync.errors import AvsyncError
from avsync.features.manifest import (
    ClipRecord,
    rank_split,
    read_jsonl,
    read_manifest,
    write_manifest,
)

REALAV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realav"  # ../shared beside the repository


def touch(path: Path) -> Path:
    """Create an empty file (the readers never open media files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_ursing(root: Path, songs: int, vocal: bool = True) -> list[str]:
    """Song folders with Mix.wav, a video and (optionally) the stems; returns the song ids."""
    ids = [f"song{index:02d}" for index in range(songs)]
    for song in ids:
        touch(root / song / "Mix.wav")
        touch(root / song / f"{song}.mp4")
        if vocal:
            touch(root / song / "Vocal.wav")
            touch(root / song / "Accompaniment.wav")
    return ids


def test_jsonl_round_trip_keeps_every_field_with_relative_paths(tmp_path: Path) -> None:
    records = [
        ClipRecord("a", tmp_path / "a" / "Video.mp4", None, "train", vocal=tmp_path / "a" / "Vocal.wav", accompaniment=tmp_path / "a" / "Acc.wav", truth=tmp_path / "a" / "truth.json", speaker="s1"),
        ClipRecord("b", tmp_path / "b.mp4", tmp_path / "music" / "b.wav", "test"),
        ClipRecord("c", tmp_path / "c.mp4", None, "val", av_offset=-2, note="moved", truth_by="two witnesses"),
    ]
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(records, manifest)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert lines[0]["video"] == "a/Video.mp4" and lines[0]["audio"] is None and lines[1]["audio"] == "music/b.wav"
    assert read_jsonl(manifest) == records
    # Read from another working folder: paths stay relative to the manifest.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "m.jsonl").write_text("# a comment\n\n" + manifest.read_text())
    assert [r.video for r in read_jsonl(moved / "m.jsonl")] == [moved / "a" / "Video.mp4", moved / "b.mp4", moved / "c.mp4"]


def test_reference_audio_prefers_the_vocal_then_the_mix_then_the_video(tmp_path: Path) -> None:
    video, mix, vocal = tmp_path / "v.mp4", tmp_path / "mix.wav", tmp_path / "vocal.wav"
    assert ClipRecord("x", video, mix, "train", vocal=vocal).reference_audio == vocal
    assert ClipRecord("x", video, mix, "train").reference_audio == mix
    assert ClipRecord("x", video, None, "train").reference_audio == video


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "video": "a.mp4", "split": "train"}\n{"id": "b", "video": "b.mp4"\n', "line 2: not valid JSON"),
        ('["a", "a.mp4"]\n', "line 1: expected a JSON object"),
        ('{"id": "a", "split": "train"}\n', "line 1: missing video"),
        ('{"id": "a", "video": "a.mp4", "split": "dev"}\n', "line 1: split must be one of train, val, test, got 'dev'"),
        ('{"id": "a", "video": "a.mp4", "split": "train", "truth_by": "audit"}\n', "line 1: truth_by must be one of dataset, two witnesses, unverified"),
        ('{"id": "a", "video": "a.mp4", "split": "train"}\n{"id": "a", "video": "b.mp4", "split": "val"}\n', "line 2: id 'a' appears twice"),
        ("# nothing\n\n", "manifest lists no clips"),
    ],
)
def test_malformed_manifests_are_user_errors_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text(content)
    with pytest.raises(AvsyncError) as error:
        read_manifest(manifest)
    assert message in str(error.value) and str(manifest) in str(error.value)


def test_missing_and_unreadable_manifests_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(AvsyncError, match="manifest or dataset folder not found"):
        read_manifest(tmp_path / "nope.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AvsyncError, match="cannot read manifest"):
        read_manifest(binary)
    with pytest.raises(AvsyncError, match="no video files found"):
        read_manifest(tmp_path)


def test_a_folder_with_manifest_jsonl_is_read_from_it_not_from_its_layout(tmp_path: Path) -> None:
    """The synthetic dataset: URSing-like folders plus the manifest, which carries speakers and stems."""
    make_ursing(tmp_path, 3)
    records = [ClipRecord(f"song{i:02d}", tmp_path / f"song{i:02d}" / f"song{i:02d}.mp4", None, "val", vocal=tmp_path / f"song{i:02d}" / "Vocal.wav", speaker=f"singer{i}") for i in range(3)]
    write_manifest(records, tmp_path / "manifest.jsonl")
    read = read_manifest(tmp_path)
    assert read == records
    assert all(r.audio is None and r.speaker for r in read)


def test_ursing_layout_gets_the_13_3_10_split_and_the_vocal_as_reference(tmp_path: Path) -> None:
    ids = make_ursing(tmp_path, 26)
    records = read_manifest(tmp_path)
    assert [r.id for r in records] == ids
    assert Counter(r.split for r in records) == {"train": 13, "val": 3, "test": 10}
    assert read_manifest(tmp_path) == records  # deterministic
    first = records[0]
    assert first.audio == tmp_path / "song00" / "Mix.wav"
    assert first.vocal == tmp_path / "song00" / "Vocal.wav" and first.reference_audio == first.vocal
    assert first.accompaniment == tmp_path / "song00" / "Accompaniment.wav"
    assert first.video == tmp_path / "song00" / "song00.mp4"


def test_ursing_without_stems_uses_the_mix_and_honours_split_csv(tmp_path: Path) -> None:
    make_ursing(tmp_path, 3, vocal=False)
    (tmp_path / "split.csv").write_text("id,split\nsong00,test\nsong01,test\nsong02,val\n")
    records = read_manifest(tmp_path)
    assert [r.split for r in records] == ["test", "test", "val"]
    assert all(r.vocal is None and r.reference_audio == r.audio for r in records)
    assert records[0].reference_audio.name == "Mix.wav"


@pytest.mark.parametrize(
    ("split_csv", "message"),
    [
        ("id,split\nsong00,train\n", "song 'song01' is not listed"),
        ("song,part\nsong00,train\n", "needs the columns id,split"),
        ("id,split\nsong00,train\nsong01,holdout\n", "split must be one of"),
    ],
)
def test_bad_ursing_split_files_are_user_errors(tmp_path: Path, split_csv: str, message: str) -> None:
    make_ursing(tmp_path, 2)
    (tmp_path / "split.csv").write_text(split_csv)
    with pytest.raises(AvsyncError, match=message):
        read_manifest(tmp_path)


def test_ursing_song_without_a_video_is_a_user_error(tmp_path: Path) -> None:
    make_ursing(tmp_path, 2)
    (tmp_path / "song01" / "song01.mp4").unlink()
    with pytest.raises(AvsyncError, match="has Mix.wav but no video file") as error:
        read_manifest(tmp_path)
    assert "song01" in str(error.value)


def test_plain_video_folder_is_read_recursively_with_own_audio(tmp_path: Path) -> None:
    for name in ("a/one.mp4", "a/two.MOV", "b/deep/three.mkv", "notes.txt", "b/cover.jpg"):
        touch(tmp_path / name)
    records = read_manifest(tmp_path)
    assert [r.id for r in records] == ["a/one", "a/two", "b/deep/three"]
    assert all(r.audio is None and r.reference_audio == r.video for r in records)
    assert [r.speaker for r in records] == ["one", "two", "three"]
    assert all(r.split in ("train", "val", "test") for r in records)
    assert read_manifest(tmp_path) == records


def test_plain_folder_splits_are_80_10_10_by_speaker_from_clips_csv(tmp_path: Path) -> None:
    rows = ["path,speaker,duration_s"]
    for speaker in range(20):
        for take in range(3):
            touch(tmp_path / f"s{speaker}_{take}.mp4")
            rows.append(f"s{speaker}_{take}.mp4,spk{speaker},1.0")
    touch(tmp_path / "unlisted.mp4")  # clips.csv decides which clips belong
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    records = read_manifest(tmp_path)
    assert len(records) == 60 and "unlisted" not in {r.id for r in records}
    by_speaker: dict[str, set[str]] = {}
    for record in records:
        by_speaker.setdefault(record.speaker, set()).add(record.split)
    assert all(len(splits) == 1 for splits in by_speaker.values())  # a speaker never spans splits
    speakers_per_split = Counter(next(iter(splits)) for splits in by_speaker.values())
    assert speakers_per_split == {"train": 16, "val": 2, "test": 2}


def test_clips_csv_split_column_wins_and_missing_files_are_errors(tmp_path: Path) -> None:
    touch(tmp_path / "x.mp4")
    touch(tmp_path / "y.mp4")
    (tmp_path / "clips.csv").write_text("path,split\nx.mp4,test\ny.mp4,\n")
    records = {r.id: r for r in read_manifest(tmp_path)}
    assert records["x"].split == "test"
    assert records["y"].split in ("train", "val", "test")
    (tmp_path / "clips.csv").write_text("path,split\nx.mp4,test\nmissing.mp4,train\n")
    with pytest.raises(AvsyncError, match="lists 'missing.mp4', which does not exist"):
        read_manifest(tmp_path)


def test_rank_split_is_deterministic_and_proportional() -> None:
    names = [f"n{i}" for i in range(100)]
    splits = rank_split(names, (0.8, 0.1))
    assert Counter(splits.values()) == {"train": 80, "val": 10, "test": 10}
    assert rank_split(list(reversed(names)), (0.8, 0.1)) == splits
    # Adding names moves few of the old ones (order by hash, not by position).
    grown = rank_split(names + [f"m{i}" for i in range(10)], (0.8, 0.1))
    assert sum(grown[name] != splits[name] for name in names) < 20


@pytest.mark.skipif(not (REALAV / "clips.csv").is_file(), reason="the shared real clips are not here")
def test_the_shared_real_clips_folder_reads_as_39_clips_with_their_own_audio() -> None:
    records = read_manifest(REALAV)
    assert len(records) == 39
    assert all(r.audio is None and r.video.is_file() for r in records)
    assert {r.id.split("/")[0] for r in records} == {"LipNet", "LivePortrait", "deep_avsr", "pcavs"}
    assert set(Counter(r.split for r in records)) == {"train", "val", "test"}


def test_audited_offset_and_note_are_read_and_written(tmp_path: Path) -> None:
    from avsync.features.manifest import read_jsonl, write_manifest

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "video": "a.mp4", "split": "test", "av_offset": -6, "note": "audio 6 frames late by every cue"}\n'
                        '{"id": "b", "video": "b.mp4", "split": "train"}\n')
    first, second = read_jsonl(manifest)
    assert (first.av_offset, first.note, second.av_offset, second.note) == (-6, "audio 6 frames late by every cue", 0, None)
    write_manifest([first, second], tmp_path / "again.jsonl")
    assert read_jsonl(tmp_path / "again.jsonl")[0].av_offset == -6
    manifest.write_text('{"id": "a", "video": "a.mp4", "split": "test", "av_offset": 1.5}\n')
    with pytest.raises(AvsyncError, match="av_offset must be a whole number"):
        read_jsonl(manifest)
