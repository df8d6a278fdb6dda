"""The takes benchmark (`avsync eval --protocol takes`): takes cut from long songs, placed by the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avsync.cli import main as avsync_main
from avsync.evaluation.harness import Case, score
from avsync.evaluation.takes import TAKE_KINDS, concatenated_reference, trimmed_reference
from avsync.evaluation.warp import FrameMap
from avsync.features.cache import FeatureCache
from avsync.features.manifest import read_manifest
from avsync.io.media import read_audio


@pytest.fixture(scope="module")
def two_songs(tmp_path_factory) -> Path:
    """Two 40-s synthetic songs, both in the test split."""
    synth = tmp_path_factory.mktemp("takes") / "songs"
    assert avsync_main(["synth", str(synth), "--songs", "2", "--seconds", "40", "--seed", "3", "--workers", "1"]) == 0
    manifest = synth / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**r, "split": "test"}) + "\n" for r in records))
    return manifest


@pytest.mark.slow
def test_takes_protocol_places_takes_of_a_song_with_the_shipped_model(two_songs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "takes.json"
    args = ["eval", "--protocol", "takes", "--data", str(two_songs), "--cache", str(tmp_path / "cache"), "--seed", "2", "--seeds", "1",
            "--out", str(out), "--quiet", "--constant"]
    assert avsync_main(args) == 0
    results = json.loads(out.read_text())
    model = [c for c in results["cases"] if c["method"] == "model"]
    assert {c["kind"] for c in model} == set(TAKE_KINDS)
    by_kind = {c["kind"]: c for c in model if c["clip"] == "song000"}
    other = [c for c in model if c["kind"] == "other"]
    assert all(not c["in_reference"] for c in other)
    plain = [c for c in model if c["kind"] == "plain"]
    assert [c["frames"] for c in plain] == [250, 500], plain
    # the 10-s and 20-s takes placed within a frame, or said to be uncertain: a misplaced take is never "reliable"
    assert any(c["offset_err"] <= 1 for c in plain), plain
    assert all(c["offset_err"] <= 1 or c["confidence_level"] != "reliable" for c in plain), plain
    assert by_kind["before"]["offset_true"] > 0  # the music starts after the take: positive offset
    assert set(results["takes_summary"]["model"]) >= {"placed +-1 frame", "no match (other song)", "runtime_s_median"}
    table = capsys.readouterr().out
    assert "| model |" in table and "placed within 0.5 s" in table
    assert (tmp_path / "takes.md").read_text().startswith("| method | cases | placed +-1 frame")


@pytest.mark.slow
def test_references_are_cut_and_joined_at_whole_frames(two_songs: Path, tmp_path: Path) -> None:
    records = read_manifest(two_songs)
    cache = FeatureCache(tmp_path / "cache")
    joined, starts = concatenated_reference(tmp_path, records, cache)
    frames = [len(cache.visual(r.video)) for r in records]
    assert starts == {records[0].id: 0, records[1].id: frames[0]}
    samples = read_audio(joined)
    assert len(samples) == 640 * sum(frames)
    second = read_audio(records[1].reference_audio)[: 640 * frames[1]]
    assert np.abs(samples[640 * frames[0] :][: len(second)] - second).max() < 1e-3  # the second clip's audio starts at its frame
    again = concatenated_reference(tmp_path, records, cache)
    assert again[0] == joined and again[0].stat().st_mtime_ns == joined.stat().st_mtime_ns  # written once
    trimmed = trimmed_reference(tmp_path, records[0], 100, 300)
    assert len(read_audio(trimmed)) == 640 * 200


def test_a_take_placed_in_a_trimmed_reference_has_its_truth_shifted() -> None:
    frame_map = FrameMap(np.arange(40, 290), 290, "before")
    case = Case("s:before:0", "before", "s", None, frame_map, ref_origin=-100)
    assert case.true_ref_index[0] == -60 and case.true_offset_frames == 60
    result = score(case, "constant", None)
    assert result.placed == 1.0 and result.span_ok == 1.0 and result.not_retimed == 1.0 and result.no_match == 0.0
