"""The song cache: the music's log-mel and the model's embedding of it kept across `avsync align` calls."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from avsync.align.cost import embed_reference
from avsync.cli import main
from avsync.errors import AvsyncError, DiskFullError, MediaError
from avsync.features.cache import CACHE_ENV, FeatureCache, user_cache_dir
from avsync.io.media import write_audio
from avsync.models.runtime import load_inference_model
from avsync.pipeline.checks import check_inputs
from avsync.pipeline.sync import analyse


def test_user_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert user_cache_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    monkeypatch.setenv(CACHE_ENV, "")
    assert user_cache_dir() is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "avsync"
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "file" / "below"))
    assert user_cache_dir() is None  # not asked for, so no error: the features are computed without it


def test_embeddings_are_computed_once_and_rebuilt_when_damaged(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(12, dtype=np.float32).reshape(4, 3)

    key = {"log_mel": "abc", "shape": [80, 16], "dtype": "float32", "network": "sha/audio"}
    first = cache.embedding(key, compute)
    again = FeatureCache(tmp_path).embedding(key, compute)
    assert len(calls) == 1 and np.array_equal(first, again)
    FeatureCache(tmp_path).embedding({**key, "network": "other/audio"}, compute)
    assert len(calls) == 2
    for entry in (tmp_path / "embedding").rglob("*.npz"):
        entry.write_bytes(entry.read_bytes()[:100])  # cut short
    rebuilt = FeatureCache(tmp_path).embedding(key, compute)
    assert np.array_equal(rebuilt, first) and len(calls) == 3


def test_a_cache_the_user_did_not_ask_for_never_stops_the_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    unwritable = tmp_path / "file" / "cache"  # no entry or lock can be made below a file
    key = {"log_mel": "abc", "shape": [80, 16], "dtype": "float32", "network": "sha/audio"}
    with pytest.raises(AvsyncError, match="cannot write the feature cache"):
        FeatureCache(unwritable).embedding(key, lambda: np.ones((4, 3), np.float32))  # --cache DIR: the user's mistake
    best_effort = FeatureCache(unwritable, best_effort=True)
    assert np.array_equal(best_effort.embedding(key, lambda: np.ones((4, 3), np.float32)), np.ones((4, 3)))
    tone = tmp_path / "tone.wav"
    write_audio(tone, 0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32), 44100)
    assert best_effort.audio(tone).log_mel.shape[0] == 80 and best_effort.stats["uncached"] == 2
    with pytest.raises(MediaError):  # the input's own problem is still the user's error
        best_effort.audio(tmp_path / "missing.wav")


def test_a_full_disk_under_the_default_cache_keeps_what_was_computed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*args) -> None:
        raise DiskFullError("no space left on device", tmp_path / "entry")

    monkeypatch.setattr(FeatureCache, "_store", staticmethod(full_disk))
    calls = []
    key = {"log_mel": "abc", "shape": [80, 16], "dtype": "float32", "network": "sha/audio"}
    compute = lambda: calls.append(1) or np.ones((4, 3), np.float32)  # noqa: E731
    with pytest.raises(DiskFullError):
        FeatureCache(tmp_path / "asked").embedding(key, compute)  # --cache DIR: one line, exit 1
    best_effort = FeatureCache(tmp_path / "default", best_effort=True)
    assert np.array_equal(best_effort.embedding(key, compute), np.ones((4, 3)))
    assert len(calls) == 2 and best_effort.stats["uncached"] == 1  # computed once each, not again after the failed write


def _counting(network) -> list[int]:
    """Count the windows each two-tower member of `network` embeds from the music."""
    calls: list[int] = []
    for member in network.members:
        if hasattr(member, "encode_audio"):
            encode = member.encode_audio
            member.encode_audio = lambda windows, encode=encode: calls.append(len(windows)) or encode(windows)
    return calls


def test_a_song_embedded_by_one_process_is_loaded_by_the_next(tmp_path: Path, song: Path) -> None:
    inputs = check_inputs(song / "Video.mp4", song / "Mix.wav")
    first_model = load_inference_model(None)  # a model object of its own: nothing remembered in memory
    first_calls = _counting(first_model.network)
    first = analyse(inputs, first_model, song_cache=FeatureCache(tmp_path), progress=False)
    assert sum(first_calls) > 0 and list((tmp_path / "embedding").rglob("*.npz"))
    second_model = load_inference_model(None)
    second_calls = _counting(second_model.network)
    second = analyse(inputs, second_model, song_cache=FeatureCache(tmp_path), progress=False)
    assert second_calls == []  # the embeddings came from the cache
    assert np.array_equal(first.sync.cost, second.sync.cost) and first.sync.offset_frames == second.sync.offset_frames
    fresh_model = load_inference_model(None)
    fresh_calls = _counting(fresh_model.network)
    analyse(inputs, fresh_model, progress=False)  # no cache: computed
    assert sum(fresh_calls) == sum(first_calls)


def test_embed_reference_keeps_nothing_for_a_network_that_does_not_name_its_weights(tmp_path: Path) -> None:
    model = load_inference_model(None).network
    tower = next(member for member in model.members if hasattr(member, "encode_audio"))
    tower.graph.metadata = {**tower.graph.metadata, "checkpoint_sha256": None}
    embed_reference(model, np.zeros((80, 4 * 40), np.float32), store=FeatureCache(tmp_path).embedding)
    assert not (tmp_path / "embedding").exists()


def test_align_keeps_the_music_in_the_user_cache_and_nothing_with_no_cache(tmp_path: Path, song: Path,
                                                                           monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # fmt: skip
    user = tmp_path / "user"
    monkeypatch.setenv(CACHE_ENV, os.fspath(user))
    reports = []
    for name, extra in (("first", []), ("second", []), ("none", ["--no-cache"])):
        report = tmp_path / f"{name}.json"
        assert main(["align", str(song / "Video.mp4"), str(song / "Mix.wav"), "--report", str(report), "--quiet", *extra]) == 0
        reports.append(json.loads(report.read_text()))
        if name == "first":
            kept = sorted(path.relative_to(user).parts[0] for path in user.rglob("*.npz"))
            assert kept == ["audio", "embedding"]  # the music's log-mel and embedding; not the video's features
    assert len(list(user.rglob("*.npz"))) == 2  # the second and the --no-cache run added nothing
    assert reports[0]["offset_s"] == reports[1]["offset_s"] == reports[2]["offset_s"]
    assert reports[0]["time_map"] == reports[1]["time_map"] == reports[2]["time_map"]
    capsys.readouterr()
    assert main(["align", str(song / "Video.mp4"), str(song / "Mix.wav"), "--cache", str(tmp_path / "c"), "--no-cache"]) == 2
    assert "--no-cache" in capsys.readouterr().err


def test_an_unwritable_user_cache_is_no_error(tmp_path: Path, song: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, os.fspath(tmp_path / "file" / "cache"))
    report = tmp_path / "r.json"
    assert main(["align", str(song / "Video.mp4"), str(song / "Mix.wav"), "--report", str(report), "--quiet"]) == 0
    assert json.loads(report.read_text())["offset_s"] is not None
