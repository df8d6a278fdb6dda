"""Speaker folds for cross-validation, and pooling the folds' evaluation results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsync.cli import main
from avsync.errors import AvsyncError
from avsync.evaluation.folds import speaker_folds
from avsync.evaluation.harness import CaseResult
from avsync.features.manifest import ClipRecord


def record(clip_id: str, speaker: str | None) -> ClipRecord:
    return ClipRecord(clip_id, Path(f"/{clip_id}.mp4"), None, "train", speaker=speaker)


def test_speakers_are_dealt_into_balanced_disjoint_folds() -> None:
    records = [record(f"c{i}", f"s{i % 7}") for i in range(14)] + [record("lonely", None)]
    lengths = {f"c{i}": 100 + 10 * i for i in range(14)} | {"lonely": 50}
    folds = speaker_folds(records, lengths, k=3)
    everyone = [speaker for fold in folds for speaker in fold]
    assert sorted(everyone) == sorted({f"s{i}" for i in range(7)} | {"lonely"})  # each speaker once
    load = [sum(lengths[r.id] for r in records if (r.speaker or r.id) in fold) for fold in folds]
    assert max(load) - min(load) <= max(lengths.values()) * 2
    assert folds == speaker_folds(list(reversed(records)), lengths, k=3)  # deterministic
    with pytest.raises(AvsyncError, match="cannot make"):
        speaker_folds(records[:2], lengths, k=3)


def _result(case: str, speaker: str, acc: float) -> dict:
    return CaseResult(case, "shift", "model", case, speaker, 0.0, 0.0, 0.0, acc, 1.0, "reliable", 0.0, 0.0, acc, 0.0).to_dict()


def test_pooling_the_folds_results(tmp_path: Path, capsys) -> None:
    for fold, rows in enumerate(([_result("a", "p", 1.0)], [_result("b", "q", 0.0), _result("c", "q", 1.0)])):
        (tmp_path / f"fold{fold}.json").write_text(json.dumps({"cases": rows}))
    out = tmp_path / "pooled.json"
    assert main(["eval", "--pool", str(tmp_path / "fold0.json"), str(tmp_path / "fold1.json"), "--out", str(out)]) == 0
    pooled = json.loads(out.read_text())
    assert pooled["summary"]["model"]["cases"] == 3 and pooled["summary"]["model"]["offset_acc_shift"] == pytest.approx(2 / 3)
    assert "| model | 3 | 67% (" in out.with_suffix(".md").read_text()
    (tmp_path / "bad.json").write_text("{}")
    assert main(["eval", "--pool", str(tmp_path / "bad.json"), "--out", str(out)]) == 2
    assert "not an avsync eval result" in capsys.readouterr().err


def test_reliability_bins_and_the_threshold_a_reliable_verdict_needs(tmp_path: Path) -> None:
    from avsync.evaluation.calibration import (
        plot_reliability,
        precision_threshold,
        reliability,
    )

    results = [CaseResult(**{**_result(f"c{i}", "p", float(i >= 4)), "confidence": 0.2 * i}) for i in range(10)]
    table = reliability(results, [0.0, 0.5, 1.0])
    assert [(cases, share) for _, _, cases, share in table] == [(3, 0.0), (2, 0.5), (5, 1.0)]
    assert precision_threshold(results, 0.95, min_cases=3) == pytest.approx(0.8)  # c4..c9 are all right
    assert precision_threshold(results[:3], 0.95, min_cases=1) == float("inf")
    png = plot_reliability(results, tmp_path / "r.png", edges=[0.0, 0.5, 1.0], thresholds=[0.5])
    assert png.stat().st_size > 1000


def test_pooling_keeps_apart_the_clips_a_member_never_trained_on(tmp_path: Path, capsys) -> None:
    rows = [_result("a", "p", 1.0), _result("b", "q", 0.0), _result("c", "r", 1.0)]
    (tmp_path / "fold0.json").write_text(json.dumps({"cases": rows}))
    seen_by = tmp_path / "member.jsonl"
    seen_by.write_text(json.dumps({"id": "b", "split": "train"}) + "\n" + json.dumps({"id": "c", "split": "test"}) + "\n")
    out = tmp_path / "pooled.json"
    assert main(["eval", "--pool", str(tmp_path / "fold0.json"), "--out", str(out), "--unseen-by", str(seen_by)]) == 0
    unseen = json.loads((tmp_path / "pooled_unseen.json").read_text())
    assert [case["clip"] for case in unseen["cases"]] == ["a", "c"]  # b was in the member's train split
    assert unseen["summary"]["model"]["offset_acc_shift"] == 1.0
    assert "2 results of 2 cases whose clip is in no train split" in capsys.readouterr().out
    assert main(["eval", "--pool", str(tmp_path / "fold0.json"), "--out", str(out), "--unseen-by", str(tmp_path / "none.jsonl")]) == 2


def test_wilson_interval_of_a_share() -> None:
    from avsync.evaluation.metrics import wilson_interval

    low, high = wilson_interval(23, 24)
    assert (round(100 * low), round(100 * high)) == (80, 99)  # the README's old "23 of 24": 80-99 %
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_pooled_summary_to_commit_has_counts_intervals_and_the_reliable_share(tmp_path: Path, capsys) -> None:
    def case(name: str, speaker: str, acc: float, confidence: float, method: str = "model") -> dict:
        return {**_result(name, speaker, acc), "confidence": confidence, "method": method}

    (tmp_path / "fold0.json").write_text(json.dumps({"cases": [case("a", "p", 1.0, 4.0), case("b", "q", 0.0, 3.5),
                                                               case("a", "p", 1.0, 0.0, "constant")]}))
    (tmp_path / "fold1.json").write_text(json.dumps({"cases": [case("c", "r", 1.0, 5.0), case("d", "s", 1.0, 1.0)]}))
    seen_by = tmp_path / "member.jsonl"
    seen_by.write_text(json.dumps({"id": "b", "split": "train"}) + "\n")
    summary = tmp_path / "committed" / "folds.json"
    argv = ["eval", "--pool", str(tmp_path / "fold0.json"), str(tmp_path / "fold1.json"), "--out", str(tmp_path / "pooled.json")]
    assert main([*argv, "--unseen-by", str(seen_by), "--summary", str(summary)]) == 0
    out = capsys.readouterr().out
    assert '"reliable" (confidence > 3.2): 3 of 4 cases (75%), offset within +-1 frame on 2 of them (67%, 95% Wilson interval 21-94%)' in out
    assert '"reliable" (confidence > 3.2): 2 of 3 cases (67%), offset within +-1 frame on 2 of them (100%' in out  # b left out
    record = json.loads(summary.read_text())
    pooled = record["all"]["pooled"]["model"]
    assert (pooled["cases"], pooled["speakers"], pooled["offset_acc_shift"]) == (4, 4, 0.75)
    assert len(pooled["offset_acc_shift_interval"]) == 2
    assert pooled["reliable"]["reliable"] == 3 and pooled["reliable"]["right"] == 2
    assert record["all"]["runs"][str(tmp_path / "fold1.json")]["model"]["cases"] == 2
    assert record["unseen"]["pooled"]["model"]["cases"] == 3 and record["unseen"]["clips"] == ["a", "c", "d"]
    assert record["all"]["pooled"]["constant"]["cases"] == 1 and "reliable" not in record["all"]["pooled"]["constant"]
    assert "per_frame" not in summary.read_text() and summary.stat().st_size < 10_000
    assert main([*argv[:3], "--out", str(tmp_path / "x.json"), "--summary", str(tmp_path / "s.txt")]) == 2
    assert main(["eval", "--data", str(tmp_path), "--summary", str(tmp_path / "s.json")]) == 2
    assert "--summary needs --pool" in capsys.readouterr().err


def test_pooled_scores_per_way_the_truth_was_set(tmp_path: Path, capsys) -> None:
    (tmp_path / "clips.csv").write_text("path,duration_s,origin_dataset\na.mp4,5,GRID\nb.mp4,5,MEAD\nc.mp4,5,LRS2 (BBC)\n")
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("".join(json.dumps({"id": i, "video": f"{i}.mp4", "split": "train", **extra}) + "\n"
                                for i, extra in (("a", {}), ("b", {"av_offset": -2, "truth_by": "two witnesses"}), ("c", {}),
                                                 ("d", {"av_offset": 1}))))  # fmt: skip
    rows = [_result("a", "p", 1.0), _result("b", "q", 0.0), _result("c", "r", 1.0), _result("d", "s", 0.0), _result("x", "t", 1.0)]
    (tmp_path / "fold0.json").write_text(json.dumps({"cases": rows}))
    summary = tmp_path / "summary.json"
    assert main(["eval", "--pool", str(tmp_path / "fold0.json"), "--out", str(tmp_path / "pooled.json"),
                 "--truths", str(manifest), "--summary", str(summary)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "truth by dataset: 2 clips, 2 cases; offset within +-1 frame on 2 of 2 shifts" in out
    assert "truth by two witnesses: 1 clips, 1 cases; offset within +-1 frame on 0 of 1 shifts" in out
    assert "truth by unverified: 1 clips, 1 cases" in out  # d: no truth_by, not dataset-synced; x is in no manifest: in no group
    by_truth = json.loads(summary.read_text())["all"]["by_truth"]
    assert {kind: entry["model"]["cases"] for kind, entry in by_truth.items()} == {"dataset": 2, "two witnesses": 1, "unverified": 1}
    assert main(["eval", "--data", str(tmp_path), "--truths", str(manifest)]) == 2
