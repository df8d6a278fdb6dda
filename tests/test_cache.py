"""Feature cache: content keys, hits and misses, corruption, atomic writes, locking, prepare_manifest, load_clip."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import avsync.features.cache
from avsync.errors import AvsyncError, DiskFullError, MediaError
from avsync.features.audio import MelConfig
from avsync.features.cache import (
    FeatureCache,
    audio_features,
    file_hash,
    load_clip,
    params_hash,
    prepare_manifest,
    select_shard,
    visual_features,
)
from avsync.features.extract import AudioFeatures, VisualParams, audio_params
from avsync.features.manifest import ClipRecord
from avsync.features.tracking import NO_FACE
from avsync.io.media import write_audio
from avsync.shards import parse_shard
from benchmarks.bench_prepare import write_face_video


def tone(path: Path, seconds: float = 1.0, hz: float = 440.0) -> Path:
    samples = (0.3 * np.sin(2 * np.pi * hz * np.arange(round(seconds * 16000)) / 16000)).astype(np.float32)
    write_audio(path, samples, 16000)
    return path


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1.2 s 160x120 video of the moving astronaut with a 220 Hz tone; blank (no face) 0.4-0.8 s."""
    return write_face_video(tmp_path_factory.mktemp("media") / "face.mp4", seconds=1.2, size=(160, 120), blank=(0.4, 0.8))


def forbid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any feature extraction fail the test (the cache must only load)."""

    def no_work(*args, **kwargs):
        raise AssertionError("features were extracted although they are cached")

    monkeypatch.setattr(avsync.features.cache, "extract_visual", no_work)
    monkeypatch.setattr(avsync.features.cache, "extract_audio", no_work)


def test_features_through_a_cache_or_without_one(tmp_path: Path, face_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sound = tone(tmp_path / "a.wav")
    fresh = audio_features(sound, None)
    assert not (tmp_path / "cache").exists()
    stored = audio_features(sound, tmp_path / "cache")
    assert np.array_equal(fresh.log_mel, stored.log_mel) and FeatureCache(tmp_path / "cache").stats["hit"] == 0
    seen = visual_features(face_video, tmp_path / "cache")
    forbid(monkeypatch)
    assert np.array_equal(audio_features(sound, tmp_path / "cache").log_mel, fresh.log_mel)  # from the cache
    assert np.array_equal(visual_features(face_video, tmp_path / "cache").landmarks, seen.landmarks, equal_nan=True)
    with pytest.raises(AssertionError, match="extracted"):
        audio_features(sound, None)  # no cache: always computed


def test_file_hash_follows_content_not_name(tmp_path: Path) -> None:
    first = tone(tmp_path / "a.wav")
    copy = tmp_path / "copy.wav"
    shutil.copy(first, copy)
    assert file_hash(first) == file_hash(copy) and len(file_hash(first)) == 32
    tone(copy, hz=441.0)
    assert file_hash(copy) != file_hash(first)
    with pytest.raises(MediaError, match="file not found"):
        file_hash(tmp_path / "missing.wav")
    with pytest.raises(MediaError, match="is a folder"):
        file_hash(tmp_path)


def test_params_hash_ignores_key_order_and_sees_values() -> None:
    assert params_hash({"a": 1, "b": [2, 3]}) == params_hash({"b": [2, 3], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})


def test_audio_hit_for_the_same_content_miss_for_new_content_or_parameters(tmp_path: Path, monkeypatch) -> None:
    cache = FeatureCache(tmp_path / "cache")
    audio = tone(tmp_path / "a.wav")
    first = cache.audio(audio)
    assert first.log_mel.shape == (80, 100) and first.log_mel.dtype == np.float32
    assert first.sample_rate == 16000 and first.fps == 25.0
    assert cache.stats == {"computed": 1}
    entry = cache.entry_path("audio", audio, audio_params(MelConfig()))
    assert entry.is_file() and entry.parent.parent == tmp_path / "cache" / "audio"

    renamed = tmp_path / "renamed.wav"
    shutil.copy(audio, renamed)
    with monkeypatch.context() as patch:
        forbid(patch)
        again = cache.audio(renamed)
    np.testing.assert_array_equal(again.log_mel, first.log_mel)
    assert again.params == first.params
    assert cache.stats == {"computed": 1, "hit": 1}

    tone(renamed, hz=660.0)  # new content under the old name
    assert not np.array_equal(cache.audio(renamed).log_mel, first.log_mel)
    narrow = MelConfig(n_mels=40)
    assert cache.audio(audio, narrow).log_mel.shape == (40, 100)
    assert cache.stats == {"computed": 3, "hit": 1}
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 3


def test_visual_entry_round_trips_and_its_key_has_the_extraction_parameters(tmp_path: Path, face_video: Path, monkeypatch) -> None:
    cache = FeatureCache(tmp_path / "cache")
    computed = cache.visual(face_video)
    frames = 30
    assert computed.mouth_crops.shape == (frames, 64, 64) and computed.mouth_crops.dtype == np.uint8
    assert computed.landmarks.shape == (frames, 68, 2) and computed.landmarks.dtype == np.float32
    assert computed.fps == 25.0 and computed.params["backend"] == "mesh" and "version" in computed.params
    # The blank stretch (frames 10-19) has no face; the face is there before and found again after.
    assert computed.valid[:10].all() and not computed.valid[10:20].any() and computed.valid[25:].all()
    assert set(computed.invalid_reason[10:20]) == {NO_FACE}
    assert not computed.mouth_crops[10:20].any() and np.isnan(computed.landmarks[10:20]).all()

    with monkeypatch.context() as patch:
        forbid(patch)
        loaded = cache.visual(face_video, dataclasses.replace(VisualParams(), device="cpu"))  # device: same key
    for name in ("mouth_crops", "valid", "landmarks"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(computed, name))
    assert loaded.invalid_reason == computed.invalid_reason and loaded.params == computed.params

    other = dataclasses.replace(VisualParams(), tracker=dataclasses.replace(VisualParams().tracker, detect_every=3))
    assert other.params() != VisualParams().params()
    cache.visual(face_video, other)
    assert cache.stats == {"computed": 2, "hit": 1}


def write_entry_variant(entry: Path, change) -> None:
    """Rewrite a cache entry (a valid .npz) after `change(meta, arrays)` edits it in place."""
    with np.load(entry) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(meta, arrays)
    with open(entry, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)


def flip_one_value(meta: dict, arrays: dict) -> None:
    arrays["log_mel"] = arrays["log_mel"].copy()
    arrays["log_mel"][3, 5] += 1.0


def other_params(meta: dict, arrays: dict) -> None:
    meta["params"]["n_mels"] = 64


def drop_array(meta: dict, arrays: dict) -> None:
    del arrays["log_mel"]


def truncate(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:1000])


@pytest.mark.parametrize(
    "damage",
    [
        truncate,
        lambda entry: entry.write_bytes(b""),
        lambda entry: write_entry_variant(entry, flip_one_value),
        lambda entry: write_entry_variant(entry, other_params),
        lambda entry: write_entry_variant(entry, drop_array),
    ],
    ids=["truncated", "empty", "checksum", "params", "missing-array"],
)
def test_corrupt_entries_are_detected_and_rebuilt(tmp_path: Path, damage, caplog) -> None:
    cache = FeatureCache(tmp_path / "cache")
    audio = tone(tmp_path / "a.wav")
    good = cache.audio(audio).log_mel
    entry = cache.entry_path("audio", audio, audio_params(MelConfig()))
    damage(entry)
    rebuilt = cache.audio(audio)
    np.testing.assert_array_equal(rebuilt.log_mel, good)
    assert cache.stats == {"computed": 1, "rebuilt": 1}
    assert "is corrupt" in caplog.text and str(entry) in caplog.text
    cache.audio(audio)
    assert cache.stats["hit"] == 1  # the rebuilt entry is good


def test_a_failed_write_leaves_no_entry_and_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    cache = FeatureCache(tmp_path / "cache")
    audio = tone(tmp_path / "a.wav")

    def partial_write(handle, **arrays):
        handle.write(b"PK\x03\x04 half an entry")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(avsync.features.cache.np, "savez", partial_write)
    with pytest.raises(DiskFullError, match="no space left on device"):
        cache.audio(audio)
    monkeypatch.undo()
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert all(name.endswith(".lock") for name in leftovers), leftovers
    cache.audio(audio)
    assert cache.stats == {"computed": 1}


def test_unreadable_media_is_a_media_error_and_caches_nothing(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not a video" * 100)
    with pytest.raises(MediaError) as error:
        cache.visual(fake)
    assert str(fake) in str(error.value)
    with pytest.raises(MediaError):
        cache.audio(fake)
    assert not list((tmp_path / "cache").rglob("*.npz"))


def _slow_stub_audio(audio_path, mel_cfg) -> AudioFeatures:
    """Stand-in extraction (no torch in forked children) that takes a while and logs each call."""
    with open(Path(audio_path).with_suffix(".calls"), "a") as log:
        log.write("call\n")
    time.sleep(0.5)
    return AudioFeatures(np.arange(80 * 8, dtype=np.float32).reshape(80, 8), 16000, 25.0, audio_params(mel_cfg))


def _concurrent_audio(root: str, audio: str, barrier, results) -> None:
    avsync.features.cache.extract_audio = _slow_stub_audio
    cache = FeatureCache(root)
    barrier.wait()
    features = cache.audio(audio)
    results.put((dict(cache.stats), float(features.log_mel.sum())))


def test_two_processes_asking_for_one_entry_compute_it_once(tmp_path: Path) -> None:
    audio = tone(tmp_path / "a.wav")
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_concurrent_audio, args=(str(tmp_path / "cache"), str(audio), barrier, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert (tmp_path / "a.calls").read_text() == "call\n"  # computed once
    assert sorted(tuple(stats.items()) for stats, _ in outcomes) == [(("computed", 1),), (("hit", 1),)]
    expected = float(np.arange(80 * 8).sum())
    assert [total for _, total in outcomes] == [expected, expected]


def test_parse_shard_and_user_errors() -> None:
    assert parse_shard("0/1") == (0, 1) and parse_shard("3/4") == (3, 4)
    for text in ("4/4", "-1/4", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(AvsyncError, match="--shard"):
            parse_shard(text)


def test_shards_partition_the_records_and_stay_put_when_the_manifest_grows() -> None:
    records = [ClipRecord(f"clip{i}", Path(f"/v/{i}.mp4"), None, "train") for i in range(200)]
    shards = [select_shard(records, (index, 4)) for index in range(4)]
    ids = [r.id for shard in shards for r in shard]
    assert sorted(ids) == sorted(r.id for r in records) and len(set(ids)) == 200
    assert all(30 < len(shard) < 70 for shard in shards)
    grown = records + [ClipRecord(f"new{i}", Path(f"/v/n{i}.mp4"), None, "train") for i in range(50)]
    assert {r.id for r in select_shard(grown, (1, 4))} >= {r.id for r in shards[1]}


def test_prepare_manifest_is_idempotent_and_reports_failures(tmp_path: Path, face_video: Path, monkeypatch) -> None:
    vocal = tone(tmp_path / "vocal.wav", seconds=0.8)
    accompaniment = tone(tmp_path / "acc.wav", seconds=1.2, hz=110.0)
    records = [
        ClipRecord("sung", face_video, None, "train", vocal=vocal, accompaniment=accompaniment),
        ClipRecord("own-audio", face_video, None, "val"),
        ClipRecord("missing", tmp_path / "gone.mp4", None, "test"),
    ]
    cache = FeatureCache(tmp_path / "cache")
    report = prepare_manifest(records, cache, progress=False)
    assert [(o.id, o.status) for o in report.outcomes] == [("sung", "computed"), ("own-audio", "computed"), ("missing", "failed")]
    assert "gone.mp4" in report.failures[0].error and "file not found" in report.failures[0].error
    # Frames 10-19 are blank; the face is found again at the next search (every 5 frames).
    faceless = report.outcomes[0].invalid[NO_FACE]
    assert report.outcomes[0].frames == 30 and 10 <= faceless <= 15 and set(report.outcomes[0].invalid) == {NO_FACE}
    expected = f"3 clips: 2 computed, 0 cached, 1 failed; 60 frames, {2 * faceless} without a usable face (no face detected: {2 * faceless})"
    assert report.summary() == expected
    # video, its own audio, the vocal and the accompaniment: four entries
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 4

    forbid(monkeypatch)
    again = prepare_manifest(records[:2], FeatureCache(tmp_path / "cache"), progress=False)
    assert [o.status for o in again.outcomes] == ["cached", "cached"]
    assert again.summary().startswith("2 clips: 0 computed, 2 cached, 0 failed")
    with pytest.raises(AvsyncError, match="workers must be at least 1"):
        prepare_manifest(records, cache, workers=0, progress=False)


def test_prepare_manifest_with_fan_and_no_weights_stops_before_any_work(tmp_path: Path, monkeypatch, face_video: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    forbid(monkeypatch)
    records = [ClipRecord("a", face_video, None, "train")]
    with pytest.raises(AvsyncError, match=r"FAN weights missing: 2DFAN4-.*\.pth\.tar not found in .*hub/checkpoints"):
        prepare_manifest(records, FeatureCache(tmp_path / "cache"), params=VisualParams(backend="fan"), progress=False)


def test_load_clip_pairs_video_and_reference_cut_to_one_length(tmp_path: Path, face_video: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    vocal = tone(tmp_path / "vocal.wav", seconds=0.8)
    accompaniment = tone(tmp_path / "acc.wav", seconds=1.0, hz=110.0)
    record = ClipRecord("sung", face_video, None, "train", vocal=vocal, accompaniment=accompaniment, speaker="astro")
    clip = load_clip(record, cache, accompaniment=True)
    assert len(clip) == 20  # the 0.8 s vocal is the shortest
    assert clip.mouth_crops.shape == (20, 64, 64) and clip.valid.shape == (20,)
    assert clip.log_mel.shape == (80, 80) and clip.accompaniment_mel.shape == (80, 80)
    assert (clip.id, clip.split, clip.speaker, clip.fps) == ("sung", "train", "astro", 25.0)
    np.testing.assert_array_equal(clip.log_mel, cache.audio(vocal).log_mel[:, :80])
    # Without a vocal stem the video's own audio is the reference; no accompaniment unless asked.
    own = load_clip(ClipRecord("own", face_video, None, "val"), cache)
    assert len(own) == 30 and own.log_mel.shape == (80, 120) and own.accompaniment_mel is None


@pytest.mark.slow
def test_prepare_manifest_over_two_worker_processes(tmp_path: Path, face_video: Path) -> None:
    second = tmp_path / "second.mp4"
    write_face_video(second, seconds=0.8, size=(160, 120), face_width=0.4)
    records = [ClipRecord("first", face_video, None, "train"), ClipRecord("second", second, None, "train")]
    report = prepare_manifest(records, FeatureCache(tmp_path / "cache"), workers=2, progress=False)
    assert [(o.id, o.status, o.frames) for o in report.outcomes] == [("first", "computed", 30), ("second", "computed", 20)]
    serial = FeatureCache(tmp_path / "cache")
    assert prepare_manifest(records, serial, progress=False).count("cached") == 2
    assert serial.stats == {"hit": 4}


def test_extraction_runs_opencv_on_one_thread(face_video: Path) -> None:
    import cv2

    from avsync.features.extract import OPENCV_THREADS, extract_visual

    cv2.setNumThreads(4)
    try:
        extract_visual(face_video)
        assert cv2.getNumThreads() == OPENCV_THREADS == 1  # its pool cost 0.7 s of CPU on a 30-s 720p take
    finally:
        cv2.setNumThreads(-1)  # OpenCV's default for the tests after this one


def test_extraction_decodes_up_to_720p_on_one_thread(face_video: Path, monkeypatch) -> None:
    from avsync.features import extract
    from avsync.io import media

    asked = []
    real = media.iter_video

    def recorded(*args, **kwargs):
        asked.append(kwargs.get("threads", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(media, "iter_video", recorded)
    extract.extract_visual(face_video)
    assert asked == [1]  # 0.15-0.19 s less CPU on a 30-s 720p take, and the per-frame work still sets the pace
    assert extract.decoder_threads(1280, 720) == 1
    assert extract.decoder_threads(1920, 1080) == extract.decoder_threads(3840, 2160) == 0  # the decoder would set it
