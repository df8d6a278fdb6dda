"""The `avsync align` report: schema, JSON file, human summary."""

from __future__ import annotations

import json

import pytest

from avsync.pipeline.report import (
    CONFIDENCE_RELIABLE,
    CONFIDENCE_UNCERTAIN,
    SyncReport,
    confidence_level,
    describe_offset,
    summarise,
    to_json,
)

SCHEMA_FIELDS = (
    "video", "reference", "fps", "offset_s", "confidence", "time_map", "dtw_cost",
    "frames_without_face", "unreliable_spans", "warnings", "model", "runtime_s",
)  # fmt: skip


def make_report(**changes) -> SyncReport:
    fields = dict(
        video="in/video.mp4",
        reference="in/music.wav",
        fps=25.0,
        offset_s=0.28,
        offset_frames=7,
        confidence=8.1,
        confidence_level=confidence_level(8.1),
        time_map=[[-0.28, 0.0], [9.72, 10.0]],
        retimed_fraction=0.12,
        dtw_cost=-2.5,
        frames_without_face=13,
        unreliable_spans=[[2.0, 3.04, "no face"], [5.0, 6.5, "lips do not follow the vocal"]],
        warnings=["the video is longer than the music"],
        model={"checkpoint": "runs/x.ckpt", "network": "TwoTower"},
        runtime_s=1.5,
    )
    fields.update(changes)
    return SyncReport(**fields)


@pytest.mark.parametrize(
    ("offset_s", "fps", "expected"),
    [
        (0.28, 25.0, "offset: +0.28 s (+7 frames): the video is 0.28 s late"),
        (-0.5, 30.0, "offset: -0.50 s (-15 frames): the video is 0.50 s early"),
        (0.0, 25.0, "offset: +0.00 s (+0 frames): the video is in sync"),
        (0.01, 25.0, "offset: +0.01 s (+0 frames): the video is in sync"),
    ],
)
def test_describe_offset(offset_s: float, fps: float, expected: str) -> None:
    assert describe_offset(offset_s, fps) == expected


def test_confidence_levels_follow_the_thresholds() -> None:
    assert confidence_level(CONFIDENCE_RELIABLE + 0.01) == "reliable"
    assert confidence_level(CONFIDENCE_RELIABLE) == "uncertain"
    assert confidence_level(CONFIDENCE_UNCERTAIN) == "uncertain"
    assert confidence_level(CONFIDENCE_UNCERTAIN - 0.01) == "unreliable"
    assert confidence_level(-1.0) == "unreliable"


def test_report_file_has_the_schema_and_round_trips(tmp_path) -> None:
    report = make_report()
    path = tmp_path / "out" / "report.json"
    report.write(path)
    data = json.loads(path.read_text())
    for name in SCHEMA_FIELDS:
        assert name in data, name
    assert data["offset_s"] == 0.28
    assert data["time_map"] == [[-0.28, 0.0], [9.72, 10.0]]
    assert data["unreliable_spans"][1] == [5.0, 6.5, "lips do not follow the vocal"]
    assert SyncReport(**data) == report
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]  # no temporary left


def test_json_keeps_knots_on_one_line_and_stays_valid() -> None:
    data = {"time_map": [[0.0, 0.5], [1.25, 2.0]], "warnings": ["a [b] c"], "model": {"n": [1, 2]}}
    text = to_json(data)
    assert "[0.0, 0.5]" in text and "[1.25, 2.0]" in text
    assert json.loads(text) == data


def test_summary_lines() -> None:
    lines = summarise(make_report(output="out.mp4")).splitlines()
    assert lines[0] == "offset: +0.28 s (+7 frames): the video is 0.28 s late"
    assert lines[1] == f"confidence: 8.10 (reliable; reliable > {CONFIDENCE_RELIABLE:g}, unreliable < {CONFIDENCE_UNCERTAIN:g})"
    assert lines[2] == "re-timed: 12% of frames moved off the constant offset"
    assert "frames without a face: 13" in lines
    assert "unreliable: video 5.00-6.50 s (lips do not follow the vocal), bridged" in lines
    assert "warning: the video is longer than the music" in lines
    assert lines[-1] == "wrote out.mp4"


def test_summary_of_a_clean_analysis_has_no_extra_lines() -> None:
    report = make_report(frames_without_face=0, unreliable_spans=[], warnings=[], retimed_fraction=0.0)
    assert len(summarise(report).splitlines()) == 3


def test_two_faces_are_named_in_a_warning_with_the_followed_one() -> None:
    from types import SimpleNamespace

    import numpy as np

    from avsync.align.timemap import constant_time_map
    from avsync.pipeline.sync import _warnings

    sync = SimpleNamespace(confidence=5.0, weak=np.zeros(100, bool), scored=np.ones(100, bool),
                           time_map=constant_time_map(0.0, 99 / 25, 25.0))
    visual = SimpleNamespace(valid=np.ones(100, bool), fps=25.0, faces_seen=2, followed_at=(0.72, 0.4),
                             params={"tracker": {"face": "right"}})
    inputs = SimpleNamespace(vocal_info=None)
    analysis = SimpleNamespace(sync=sync, visual=visual, n_frames=100, n_ref=100, inputs=inputs, placed=False, camera=None,
                               placed_by="lips")
    (warning,) = _warnings(analysis)
    assert warning == ("2 faces in the picture: followed the right one (at 72% across, 40% down); "
                       "choose another with --face left|right|largest|X,Y")
    visual.faces_seen = 1
    assert _warnings(analysis) == []


def test_cost_images_keep_each_block_minimum() -> None:
    import numpy as np

    from avsync.align.plots import min_pooled

    cost = np.arange(12 * 25, dtype=np.float64).reshape(12, 25)
    cost[7, 13] = -5.0
    pooled = min_pooled(cost, 10)
    assert pooled.shape == (6, 9)  # blocks of 2 rows and 3 columns
    assert pooled[3, 4] == -5.0 and pooled[0, 0] == 0.0 and pooled[0, 1] == 3.0
    assert min_pooled(cost, 100) is cost
