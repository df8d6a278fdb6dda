"""The evaluation harness on files: real-protocol warps, cases encoded once, scores, intervals, and
the same answer as `avsync align` on the same files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import identity_map

from avsync.align.timemap import constant_time_map
from avsync.evaluation.harness import (
    REAL_KINDS,
    BaselineMethod,
    CaseResult,
    ConstantMethod,
    EvalReport,
    ModelMethod,
    compose,
    draw_warp,
    format_markdown,
    make_file_cases,
    run_evaluation,
    speaker_interval,
)
from avsync.evaluation.metrics import frame_errors
from avsync.evaluation.speakers import speaker_groups
from avsync.evaluation.warp import make_warp


@pytest.mark.parametrize("kind", REAL_KINDS)
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


def _result(kind: str, method: str, acc: float, within1: float, speaker: str = "s") -> CaseResult:
    return CaseResult("c", kind, method, "c", speaker, 0.0, 0.0, 0.0, acc, 1.0, "reliable", 0.0, 0.0, within1, 0.0)


def test_summary_per_kind_and_markdown_with_speaker_intervals() -> None:
    results = [_result("shift", "m", 1.0, 0.9, "a"), _result("shift", "m", 0.0, 0.5, "b"), _result("tempo", "m", 1.0, 0.2, "a"),
               _result("cutfreeze", "m", 0.0, 0.4, "b"), _result("shift", "constant", 1.0, 1.0)]
    report = EvalReport(results)
    table = report.summary()
    assert list(table) == ["m", "constant"]
    assert table["m"]["offset_acc_shift"] == pytest.approx(0.5)
    assert table["m"]["offset_acc"] == pytest.approx(0.5)
    assert table["m"]["within1_shift"] == pytest.approx(0.7)
    assert table["m"]["within1_all"] == pytest.approx(0.5)
    assert table["m"]["cases"] == 4
    assert "within1_tempo" not in table["constant"]
    low, high = speaker_interval(results[:4], "offset_acc", kind="shift")
    assert (low, high) == (0.0, 1.0)  # speaker a is always right, b always wrong
    assert speaker_interval(results[:1], "within1") == pytest.approx((0.9, 0.9))
    assert all(math.isnan(v) for v in speaker_interval([], "within1"))
    markdown = format_markdown(report)
    assert "| m | 4 | 50% (0-100) | 70% (50-90) | 20% (20-20) | 40% (40-40) | 50% (" in markdown
    assert ">= 95%" in markdown and ">= 85%" in markdown


@pytest.mark.slow
def test_real_protocol_on_a_synthetic_song_and_align_gives_the_same_answer(tmp_path: Path, make_av_file, capsys) -> None:
    """Warp a synthetic song with the real protocol, score every method, then check that `avsync align`
    on a case's files finds exactly the offset and time map the evaluation found."""
    import torch

    from avsync.cli import main
    from avsync.features.cache import FeatureCache
    from avsync.features.manifest import read_manifest
    from avsync.models import TwoTower
    from avsync.synth.dataset import write_dataset
    from avsync.training.lit_module import LitAVSync

    torch.manual_seed(0)
    write_dataset(tmp_path / "data", songs=1, seconds=210 / 25, seed=8, distractors=0.0, workers=1, progress=False)
    records = read_manifest(tmp_path / "data")
    cache = FeatureCache(tmp_path / "cache")
    cases = make_file_cases(records, cache, tmp_path / "cases", protocol="real", seeds=(0,))
    assert [case.kind for case in cases] == list(REAL_KINDS)
    assert all(case.video.is_file() and case.video.with_suffix(".truth.json").is_file() for case in cases)
    written = [case.video.stat().st_mtime_ns for case in cases]
    again = make_file_cases(records, cache, tmp_path / "cases", protocol="real", seeds=(0,))
    assert [case.video for case in again] == [case.video for case in cases]
    assert [case.video.stat().st_mtime_ns for case in cases] == written  # kept, not re-encoded

    network = TwoTower(embed_dim=16, frame_dim=8, temporal_dim=8, audio_channels=8).eval()
    report = run_evaluation([ModelMethod(network, name="untrained"), BaselineMethod(), ConstantMethod()], cases, cache=cache,
                            progress=False)
    assert [(r.kind, r.method) for r in report.results] == [(k, m) for k in REAL_KINDS for m in ("untrained", "baseline", "constant")]
    constant = [r for r in report.results if r.method == "constant"]
    assert all(r.offset_acc == 1.0 for r in constant)
    assert constant[0].within1 >= 0.95  # the shift case
    baseline_shift = next(r for r in report.results if r.method == "baseline" and r.kind == "shift")
    assert baseline_shift.offset_acc == 1.0  # synthetic lips follow the vocal closely
    assert all(0.0 <= r.within1 <= 1.0 and r.frame_err_mean >= 0.0 for r in report.results)

    # `avsync align` on the tempo case's files, with the same network as a checkpoint
    checkpoint = tmp_path / "untrained.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in network.state_dict().items()},
                "hyper_parameters": {"model": {"class_path": "avsync.models.two_tower.TwoTower",
                                               "init_args": {"embed_dim": 16, "frame_dim": 8, "temporal_dim": 8, "audio_channels": 8}}}},
               checkpoint)  # fmt: skip
    assert LitAVSync  # the checkpoint layout is LitAVSync's (model.* weights + the model description)
    tempo_case = cases[1]
    found = next(r for r in report.results if r.case == tempo_case.name and r.method == "untrained")
    out = tmp_path / "report.json"
    assert main(["align", str(tempo_case.video), str(tempo_case.reference), "--checkpoint", str(checkpoint),
                 "--report", str(out), "--quiet"]) == 0
    capsys.readouterr()
    aligned = json.loads(out.read_text())
    assert aligned["offset_s"] == pytest.approx(round(found.offset_found / 25.0, 4))
    assert aligned["time_map"] == found.time_map.to_list()

    # an audited clip whose picture is 3 frames late: training pairs and truths are corrected
    from dataclasses import replace

    from avsync.features.cache import load_clip

    late = replace(records[0], av_offset=3)
    plain, corrected = load_clip(records[0], cache), load_clip(late, cache)
    assert np.array_equal(corrected.mouth_crops, plain.mouth_crops[3 : 3 + len(corrected)])
    assert np.array_equal(corrected.log_mel, plain.log_mel[:, : 4 * len(corrected)])
    assert np.array_equal(corrected.landmarks, plain.landmarks[3 : 3 + len(corrected)], equal_nan=True)
    late_cases = make_file_cases([late], cache, tmp_path / "cases", protocol="real", seeds=(0,))
    assert [c.video for c in late_cases] == [c.video for c in cases]  # the same warped files
    score_case = run_evaluation([ConstantMethod()], late_cases[:1], cache=cache, progress=False).results[0]
    assert score_case.offset_true == cases[0].frame_map.true_offset_frames + 3 and score_case.within1 >= 0.95

    faceless = make_av_file("faceless.mp4", seconds=2.0)
    groups = speaker_groups([records[0].video, records[0].video, faceless])
    assert groups[0] == groups[1] != groups[2]
