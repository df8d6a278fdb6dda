"""Tests of the synthetic singing dataset (`avsync synth`): audio, mouth, frames, files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avsync.cli import main
from avsync.errors import AvsyncError
from avsync.features.manifest import read_manifest
from avsync.io.media import probe, read_audio, read_video
from avsync.synth.articulation import MOUTH_LEAD_S, active_frames, mouth_track
from avsync.synth.dataset import (
    STEM_FILES,
    SongSpec,
    split_counts,
    synthesize_song,
    write_dataset,
)
from avsync.synth.scene import MOVE_FRAMES, FrameRenderer, make_identity, scene_tracks
from avsync.synth.singing import SAMPLE_RATE, Syllable, compose_score, render_stems
from avsync.synth.truth import load_truth

FPS = 25.0


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays."""
    return float(np.corrcoef(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))[0, 1])


def frame_rms(samples: np.ndarray, sample_rate: int, n_frames: int) -> np.ndarray:
    """RMS of each video frame's stretch of audio: float ``[n_frames]``."""
    per_frame = round(sample_rate / FPS)
    samples = np.pad(samples, (0, max(0, n_frames * per_frame - len(samples))))[: n_frames * per_frame]
    return np.sqrt(np.mean(samples.reshape(n_frames, per_frame).astype(np.float64) ** 2, axis=1))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clean 4 s songs written by `write_dataset` (shared by the file-level tests)."""
    out = tmp_path_factory.mktemp("synth") / "data"
    write_dataset(out, songs=2, seconds=4.0, seed=3, distractors=0.0, workers=1, progress=False)
    return out


@pytest.mark.parametrize(("songs", "expected"), [(26, (13, 3, 10)), (3, (1, 1, 1)), (10, (5, 1, 4)), (1, (1, 0, 0)), (52, (26, 6, 20))])
def test_split_counts_follow_ursing_proportions(songs: int, expected: tuple[int, int, int]) -> None:
    assert split_counts(songs) == expected


def test_split_counts_always_sum_to_the_songs() -> None:
    for songs in range(1, 80):
        counts = split_counts(songs)
        assert sum(counts) == songs
        assert songs < 3 or min(counts) >= 1


def test_score_has_phrases_of_syllables_outside_silent_spans() -> None:
    silent = [(5.0, 8.0)]
    score = compose_score(np.random.default_rng(7), 20.0, silent)
    syllables = score.syllables
    assert len(syllables) >= 15
    for before, after in zip(syllables, syllables[1:], strict=False):
        assert before.end <= after.start, "syllables overlap"
    for syllable in syllables:
        assert 0 <= syllable.start <= syllable.vowel_start < syllable.end <= 20.0
        assert not (syllable.start < 8.0 and syllable.end > 5.0), "sung inside a silent span"
        assert 80 < syllable.pitch_hz < 1000
    assert len({s.vowel for s in syllables}) >= 4
    assert sum(bool(s.consonant) for s in syllables) >= len(syllables) // 2
    gaps = [after.start - before.end for before, after in zip(syllables, syllables[1:], strict=False)]
    assert max(gaps) > 0.4, "no rests between phrases"


def test_stems_mix_is_vocal_reverb_plus_accompaniment_and_voice_is_pitched() -> None:
    rng = np.random.default_rng(11)
    score = compose_score(rng, 8.0)
    stems = render_stems(score, rng)
    n = round(8.0 * SAMPLE_RATE)
    assert stems.vocal.shape == stems.vocal_reverb.shape == stems.accompaniment.shape == stems.mix.shape == (n,)
    np.testing.assert_allclose(stems.mix, stems.vocal_reverb + stems.accompaniment, atol=1e-5)
    assert np.max(np.abs(stems.mix)) == pytest.approx(0.89, abs=1e-3)
    # The dry vocal is silent between syllables and loud inside them.
    inside = np.zeros(n, dtype=bool)
    for s in score.syllables:
        inside[round(s.start * SAMPLE_RATE) : round(s.end * SAMPLE_RATE)] = True
    assert np.sqrt(np.mean(stems.vocal[~inside] ** 2)) < 1e-6
    assert np.sqrt(np.mean(stems.vocal[inside] ** 2)) > 0.02
    # A long note has its period at the sung pitch (autocorrelation, within 3 %).
    note = max(score.syllables, key=lambda s: s.end - s.vowel_start)
    first = round((note.vowel_start + 0.05) * SAMPLE_RATE)
    segment = stems.vocal[first : first + 4096].astype(np.float64)
    autocorrelation = np.correlate(segment, segment, mode="full")[len(segment) - 1 :]
    low, high = int(SAMPLE_RATE / (note.pitch_hz * 1.3)), int(SAMPLE_RATE / (note.pitch_hz * 0.77))
    period = low + int(np.argmax(autocorrelation[low:high]))
    assert SAMPLE_RATE / period == pytest.approx(note.pitch_hz, rel=0.03)


def test_mouth_closes_on_rests_and_bilabials_and_shapes_vowels() -> None:
    syllables = [
        Syllable(1.0, 1.12, 1.8, "m", "a", 300.0, 1.0),
        Syllable(2.5, 2.5, 3.2, "", "o", 300.0, 1.0),
        Syllable(3.8, 3.8, 4.5, "", "i", 300.0, 1.0),
    ]
    track = mouth_track(syllables, n_frames=125)

    def at(seconds: float) -> int:  # frame showing the sound of time `seconds`
        return round((seconds - MOUTH_LEAD_S) * FPS)

    assert track.mouth_open[at(0.5)] == 0 and track.phone[at(0.5)] == ""
    assert track.mouth_open[at(1.06)] < 0.05 and track.phone[at(1.06)] == "m"
    assert track.mouth_open[at(1.5)] > 0.95 and track.phone[at(1.5)] == "a"
    assert track.mouth_open[at(2.2)] < 0.01
    assert track.mouth_width[at(2.9)] < 0.8 and 0.6 < track.mouth_open[at(2.9)] < 0.8
    assert track.mouth_width[at(4.2)] > 1.15 and track.mouth_open[at(4.2)] < 0.4
    active = active_frames(syllables, 125)
    assert active[round(1.4 * FPS)] and not active[round(2.1 * FPS)]
    assert active.sum() == pytest.approx((0.8 + 0.7 + 0.7) * FPS, abs=3)


def test_only_the_mouth_box_depends_on_the_mouth() -> None:
    """Counterfactual: the same frame with the mouth shut differs only inside the mouth box."""
    identity = make_identity(np.random.default_rng(1), "s")
    tracks = scene_tracks(np.random.default_rng(2), 30, FPS)
    frames = {}
    for mouth_open in (0.0, 1.0):
        renderer = FrameRenderer(identity, np.random.default_rng(3))
        frames[mouth_open] = [renderer.render(tracks, k, mouth_open, 1.0) for k in range(0, 30, 7)]
        box = renderer.mouth_box(tracks, 28)
    changed = np.any(frames[0.0][-1] != frames[1.0][-1], axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 500, "opening the mouth changed almost nothing"
    assert xs.min() >= box[0] - 2 and xs.max() <= box[2] + 2
    assert ys.min() >= box[1] - 2 and ys.max() <= box[3] + 2
    for shut, opened in zip(frames[0.0], frames[1.0], strict=True):
        assert np.array_equal(shut[:40], opened[:40]), "the top of the frame depends on the mouth"


def test_dataset_layout_manifest_and_truth(tiny_dataset: Path) -> None:
    records = read_manifest(tiny_dataset)
    assert [r.id for r in records] == ["song000", "song001"]
    assert sorted(r.split for r in records) == ["test", "train"]
    assert (tiny_dataset / "split.csv").read_text().splitlines()[0] == "id,split"
    for record in records:
        folder = tiny_dataset / record.id
        assert {p.name for p in folder.iterdir()} == {*STEM_FILES.values(), "Video.mp4", "truth.json"}
        assert record.audio is None and record.vocal == folder / "Vocal.wav" and record.truth == folder / "truth.json"
        assert record.speaker == f"singer{record.id[4:]}"
        info = probe(folder / "Video.mp4")
        assert (info.fps, info.width, info.height, info.audio_rate) == (25.0, 320, 320, SAMPLE_RATE)
        assert info.duration == pytest.approx(4.0, abs=0.05)
        truth = load_truth(folder / "truth.json")
        assert truth.n_frames == 100 == len(read_video(folder / "Video.mp4").frames)
        assert truth.face_visible.all() and truth.lips_follow_vocal.all()
        assert truth.meta["syllables"] and truth.meta["params"]["seconds"] == 4.0
        for name in STEM_FILES.values():
            assert probe(folder / name).audio_rate == SAMPLE_RATE
            assert len(read_audio(folder / name, sample_rate=SAMPLE_RATE)) == 4 * SAMPLE_RATE


def test_mouth_opens_with_the_voice(tiny_dataset: Path) -> None:
    for song in ("song000", "song001"):
        truth = load_truth(tiny_dataset / song / "truth.json")
        vocal_rms = frame_rms(read_audio(tiny_dataset / song / "Vocal.wav", sample_rate=16000), 16000, truth.n_frames)
        assert pearson(truth.mouth_open, vocal_rms) > 0.5
        assert truth.mouth_open[truth.vocal_active].mean() > 4 * truth.mouth_open[~truth.vocal_active].mean()
        assert vocal_rms[truth.vocal_active].mean() > 20 * vocal_rms[~truth.vocal_active].mean()


def test_no_loudness_shortcut_outside_the_mouth(tiny_dataset: Path) -> None:
    """Brightness outside the mouth box does not follow the voice (levels or changes)."""
    truth = load_truth(tiny_dataset / "song000" / "truth.json")
    frames = read_video(tiny_dataset / "song000" / "Video.mp4", gray=True).frames.astype(np.float64)
    outside = []
    for frame, (x0, y0, x1, y1) in zip(frames, truth.mouth_box, strict=True):
        mask = np.ones(frame.shape, dtype=bool)
        mask[max(0, int(y0) - 4) : int(y1) + 5, max(0, int(x0) - 4) : int(x1) + 5] = False
        outside.append(frame[mask].mean())
    vocal_rms = frame_rms(read_audio(tiny_dataset / "song000" / "Vocal.wav", sample_rate=16000), 16000, truth.n_frames)
    assert abs(pearson(np.diff(outside), np.diff(vocal_rms))) < 0.2
    assert abs(pearson(np.diff(outside), np.diff(truth.mouth_open))) < 0.2


def test_same_seed_same_bytes_and_rerun_skips(tiny_dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    write_dataset(again, songs=2, seconds=4.0, seed=3, distractors=0.0, workers=1, progress=False)
    for name in ("manifest.jsonl", "split.csv", "song001/truth.json", "song001/Vocal.wav", "song001/Mix.wav", "song001/Video.mp4"):
        assert (again / name).read_bytes() == (tiny_dataset / name).read_bytes(), name
    before = {p: p.stat().st_mtime_ns for p in again.rglob("*")}
    results = write_dataset(again, songs=2, seconds=4.0, seed=3, distractors=0.0, workers=1, progress=False)
    assert all(result.skipped for result in results)
    assert {p: p.stat().st_mtime_ns for p in again.rglob("*") if p.parent != again} == {
        p: t for p, t in before.items() if p.parent != again
    }
    with pytest.raises(AvsyncError, match="other settings"):
        write_dataset(again, songs=2, seconds=5.0, seed=3, distractors=0.0, workers=1, progress=False)
    other_seed = synthesize_song(SongSpec("song001", "singer001", 4, 1, 4.0)).stems.vocal
    assert not np.array_equal(other_seed, read_audio(again / "song001" / "Vocal.wav", sample_rate=SAMPLE_RATE))


def test_distractor_spans_in_truth_audio_and_pixels() -> None:
    spec = SongSpec("s", "p", 5, 0, 12.0, occlusions=((1.0, 2.0, "card"), (3.0, 4.0, "offscreen")),
                    fake_talk=((5.0, 7.0),), breaks=((8.0, 10.0),))  # fmt: skip
    media = synthesize_song(spec)
    truth = media.truth
    times = np.arange(truth.n_frames) / FPS

    def frames_in(start: float, end: float) -> np.ndarray:
        return (times >= start) & (times < end)

    hidden = frames_in(1.0, 2.0) | frames_in(3.0, 4.0)
    moving = frames_in(1.0 - MOVE_FRAMES / FPS, 2.0 + MOVE_FRAMES / FPS) | frames_in(3.0 - MOVE_FRAMES / FPS, 4.0 + MOVE_FRAMES / FPS)
    assert not truth.face_visible[hidden].any() and truth.face_visible[~moving].all()
    assert truth.face_visible[moving & ~hidden].any(), "the card or head hides the mouth before it has arrived"
    assert np.array_equal(~truth.lips_follow_vocal, frames_in(5.0, 7.0))
    assert not truth.vocal_active[frames_in(5.0, 7.0) | frames_in(8.0, 10.0)].any()
    assert truth.mouth_open[frames_in(5.0, 7.0)].max() > 0.3, "no talking in the fake-talk span"
    assert truth.mouth_open[frames_in(8.2, 9.8)].max() == 0, "mouth open in the instrumental break"
    vocal = media.stems.vocal
    for start, end in ((5.0, 7.0), (8.0, 10.0)):
        assert np.abs(vocal[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]).max() < 1e-6
    assert {span["kind"] for span in truth.meta["spans"]} == {"card", "offscreen", "fake_talk", "break"}
    frames = list(media.frames)
    import dlib

    detector = dlib.get_frontal_face_detector()
    for k in (round(1.5 * FPS), round(3.5 * FPS)):
        assert len(detector(frames[k], 0)) == 0, f"a face is visible in hidden frame {k}"
    assert len(detector(frames[round(0.5 * FPS)], 0)) == 1


@pytest.mark.slow
def test_dlib_finds_the_face_and_the_lips_follow_the_truth(tmp_path: Path) -> None:
    """The real landmark predictor tracks the rendered lip opening on the encoded video."""
    import dlib
    import face_recognition_models

    write_dataset(tmp_path, songs=1, seconds=6.0, seed=8, distractors=0.0, workers=1, progress=False)
    truth = load_truth(tmp_path / "song000" / "truth.json")
    frames = read_video(tmp_path / "song000" / "Video.mp4").frames
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    openings, truths = [], []
    for frame, mouth_open in zip(frames, truth.mouth_open, strict=True):
        faces = detector(frame, 0)
        if not faces:
            continue
        points = np.array([[p.x, p.y] for p in predictor(frame, faces[0]).parts()], dtype=np.float64)
        openings.append(np.linalg.norm(points[66] - points[62]) / np.linalg.norm(points[16] - points[0]))
        truths.append(mouth_open)
    assert len(openings) > 0.95 * len(frames)
    assert pearson(openings, truths) > 0.8


@pytest.mark.slow
def test_cli_writes_dataset_and_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert main(["synth", str(out), "--songs", "1", "--seconds", "2", "--workers", "1"]) == 0
    assert json.loads((out / "manifest.jsonl").read_text())["id"] == "song000"
    capsys.readouterr()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for arguments in ([str(a_file)], [str(out), "--seconds", "-1"], [str(out), "--songs", "0"], [str(out), "--distractors", "2"]):
        assert main(["synth", *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("avsync: error:") and error.count("\n") == 1, error
    assert a_file.read_text() == "x"
