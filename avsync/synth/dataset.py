"""Write the synthetic singing dataset in the URSing layout, deterministically from a seed.

Layout::

    OUT/manifest.jsonl            one line per song (avsync.features.manifest format)
    OUT/split.csv                 id,split
    OUT/<song_id>/Mix.wav         vocal_reverb + accompaniment (44.1 kHz, 16-bit mono)
    OUT/<song_id>/Vocal.wav       dry singing voice
    OUT/<song_id>/Vocal_reverb.wav
    OUT/<song_id>/Accompaniment.wav
    OUT/<song_id>/Video.mp4       320x320, 25 fps H.264 (crf 28) with the mix as AAC audio
    OUT/<song_id>/truth.json      per-frame ground truth (avsync.synth.truth)

Each song is written to a temporary folder and renamed into place when complete, so an
interrupted run leaves no half song; songs already complete with the same settings are skipped.
Song ``i`` depends only on (seed, i, seconds, distractors): a run with more songs adds songs
without changing the existing ones.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avsync.errors import AvsyncError
from avsync.features.manifest import (
    MANIFEST_NAME,
    URSING_SPLIT_NAME,
    ClipRecord,
    write_manifest,
)
from avsync.io.media import atomic_path, write_audio, write_video
from avsync.synth.articulation import FPS, MOUTH_LEAD_S, active_frames, mouth_track
from avsync.synth.face import level_shape, load_source_face, quantize_mouth
from avsync.synth.scene import (
    OCCLUSION_KINDS,
    FrameRenderer,
    make_identity,
    scene_tracks,
)
from avsync.synth.singing import (
    SAMPLE_RATE,
    VOWELS,
    Stems,
    compose_score,
    mouthed_syllables,
    render_stems,
)
from avsync.synth.truth import SongTruth

# Bump when the generator changes what it writes for the same settings.
SYNTH_VERSION = 2
DEFAULT_SONGS = 26
DEFAULT_SECONDS = 30.0
DEFAULT_DISTRACTORS = 0.05
VIDEO_CRF = 28
VIDEO_PRESET = "veryfast"
# URSing's excerpt subset: 13 train / 3 val / 10 test of 26.
SPLIT_FRACTIONS = {"train": 13 / 26, "val": 3 / 26, "test": 10 / 26}
SPAN_KINDS = (*OCCLUSION_KINDS, "fake_talk", "break")
SPAN_SECONDS = (1.0, 3.0)
STEM_FILES = {"vocal": "Vocal.wav", "vocal_reverb": "Vocal_reverb.wav", "accompaniment": "Accompaniment.wav", "mix": "Mix.wav"}
VIDEO_FILE = "Video.mp4"
TRUTH_FILE = "truth.json"

Span = tuple[float, float]


@dataclass(frozen=True)
class SongSpec:
    """Everything that decides one song.

    Args:
        song_id: folder name and manifest id.
        speaker: identity id of the singer.
        seed: dataset seed.
        index: song number (with `seed`, seeds every random choice of the song).
        seconds: length.
        occlusions: (start, end, kind) spans hiding the face; kind ``card`` or ``offscreen``.
        fake_talk: (start, end) spans where the lips talk while the voice is silent.
        breaks: (start, end) instrumental spans: no voice, mouth closed.
        distractors: the ``--distractors`` fraction the spans were planned with (recorded only).
    """

    song_id: str
    speaker: str
    seed: int
    index: int
    seconds: float
    occlusions: tuple[tuple[float, float, str], ...] = ()
    fake_talk: tuple[Span, ...] = ()
    breaks: tuple[Span, ...] = ()
    distractors: float | None = None

    def params(self) -> dict:
        """The generation settings, as recorded in ``truth.json`` (compared on re-runs)."""
        params = asdict(self)
        params["version"] = SYNTH_VERSION
        return json.loads(json.dumps(params))  # tuples -> lists, as read back from JSON


@dataclass
class SongResult:
    """What `render_song` made: the folder, and whether it was already there."""

    folder: Path
    n_frames: int
    skipped: bool = False


def split_counts(n_songs: int) -> tuple[int, int, int]:
    """Train/val/test sizes in URSing's proportions (13/3/10 of 26), each at least 1 from 3 songs.

    Args:
        n_songs: number of songs.

    Returns:
        (train, val, test), summing to `n_songs`.
    """
    ideal = np.array(list(SPLIT_FRACTIONS.values())) * n_songs
    counts = np.floor(ideal).astype(int)
    for index in np.argsort(-(ideal - counts), kind="stable")[: n_songs - counts.sum()]:
        counts[index] += 1
    if n_songs >= 3:
        for index in range(3):
            if counts[index] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[index] = 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def plan_spans(rng: np.random.Generator, seconds: float, fraction: float) -> tuple[list[tuple[float, float, str]], list[Span], list[Span]]:
    """Place distractor spans covering about `fraction` of a song on average.

    The number of spans is Poisson with mean ``fraction * seconds / 2`` (spans last 1-3 s), so
    with the default fraction only some songs get one; kinds are drawn from `SPAN_KINDS`.

    Args:
        rng: the random source.
        seconds: song length.
        fraction: expected share of the song covered by spans (0 = none).

    Returns:
        (occlusions as (start, end, kind), fake_talk spans, break spans), non-overlapping.
    """
    occlusions: list[tuple[float, float, str]] = []
    fake_talk: list[Span] = []
    breaks: list[Span] = []
    taken: list[Span] = []
    for _ in range(int(rng.poisson(fraction * seconds / np.mean(SPAN_SECONDS)))):
        length = float(rng.uniform(*SPAN_SECONDS))
        kind = SPAN_KINDS[int(rng.integers(len(SPAN_KINDS)))]
        if seconds - length < 2.0:
            continue
        start = round(float(rng.uniform(1.0, seconds - length - 1.0)), 2)
        end = round(start + length, 2)
        if any(start < b + 0.5 and end > a - 0.5 for a, b in taken):
            continue
        taken.append((start, end))
        if kind in OCCLUSION_KINDS:
            occlusions.append((start, end, kind))
        else:
            (fake_talk if kind == "fake_talk" else breaks).append((start, end))
    return sorted(occlusions), sorted(fake_talk), sorted(breaks)


def song_specs(n_songs: int, seconds: float, seed: int, distractors: float) -> list[SongSpec]:
    """The specs of a dataset's songs (spans planned from each song's own random stream).

    Args:
        n_songs: number of songs.
        seconds: length of each.
        seed: dataset seed.
        distractors: expected share of each song covered by distractor spans.

    Returns:
        One spec per song, ids ``song000``, ``song001``, ...
    """
    specs = []
    for index in range(n_songs):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index, 1]))
        occlusions, fake_talk, breaks = plan_spans(rng, seconds, distractors)
        specs.append(SongSpec(f"song{index:03d}", f"singer{index:03d}", seed, index, seconds,
                              tuple(occlusions), tuple(fake_talk), tuple(breaks), distractors))  # fmt: skip
    return specs


def _in_spans(times: np.ndarray, spans: list[Span] | tuple[Span, ...]) -> np.ndarray:
    inside = np.zeros(len(times), dtype=bool)
    for start, end in spans:
        inside |= (times >= start) & (times < end)
    return inside


@dataclass
class SongMedia:
    """A rendered song before it is written: stems, a frame iterator and the truth."""

    stems: Stems
    frames: Iterator[np.ndarray]
    truth: SongTruth


def synthesize_song(spec: SongSpec, sample_rate: int = SAMPLE_RATE, fps: float = FPS) -> SongMedia:
    """Compose and render one song (audio now, video frames lazily).

    Args:
        spec: the song.
        sample_rate: audio rate in Hz.
        fps: video frame rate.

    Returns:
        The song's stems, frames (uint8 ``[320, 320, 3]`` each, T of them) and truth.

    Raises:
        AvsyncError: a span outside the song or of an unknown kind.
    """
    for start, end, *kind in [*spec.occlusions, *spec.fake_talk, *spec.breaks]:
        if not 0 <= start < end <= spec.seconds:
            raise AvsyncError(f"{spec.song_id}: span ({start}, {end}) is not inside 0..{spec.seconds} s")
        if kind and kind[0] not in OCCLUSION_KINDS:
            raise AvsyncError(f"{spec.song_id}: occlusion kind must be one of {OCCLUSION_KINDS}, got {kind[0]!r}")
    score_seed, audio_seed, identity_seed, scene_seed, pixel_seed = np.random.SeedSequence([spec.seed, spec.index, 0]).spawn(5)
    score_rng = np.random.default_rng(score_seed)
    score = compose_score(score_rng, spec.seconds, [*spec.fake_talk, *spec.breaks])
    mouthed = mouthed_syllables(score_rng, list(spec.fake_talk))
    stems = render_stems(score, np.random.default_rng(audio_seed), sample_rate)

    n_frames = round(spec.seconds * fps)
    frame_times = np.arange(n_frames) / fps
    track = mouth_track(sorted([*score.syllables, *mouthed], key=lambda s: s.start), n_frames, fps)
    shapes = [level_shape(quantize_mouth(o, w)) for o, w in zip(track.mouth_open, track.mouth_width, strict=True)]
    rendered_open, rendered_width = (np.array(column, dtype=np.float32) for column in zip(*shapes, strict=True))
    identity_rng = np.random.default_rng(identity_seed)
    identity = make_identity(identity_rng, spec.speaker)
    tracks = scene_tracks(np.random.default_rng(scene_seed), n_frames, fps, list(spec.occlusions))
    renderer = FrameRenderer(identity, np.random.default_rng(pixel_seed), noise_sigma=float(identity_rng.uniform(2.0, 5.0)))

    spans = [{"kind": kind, "start": start, "end": end} for start, end, kind in spec.occlusions]
    spans += [{"kind": "fake_talk", "start": s, "end": e} for s, e in spec.fake_talk]
    spans += [{"kind": "break", "start": s, "end": e} for s, e in spec.breaks]
    truth = SongTruth(
        id=spec.song_id,
        fps=fps,
        mouth_open=rendered_open,
        mouth_width=rendered_width,
        vowel=[phone if phone in VOWELS else "" for phone in track.phone],
        phone=track.phone,
        vocal_active=active_frames(list(score.syllables), n_frames, fps),
        face_visible=np.array([renderer.mouth_visible(tracks, k) for k in range(n_frames)]),
        lips_follow_vocal=~_in_spans(frame_times, spec.fake_talk),
        mouth_box=np.array([renderer.mouth_box(tracks, k) for k in range(n_frames)], dtype=np.float32),
        meta={
            "speaker": spec.speaker,
            "seconds": spec.seconds,
            "sample_rate": sample_rate,
            "mouth_lead_s": MOUTH_LEAD_S,
            "params": spec.params(),
            "song": {"tempo_bpm": round(score.tempo_bpm, 3), "key_midi": score.key_midi, "minor": score.minor,
                     "vocal_to_accompaniment_db": round(stems.vocal_to_accompaniment_db, 2)},  # fmt: skip
            "identity": asdict(identity),
            "spans": sorted(spans, key=lambda span: span["start"]),
            "syllables": [s.to_json() for s in score.syllables],
            "mouthed_syllables": [s.to_json() for s in mouthed],
        },
    )
    frames = (renderer.render(tracks, k, float(rendered_open[k]), float(rendered_width[k])) for k in range(n_frames))
    return SongMedia(stems, frames, truth)


def existing_song(spec: SongSpec, folder: Path) -> bool:
    """Whether `folder` already holds this song, complete (False: it does not exist).

    Raises:
        AvsyncError: `folder` exists but is not a complete song, or was made with other settings.
    """
    if not folder.exists():
        return False
    try:
        existing = json.loads((folder / TRUTH_FILE).read_text(encoding="utf-8"))["params"]
    except (OSError, ValueError, KeyError) as exc:
        raise AvsyncError("exists but is not a complete synthetic song; remove it or choose another OUT", folder) from exc
    wanted = spec.params()
    changed = sorted(key for key in wanted if existing.get(key) != wanted[key])
    if changed:
        raise AvsyncError(f"was made with other settings ({', '.join(changed)} differ); choose another OUT", folder)
    return True


def render_song(spec: SongSpec, out_dir: str | os.PathLike[str], *, sample_rate: int = SAMPLE_RATE, fps: float = FPS) -> SongResult:
    """Write one song folder (stems, video, truth) atomically; skip it if already complete.

    Args:
        spec: the song (its spans: `SongSpec.occlusions`, `fake_talk`, `breaks`).
        out_dir: the dataset folder; the song goes to ``out_dir/spec.song_id``.
        sample_rate: audio rate in Hz.
        fps: video frame rate.

    Returns:
        The result.

    Raises:
        AvsyncError: the song folder exists with other settings, or is not a song.
    """
    out = Path(out_dir)
    folder = out / spec.song_id
    if existing_song(spec, folder):
        return SongResult(folder, round(spec.seconds * fps), skipped=True)
    out.mkdir(parents=True, exist_ok=True)
    media = synthesize_song(spec, sample_rate, fps)
    temporary = Path(tempfile.mkdtemp(prefix=f".{spec.song_id}.", suffix=".partial", dir=out))
    try:
        for name, file_name in STEM_FILES.items():
            write_audio(temporary / file_name, getattr(media.stems, name), sample_rate)
        write_video(temporary / VIDEO_FILE, media.frames, fps=fps, audio=media.stems.mix, sample_rate=sample_rate,
                    crf=VIDEO_CRF, preset=VIDEO_PRESET, reproducible=True)  # fmt: skip
        media.truth.write(temporary / TRUTH_FILE)
        try:
            os.rename(temporary, folder)
        except OSError:
            if not existing_song(spec, folder):  # else a concurrent run wrote the same song first
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return SongResult(folder, media.truth.n_frames)


def _render_worker(spec: SongSpec, out_dir: str, sample_rate: int, fps: float) -> SongResult:
    return render_song(spec, out_dir, sample_rate=sample_rate, fps=fps)


def check_options(out: Path, songs: int, seconds: float, distractors: float, workers: int) -> None:
    """Reject bad dataset options with a one-line `AvsyncError`."""
    if out.exists() and not out.is_dir():
        raise AvsyncError("exists and is not a folder", out)
    if songs < 1:
        raise AvsyncError(f"--songs must be at least 1, got {songs}")
    if not 1.0 <= seconds <= 3600:
        raise AvsyncError(f"--seconds must be between 1 and 3600, got {seconds}")
    if not 0.0 <= distractors <= 0.5:
        raise AvsyncError(f"--distractors must be between 0 and 0.5, got {distractors}")
    if workers < 1:
        raise AvsyncError(f"--workers must be at least 1, got {workers}")


def write_dataset(
    out: str | os.PathLike[str],
    songs: int = DEFAULT_SONGS,
    seconds: float = DEFAULT_SECONDS,
    seed: int = 0,
    distractors: float = DEFAULT_DISTRACTORS,
    workers: int = 1,
    progress: bool = True,
) -> list[SongResult]:
    """Write (or complete) a synthetic dataset, then its manifest and split file.

    Args:
        out: dataset folder (created if missing).
        songs: number of songs.
        seconds: length of each song.
        seed: dataset seed.
        distractors: expected share of each song covered by distractor spans (occlusion,
            fake talk, instrumental break); 0 for clean songs.
        workers: processes rendering songs in parallel.
        progress: show a tqdm progress bar (frames).

    Returns:
        One result per song, in id order.

    Raises:
        AvsyncError: bad options, OUT is a file, or an existing song made with other settings.
    """
    out_path = Path(out)
    check_options(out_path, songs, seconds, distractors, workers)
    specs = song_specs(songs, seconds, seed, distractors)
    for spec in specs:  # fail before any work if an existing song conflicts
        existing_song(spec, out_path / spec.song_id)
    results: dict[str, SongResult] = {}
    n_frames = round(seconds * FPS)
    with tqdm(total=songs * n_frames, unit="frame", desc="avsync synth", disable=not progress, smoothing=0.1) as bar:
        if workers == 1 or songs == 1:
            for spec in specs:
                results[spec.song_id] = render_song(spec, out_path)
                bar.update(n_frames)
        else:
            # Fork (where there is one) shares the loaded source face and needs no __main__ guard.
            load_source_face()
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=min(workers, songs), mp_context=context) as pool:
                futures = {pool.submit(_render_worker, spec, str(out_path), SAMPLE_RATE, FPS): spec for spec in specs}
                for future in as_completed(futures):
                    results[futures[future].song_id] = future.result()
                    bar.update(n_frames)
    write_index(out_path, specs, seed)
    return [results[spec.song_id] for spec in specs]


def assign_splits(song_ids: list[str], seed: int) -> dict[str, str]:
    """Deal songs to train/val/test in `split_counts` sizes, by a seeded shuffle.

    Args:
        song_ids: the songs.
        seed: dataset seed.

    Returns:
        Song id -> split.
    """
    counts = split_counts(len(song_ids))
    order = np.random.default_rng(np.random.SeedSequence([seed, 2**31])).permutation(len(song_ids))
    labels = ["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2]
    return {song_ids[int(i)]: label for i, label in zip(order, labels, strict=True)}


def write_index(out: Path, specs: list[SongSpec], seed: int) -> None:
    """Write ``manifest.jsonl`` and ``split.csv`` of the songs in `specs` (atomic each).

    Args:
        out: dataset folder.
        specs: the songs.
        seed: dataset seed (for the split).
    """
    splits = assign_splits([spec.song_id for spec in specs], seed)
    root = out.resolve()
    records = [
        ClipRecord(
            id=spec.song_id,
            video=root / spec.song_id / VIDEO_FILE,
            audio=None,
            split=splits[spec.song_id],
            vocal=root / spec.song_id / STEM_FILES["vocal"],
            accompaniment=root / spec.song_id / STEM_FILES["accompaniment"],
            truth=root / spec.song_id / TRUTH_FILE,
            speaker=spec.speaker,
        )
        for spec in specs
    ]
    with atomic_path(out / URSING_SPLIT_NAME) as temporary:
        temporary.write_text("id,split\n" + "".join(f"{spec.song_id},{splits[spec.song_id]}\n" for spec in specs), encoding="utf-8")
    write_manifest(records, out / MANIFEST_NAME)
