"""Issue-7 evaluation (avsync.evaluation.realeval): warps, scores, table, and a whole run on a synthetic clip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import identity_map

from avsync.evaluation.metrics import frame_errors
from avsync.evaluation.realeval import (
    KINDS,
    MIN_CLIP_FRAMES,
    CaseScore,
    compose,
    draw_warp,
    format_markdown,
    main,
    make_cases,
    run,
    speaker_groups,
    summarise,
)
from avsync.evaluation.warp import make_warp
from avsync.models.checkpoints import LoadedModel
from avsync.pipeline.retime import constant_time_map


@pytest.mark.parametrize("kind", KINDS)
def test_draw_warp_is_deterministic_monotone_and_in_range(kind: str) -> None:
    first, again, other = draw_warp(kind, 300, 7), draw_warp(kind, 300, 7), draw_warp(kind, 300, 8)
    assert first.kind == kind
    assert np.array_equal(first.src_index, again.src_index)
    assert not np.array_equal(first.src_index, other.src_index)
    assert np.all(np.diff(first.src_index) >= 0)
    assert first.src_index.min() >= 0 and first.src_index.max() < 300
    assert "shift" in first.params and 1 <= abs(first.params["shift"]) <= 15


def test_cutfreeze_has_a_cut_a_freeze_and_a_shift() -> None:
    warp = draw_warp("cutfreeze", 250, 3)
    steps = np.diff(warp.src_index)
    assert steps.max() >= 11  # the cut skips 10-50 frames
    repeats = np.diff(np.flatnonzero(np.r_[True, steps != 0, True])).max()
    assert repeats >= 11  # the freeze holds one frame 10-40 extra frames
    assert {"cut_frames", "freeze_frames", "shift"} <= set(warp.params)


def test_tempo_drifts_between_0_9_and_1_1() -> None:
    warp = draw_warp("tempo", 400, 5)
    rate = warp.params["rate"]
    assert 0.9 <= rate <= 1.1 and abs(rate - 1.0) >= 0.03
    middle = warp.src_index[100:300]
    assert np.polyfit(np.arange(len(middle)), middle, 1)[0] == pytest.approx(rate, abs=0.01)


def test_compose_follows_both_maps_and_checks_lengths() -> None:
    shift = make_warp("shift", 200, 1)
    composed = compose(identity_map(200), shift, "shift")
    assert np.array_equal(composed.src_index, shift.src_index)
    with pytest.raises(ValueError, match="expects"):
        compose(identity_map(150), shift, "shift")


def offset_only_map(frame_map):
    """The perfect constant-offset aligner's time map of a warp (as `score_constant` builds it)."""
    return constant_time_map(frame_map.true_offset_frames / 25.0, (len(frame_map) - 1) / 25.0, 25.0)


def test_constant_time_map_is_exact_on_a_shift_and_not_on_a_tempo_drift() -> None:
    shift = draw_warp("shift", 300, 2)
    assert frame_errors(offset_only_map(shift), shift.src_index).within1 >= 0.95
    tempo = draw_warp("tempo", 300, 2)
    assert frame_errors(offset_only_map(tempo), tempo.src_index).within1 < 0.5


def _score(kind: str, method: str, acc: float, within1: float) -> CaseScore:
    return CaseScore("c", kind, method, 0.0, 0.0, 0.0, acc, 1.0, within1)


def test_summary_per_kind_and_markdown() -> None:
    scores = [_score("shift", "m", 1.0, 0.9), _score("shift", "m", 0.0, 0.5), _score("tempo", "m", 1.0, 0.2),
              _score("cutfreeze", "m", 0.0, 0.4), _score("shift", "constant", 1.0, 1.0)]
    table = summarise(scores)
    assert list(table) == ["m", "constant"]
    assert table["m"]["offset_acc_shift"] == pytest.approx(0.5)
    assert table["m"]["offset_acc_all"] == pytest.approx(0.5)
    assert table["m"]["within1_shift"] == pytest.approx(0.7)
    assert table["m"]["within1_all"] == pytest.approx(0.5)
    assert table["m"]["cases"] == 4
    assert math.isnan(table["constant"]["within1_tempo"])
    markdown = format_markdown(table)
    assert "| m | 4 | 50% | 70% | 20% | 40% | 50% |" in markdown
    assert ">= 95%" in markdown and ">= 85%" in markdown


def test_main_reports_user_mistakes_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main([str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--model", "no-equals-sign"])
    assert "NAME=PATH" in capsys.readouterr().err


@pytest.mark.slow
def test_whole_evaluation_on_a_synthetic_song(tmp_path: Path, make_av_file) -> None:
    """Warp a synthetic song, align every case with an untrained model and the baselines, score."""
    import torch

    from avsync.features.cache import FeatureCache
    from avsync.features.manifest import read_manifest
    from avsync.models import TwoTower
    from avsync.synth.dataset import write_dataset

    torch.manual_seed(0)
    write_dataset(tmp_path / "data", songs=1, seconds=(MIN_CLIP_FRAMES + 10) / 25, seed=8, distractors=0.0, workers=1, progress=False)
    records = read_manifest(tmp_path / "data")
    cache = FeatureCache(tmp_path / "cache")
    cases = make_cases(records, cache, tmp_path / "cases", seeds=(0,), progress=False)
    assert [case.kind for case in cases] == list(KINDS)
    assert all(case.video.is_file() and case.video.with_suffix(".truth.json").is_file() for case in cases)
    written = [case.video.stat().st_mtime_ns for case in cases]
    make_cases(records, cache, tmp_path / "cases", seeds=(0,), progress=False)
    assert [case.video.stat().st_mtime_ns for case in cases] == written  # kept, not rewritten

    model = LoadedModel(TwoTower(embed_dim=16, frame_dim=8, temporal_dim=8, audio_channels=8).eval(), Path("untrained"), torch.device("cpu"))
    scores = run(cases, {"untrained": model}, tmp_path / "cache", progress=False)
    assert [(s.kind, s.method) for s in scores] == [(k, m) for k in KINDS for m in ("untrained", "classical", "constant")]
    constant = [s for s in scores if s.method == "constant"]
    assert all(s.offset_acc == 1.0 for s in constant)
    assert constant[0].within1 >= 0.95  # the shift case
    classical_shift = next(s for s in scores if s.method == "classical" and s.kind == "shift")
    assert classical_shift.offset_acc == 1.0  # synthetic lips follow the vocal closely
    assert all(0.0 <= s.within1 <= 1.0 and s.frame_err_mean >= 0.0 for s in scores)

    faceless = make_av_file("faceless.mp4", seconds=2.0)
    groups = speaker_groups([records[0].video, records[0].video, faceless])
    assert groups[0] == groups[1] != groups[2]
