"""The editor's case as a benchmark: takes somewhere inside a long song (``avsync eval --protocol takes``).

A take is a stretch of a video that is in sync with its song, cut at known frames, written as
its own file (no audio) and aligned against the whole song through the analysis `avsync align`
runs (`avsync.evaluation.harness.run_evaluation`). Its truth is a frame map into the song
(`Case.ref_origin` places the take's source on the reference).

Kinds, per song and seed (all deterministic from the seed):

* ``plain``: a take of one of `TAKE_SECONDS` (capped by the song), at least `MIN_VOICED_SHARE`
  of it sung (its reference frames voiced), never re-timed;
* ``tempo``: a 10-s take drifting at 3-10 % (`avsync.evaluation.warp`); ``cutfreeze``: a 10-s take
  with a cut and a freeze;
* ``before`` / ``past``: a 10-s take that starts 1-3 s before the music, or runs 1-3 s past its
  end (the reference is the song trimmed, so the take overhangs it);
* ``other``: a 10-s take of another song (not in the reference: should be "no match").

Synthetic songs (`write_take_songs`: 60, 120 and 240-s songs from `avsync synth`) are aligned
against their mix. Real clips (a manifest, e.g. a leave-speakers-out fold) are aligned against a
reference made of every clip's audio one after another (`concatenated_reference`), several
minutes long; the takes are the clips of the evaluated split (plain, tempo, cut+freeze), and
``other`` takes are the same clips against the reference made without them.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avsync.conventions import FPS, SAMPLE_RATE
from avsync.errors import AvsyncError, MediaError
from avsync.evaluation.harness import PLACED_TOLERANCE_S, Case, CaseResult, EvalReport, case_file, compose, speaker_interval
from avsync.evaluation.warp import FrameMap, make_warp, warp_video_file
from avsync.features.audio import voiced_frames
from avsync.features.cache import FeatureCache, file_hash
from avsync.features.manifest import ClipRecord, read_manifest, write_manifest

TAKE_KINDS = ("plain", "tempo", "cutfreeze", "before", "past", "other")
NOT_RETIMED_KINDS = ("plain", "before", "past")
"""Kinds whose takes were not re-timed: their map should hold the constant offset."""
WARPED_KINDS = ("tempo", "cutfreeze")
MIN_TAKE_SECONDS = 3
"""Shortest take: a real clip shorter than this is only part of the reference, never a take."""
TAKE_SECONDS = (3, 5, 10, 20, 40, 60)
"""Lengths of the plain takes, one per song and seed in turn."""
WARPED_TAKE_SECONDS = 10
"""Length of the warped, overhanging and other-song takes."""
MIN_VOICED_SHARE = 0.5
"""Share of a take's reference frames that must be sung (a take of an instrumental stretch
has nothing for the lips to follow)."""
OVERHANG_FRAMES = (25, 75)
"""How far (frames) a ``before``/``past`` take reaches beyond the music."""
SONG_SECONDS = ((60, 3), (120, 3), (240, 2))
"""(length in seconds, songs) of the synthetic songs `write_take_songs` writes."""
SAMPLES_PER_FRAME = SAMPLE_RATE // int(FPS)


def write_take_songs(folder: str | os.PathLike[str], seed: int = 0, progress: bool = True) -> Path:
    """Write the synthetic songs of the benchmark (`SONG_SECONDS`) and one manifest over them.

    Each length is its own `avsync synth` dataset in ``folder/<seconds>s`` (complete songs are
    kept, so a rerun writes nothing); ``folder/manifest.jsonl`` lists every song as split ``test``
    with ids ``<seconds>s/songNNN``.

    Args:
        folder: where the songs go.
        seed: dataset seed (each length adds its seconds to it).
        progress: tqdm bars.

    Returns:
        The manifest's path.
    """
    from avsync.synth.dataset import write_dataset

    folder = Path(folder)
    records: list[ClipRecord] = []
    for seconds, songs in SONG_SECONDS:
        subset = folder / f"{seconds}s"
        write_dataset(subset, songs, float(seconds), seed + seconds, progress=progress)
        records += [ClipRecord(**{**record.__dict__, "id": f"{seconds}s/{record.id}", "split": "test"})
                    for record in read_manifest(subset)]  # fmt: skip
    manifest = folder / "manifest.jsonl"
    write_manifest(records, manifest)
    return manifest


def take_reference(record: ClipRecord) -> Path:
    """The music a take is aligned against: the song's mix (the video's own track when the manifest has no audio)."""
    return record.audio or record.video


@dataclass(frozen=True)
class _Song:
    record: ClipRecord
    n_frames: int
    voiced: np.ndarray  # bool [n_frames] sung frames (vocal stem where there is one)


def trimmed_reference(folder: Path, record: ClipRecord, first: int, end: int) -> Path:
    """The song's music from frame `first` to `end` (exclusive) as a WAV, written once (keyed by content).

    Args:
        folder: the case folder.
        record: the song.
        first, end: frames (25 fps) of the song kept.
    """
    from avsync.io.media import read_audio, write_audio

    source = take_reference(record)
    name = f"{record.id.replace('/', '_')}_music_{first}_{end}_{file_hash(source)[:12]}.wav"
    if (folder / name).is_file():
        return folder / name
    samples = read_audio(source, sample_rate=SAMPLE_RATE)
    write_audio(folder / name, samples[first * SAMPLES_PER_FRAME : end * SAMPLES_PER_FRAME], SAMPLE_RATE)
    return folder / name


def concatenated_reference(folder: Path, records: Sequence[ClipRecord], cache: FeatureCache) -> tuple[Path, dict[str, int]]:
    """Every clip's own audio one after another, each exactly as long as its video, as one WAV.

    Args:
        folder: the case folder (the WAV is named by the clips' content, written once).
        records: the clips, in this order.
        cache: the feature cache (a clip's frame count comes from its visual features).

    Returns:
        The WAV and the reference frame at which each clip (by id) starts.
    """
    from avsync.io.media import read_audio, write_audio

    digest = hashlib.blake2b(digest_size=8)
    starts: dict[str, int] = {}
    lengths: list[int] = []
    position = 0
    for record in records:
        digest.update(f"{record.id}:{file_hash(record.video)}:{file_hash(record.reference_audio)};".encode())
        starts[record.id] = position
        lengths.append(len(cache.visual(record.video)))
        position += lengths[-1]
    path = folder / f"reference_{len(records)}clips_{digest.hexdigest()}.wav"
    if not path.is_file():
        pieces = []
        for record, frames in zip(records, lengths, strict=True):
            samples = read_audio(record.reference_audio, sample_rate=SAMPLE_RATE)[: frames * SAMPLES_PER_FRAME]
            pieces.append(np.pad(samples, (0, frames * SAMPLES_PER_FRAME - len(samples))))
        write_audio(path, np.concatenate(pieces), SAMPLE_RATE)
    return path, starts


def _sung_start(rng: np.random.Generator, song: _Song, length: int, tries: int = 200) -> int | None:
    """A start frame whose `length` frames are mostly sung (None when the song has none)."""
    if length > song.n_frames:
        return None
    sung = np.concatenate([[0], np.cumsum(song.voiced)])
    for _ in range(tries):
        start = int(rng.integers(0, song.n_frames - length + 1))
        if sung[start + length] - sung[start] >= MIN_VOICED_SHARE * length:
            return start
    return None


def _warped(kind: str, length: int, rng: np.random.Generator) -> FrameMap:
    if kind == "tempo":
        return make_warp("tempo", length, rng, min_frames=0)
    cut = make_warp("cut", length, rng, min_frames=0)
    return compose(cut, make_warp("freeze", len(cut), rng, min_frames=0), kind)


def _offset(frame_map: FrameMap, start: int) -> FrameMap:
    """A take's frame map into its song: the warp of frames ``start ...``."""
    return FrameMap(frame_map.src_index + start, frame_map.n_source + start, frame_map.kind, {**frame_map.params, "start": start})


def _song_takes(song: _Song, other: _Song, seed: int, index: int, folder: Path) -> list[tuple[Case, ClipRecord]]:
    """The takes of one synthetic song for one seed."""
    record = song.record
    rng = np.random.default_rng([seed, index])
    planned: list[tuple[Case, ClipRecord]] = []
    music = take_reference(record)

    def add(kind: str, frame_map: FrameMap, source: ClipRecord, reference: Path, ref_origin: int = 0, in_reference: bool = True) -> None:
        video = case_file(folder, source, frame_map, kind, seed)
        name = f"{record.id}:{kind}:{seed}" + ("" if kind != "plain" else f":{len(frame_map)}")
        planned.append((Case(name, kind, source.id, source.speaker, frame_map, video=video, reference=reference,
                             ref_origin=ref_origin, in_reference=in_reference), source))  # fmt: skip

    seconds = TAKE_SECONDS[(seed + index) % len(TAKE_SECONDS)]
    length = min(round(seconds * FPS), song.n_frames // 2)
    start = _sung_start(rng, song, length)
    if start is not None:
        add("plain", FrameMap(np.arange(start, start + length), start + length, "plain", {"start": start}), record, music)
    ten = round(WARPED_TAKE_SECONDS * FPS)
    for kind in WARPED_KINDS:
        start = _sung_start(rng, song, ten)
        if start is not None:
            add(kind, _offset(_warped(kind, ten, rng), start), record, music)
    overhang = int(rng.integers(*OVERHANG_FRAMES))
    first, end = overhang + ten, song.n_frames - overhang - ten  # the music kept: room for both overhangs
    trimmed = trimmed_reference(folder, record, first, end)
    before = first - overhang
    add("before", FrameMap(np.arange(before, before + ten), before + ten, "before", {"start": before}), record, trimmed, -first)
    past = end + overhang - ten
    add("past", FrameMap(np.arange(past, past + ten), past + ten, "past", {"start": past}), record, trimmed, -first)
    start = _sung_start(rng, other, ten)
    if start is not None:
        add("other", FrameMap(np.arange(start, start + ten), start + ten, "other", {"start": start, "song": other.record.id}),
            other.record, music, in_reference=False)  # fmt: skip
    return planned


def _clip_takes(record: ClipRecord, n_frames: int, seed: int, reference: Path, without: Path, start: int,
                folder: Path) -> list[tuple[Case, ClipRecord]]:
    """The takes of one real clip for one seed: itself, warped, and against the reference made without it."""
    rng = np.random.default_rng([seed, int.from_bytes(record.id.encode()[:8], "little")])
    maps = [FrameMap(np.arange(n_frames), n_frames, "plain")]
    if n_frames >= 2 * 50 + 25:  # room for a cut of up to 50 frames in the middle third
        maps += [_warped(kind, n_frames, rng) for kind in WARPED_KINDS]
    planned = []
    for frame_map in maps:
        video = case_file(folder, record, frame_map, frame_map.kind, seed)
        planned.append((Case(f"{record.id}:{frame_map.kind}:{seed}", frame_map.kind, record.id, record.speaker, frame_map,
                             video=video, reference=reference, av_offset=record.av_offset, ref_origin=start), record))  # fmt: skip
    other = FrameMap(np.arange(n_frames), n_frames, "other")
    planned.append((Case(f"{record.id}:other:{seed}", "other", record.id, record.speaker, other,
                         video=case_file(folder, record, other, "plain", seed), reference=without,
                         av_offset=record.av_offset, in_reference=False), record))  # fmt: skip
    return planned


def make_take_cases(songs: Sequence[ClipRecord], takes_from: Sequence[ClipRecord], cache: FeatureCache,
                    case_dir: str | os.PathLike[str], *, real: bool, seeds: Sequence[int] = (0,),
                    progress: bool = False) -> list[Case]:
    """Cut takes, write each once into `case_dir` (keyed by content) and return the cases.

    Args:
        songs: synthetic: the songs, each a take source and a reference; real: every clip whose
            audio makes up the long reference.
        takes_from: the records takes are cut from (synthetic: the same songs; real: the
            evaluated split's clips, a subset of `songs`).
        cache: the feature cache.
        case_dir: where the takes (and trimmed or concatenated references) go.
        real: real clips (concatenated reference) rather than synthetic songs.
        seeds: one set of takes per seed.
        progress: tqdm bars.

    Raises:
        AvsyncError: no usable song or clip.
    """
    folder = Path(case_dir)
    folder.mkdir(parents=True, exist_ok=True)
    planned: list[tuple[Case, ClipRecord]] = []
    if real:
        by_video: dict[Path, ClipRecord] = {}  # one entry per video: a manifest may list a clip twice (as its val copy)
        for record in tqdm(sorted(songs, key=lambda r: r.id), desc="read clips", unit="clip", disable=not progress, leave=False):
            if record.video not in by_video and _readable(cache, record):
                by_video[record.video] = record
        usable = list(by_video.values())
        taken = {r.video for r in takes_from} & set(by_video)
        if not taken:
            raise AvsyncError("no readable clip to cut takes from")
        reference, starts = concatenated_reference(folder, usable, cache)
        without, _ = concatenated_reference(folder, [r for r in usable if r.video not in taken], cache)
        for seed in seeds:
            for record in (r for r in usable if r.video in taken):
                n_frames = len(cache.visual(record.video))
                if n_frames >= MIN_TAKE_SECONDS * FPS:
                    planned += _clip_takes(record, n_frames, seed, reference, without, starts[record.id], folder)
    else:
        songs_bar = tqdm(sorted(takes_from, key=lambda r: r.id), desc="read songs", unit="song", disable=not progress, leave=False)
        loaded = [_Song(r, len(cache.visual(r.video)), voiced_frames(cache.audio(r.vocal or take_reference(r)).log_mel))
                  for r in songs_bar if _readable(cache, r)]  # fmt: skip
        if len(loaded) < 2:
            raise AvsyncError("the takes protocol needs at least 2 readable songs (a take of another song is one case)")
        for seed in seeds:
            for index, song in enumerate(loaded):
                planned += _song_takes(song, loaded[(index + 1) % len(loaded)], seed, index, folder)
    for case, source in tqdm(planned, desc="cut takes", unit="take", disable=not progress, leave=False):
        if not case.video.is_file():
            warp_video_file(source.video, case.video, case.frame_map, fps=FPS)
    # cases against one reference in a row: its embedding is computed once (`avsync.align.cost.embed_reference`)
    return [case for case, _ in sorted(planned, key=lambda item: str(item[0].reference))]


def _readable(cache: FeatureCache, record: ClipRecord) -> bool:
    try:
        cache.visual(record.video)
        return True
    except MediaError:
        return False


def _share(rows: Sequence[CaseResult], value: str) -> str:
    """``mean% (low-high) n`` over the rows, with a speaker-bootstrap interval."""
    if not rows:
        return "-"
    low, high = speaker_interval(rows, value)
    return f"{100 * float(np.mean([getattr(r, value) for r in rows])):.0f}% ({100 * low:.0f}-{100 * high:.0f}) n={len(rows)}"


TAKES_COLUMNS = (
    ("placed +-1 frame", "offset_acc", lambda r: r.in_reference),
    (f"placed within {PLACED_TOLERANCE_S:g} s", "placed", lambda r: r.in_reference),
    ("frames within +-1 (warped)", "within1", lambda r: r.kind in WARPED_KINDS),
    ("frames within +-1 (all in song)", "within1", lambda r: r.in_reference),
    ("under 2% re-timed (not re-timed)", "not_retimed", lambda r: r.kind in NOT_RETIMED_KINDS),
    ("map span +-2 frames (plain)", "span_ok", lambda r: r.kind == "plain"),
    ("no match (other song)", "no_match", lambda r: not r.in_reference),
    ("no match (right take >= 5 s)", "no_match", lambda r: r.in_reference and r.frames >= 5 * FPS),
)
"""The takes table: title, `CaseResult` field (share), which cases."""
TAKES_TARGETS = {"placed +-1 frame": ">= 99% (real >= 90%)", f"placed within {PLACED_TOLERANCE_S:g} s": "real >= 97%",
                 "frames within +-1 (warped)": ">= 95%", "under 2% re-timed (not re-timed)": "100% (real: under 5%)",
                 "map span +-2 frames (plain)": "100%", "no match (other song)": ">= 99%",
                 "no match (right take >= 5 s)": "0%"}  # fmt: skip
"""Issue 19's targets (synthetic unless said)."""


def format_takes_markdown(report: EvalReport) -> str:
    """The takes table: one row per method, percentages with 95 % speaker-bootstrap intervals and case counts."""
    lines = ["| method | cases | " + " | ".join(title for title, _, _ in TAKES_COLUMNS) + " | runtime s (median) |",
             "|---" * (len(TAKES_COLUMNS) + 3) + "|"]
    for method in report.methods:
        rows = [r for r in report.results if r.method == method]
        cells = [_share([r for r in rows if keep(r)], value) for _, value, keep in TAKES_COLUMNS]
        runtime = float(np.median([r.runtime_s for r in rows]))
        lines.append(f"| {method} | {len(rows)} | " + " | ".join(cells) + f" | {runtime:.2f} |")
    lines.append("| target | | " + " | ".join(TAKES_TARGETS.get(title, "") for title, _, _ in TAKES_COLUMNS) + " | |")
    return "\n".join(lines)


def takes_summary(report: EvalReport) -> dict[str, dict[str, float]]:
    """Per method: each `TAKES_COLUMNS` share (NaN where no case) and the median runtime."""
    out = {}
    for method in report.methods:
        rows = [r for r in report.results if r.method == method]
        entry = {title: float(np.mean([getattr(r, value) for r in rows if keep(r)])) if any(keep(r) for r in rows)
                 else math.nan for title, value, keep in TAKES_COLUMNS}  # fmt: skip
        entry["runtime_s_median"] = float(np.median([r.runtime_s for r in rows]))
        entry["cases"] = float(len(rows))
        out[method] = entry
    return out
