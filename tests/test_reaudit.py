"""Truths from witnesses that do not share a fault (avsync.evaluation.reaudit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsync.errors import AvsyncError
from avsync.evaluation.reaudit import Reaudit, apply_truths, decide, main, out_of_fold_checkpoints, reaudit, table
from avsync.features.manifest import ClipRecord, base_id, read_manifest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize(
    ("synced", "audit", "verdict", "reference", "witness", "expected"),
    [
        (True, 0, "off", -3.0, (-3.0, 5.0), ("dataset", 0)),  # the dataset's sync wins over any witness
        (False, -5, "in sync", 0.4, (0.0, 2.0), ("two witnesses", 0)),  # in sync: 0, whatever the audit said
        (False, 0, "off", 1.12, (1.0, 3.6), ("two witnesses", 1)),
        (False, 0, "off", 1.12, (1.0, 0.7), ("unverified", 0)),  # a witness too unsure to count
        (False, 0, "off", -2.6, (-1.0, 6.0), ("unverified", 0)),  # answer -3 against -1: no agreement, the audit kept
        (False, -2, "off", -2.23, (-3.0, 1.5), ("two witnesses", -2)),  # within a frame of the answer
        (False, -6, "undecided", None, (-6.0, 4.0), ("unverified", -6)),
        (False, 2, "off", 2.3, (None, None), ("unverified", 2)),  # too short for the model
    ],
)
def test_decide_follows_the_rule(synced, audit, verdict, reference, witness, expected) -> None:
    assert decide(synced, audit, verdict, reference, *witness) == expected


def _row(clip: str, audit: int, truth_by: str, av_offset: int) -> Reaudit:
    return Reaudit(clip, "MEAD", audit, "off", 1.1, 1.0, 4.0, "runs/f0/last.ckpt", truth_by, av_offset)


def test_apply_writes_every_listing_of_a_clip_and_leaves_other_lines(tmp_path: Path) -> None:
    (tmp_path / "folds").mkdir()
    first = tmp_path / "clips.jsonl"
    first.write_text('{"id": "m/a", "video": "a.mp4", "split": "train", "av_offset": -5, "note": "audited"}\n'
                     '# a comment\n{"id": "m/b", "video": "b.mp4", "split": "train", "av_offset": 2, "note": "audited"}\n'
                     '{"id": "other", "video": "o.mp4", "split": "test"}\n')  # fmt: skip
    fold = tmp_path / "folds" / "fold0.jsonl"
    fold.write_text('{"id": "m/a#val", "video": "../a.mp4", "split": "val", "av_offset": -5}\n')
    untouched = tmp_path / "synth.jsonl"
    untouched.write_text('{"id": "song", "video": "s.mp4", "split": "train"}\n')
    rows = [_row("m/a", -5, "two witnesses", 1), _row("m/b", 2, "unverified", 2)]
    assert apply_truths(rows, tmp_path) == [first, fold]
    a, b, other = read_manifest(first)
    assert (a.av_offset, a.truth_by) == (1, "two witnesses") and "the audit had -5" in a.note
    assert (b.av_offset, b.truth_by, b.note) == (2, "unverified", "audited")
    assert (other.av_offset, other.truth_by) == (0, None) and "# a comment" in first.read_text()
    assert (read_manifest(fold)[0].av_offset, read_manifest(fold)[0].truth_by) == (1, "two witnesses")
    assert apply_truths(rows, tmp_path) == []  # idempotent
    assert untouched.read_text() == '{"id": "song", "video": "s.mp4", "split": "train"}\n'


def test_a_truth_moved_to_zero_drops_the_offset(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "x", "video": "x.mp4", "split": "train", "av_offset": -5}\n')
    apply_truths([_row("x", -5, "two witnesses", 0)], tmp_path)
    assert "av_offset" not in json.loads(manifest.read_text()) and read_manifest(manifest)[0].truth_by == "two witnesses"


def test_out_of_fold_models_are_those_that_held_the_speaker_out(tmp_path: Path) -> None:
    for k, run in ((0, "old"), (0, "new"), (1, "only")):
        ckpt = tmp_path / f"fold{k}" / run / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_text(run)
    import os

    os.utime(tmp_path / "fold0" / "old" / "checkpoints" / "last.ckpt", (1, 1))  # older than "new"
    records = [ClipRecord("a", tmp_path / "a.mp4", None, "test", speaker="s1"), ClipRecord("b", tmp_path / "b.mp4", None, "test", speaker="s2")]
    found = out_of_fold_checkpoints(records, [["s1"], ["s2"]], str(tmp_path / "fold{k}"))
    assert found == {"a": tmp_path / "fold0" / "new" / "checkpoints" / "last.ckpt", "b": tmp_path / "fold1" / "only" / "checkpoints" / "last.ckpt"}
    with pytest.raises(AvsyncError, match="speaker 's2' is in no fold"):
        out_of_fold_checkpoints(records, [["s1"]], str(tmp_path / "fold{k}"))
    with pytest.raises(AvsyncError, match="fold2"):
        out_of_fold_checkpoints(records[:1], [[], [], ["s1"]], str(tmp_path / "fold{k}"))


def test_reaudit_rows_and_table_count_each_way() -> None:
    records = [ClipRecord("g", Path("g.mpg"), None, "test"), ClipRecord("m", Path("m.mp4"), None, "test", av_offset=-2),
               ClipRecord("v", Path("v.mp4"), None, "test")]  # fmt: skip
    reference = {"g": {"dataset": "GRID", "synced_by_dataset": True, "verdict": "undecided", "offset_frames": None},
                 "m": {"dataset": "MEAD", "synced_by_dataset": False, "verdict": "off", "offset_frames": -2.2},
                 "v": {"dataset": "VoxCeleb2", "synced_by_dataset": False, "verdict": "off", "offset_frames": 3.3}}  # fmt: skip
    rows = reaudit(records, reference, {}, {"m": (-2.0, 3.0), "v": (0.0, 4.0)})
    assert [(r.truth_by, r.av_offset) for r in rows] == [("dataset", 0), ("two witnesses", -2), ("unverified", 0)]
    text = table(rows)
    assert "| m | MEAD | -2 | -2.20 (off) | -2 (3.0) | -2 (two witnesses) | same |" in text
    assert "dataset: 1 clips" in text and "clips the audit had moved: 1; confirmed by two witnesses: 1" in text
    with pytest.raises(AvsyncError, match="clip x is not in the reference's results"):
        reaudit([ClipRecord("x", Path("x.mp4"), None, "test")], reference, {}, {})


def test_missing_reference_results_are_one_line(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "x", "video": "x.mp4", "split": "train"}\n')
    assert main(["--manifest", str(manifest), "--check", str(tmp_path / "none.json"), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avsync: error: cannot read") and "make check-real" in err and "\n" not in err
    assert not (tmp_path / "r.json").exists()


def test_every_committed_manifest_agrees_with_real_clips_on_each_truth() -> None:
    """A clip's offset and how it was set are the same in every manifest that lists it."""
    truths = {r.id: (r.av_offset, r.truth_by) for r in read_manifest(EXPERIMENTS / "real_clips.jsonl")}
    assert all(truth_by is not None for _, truth_by in truths.values())
    checked = 0
    for manifest in sorted(EXPERIMENTS.rglob("*.jsonl")):
        for line in manifest.read_text().splitlines():
            entry = json.loads(line) if line.strip() and not line.startswith("#") else {}
            clip = base_id(str(entry.get("id", "")))
            if clip in truths:
                assert (entry.get("av_offset", 0), entry.get("truth_by")) == truths[clip], f"{manifest}: {entry['id']}"
                checked += 1
    assert checked > 3 * len(truths)
