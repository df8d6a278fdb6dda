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
