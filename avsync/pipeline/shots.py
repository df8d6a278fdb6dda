"""Many shots against one song: ``avsync align SHOT [SHOT ...] MUSIC``.

The model and the song's features are loaded once (once per worker with ``--jobs N``); each
shot then goes through the same analysis and outputs as a single ``avsync align``
(`avsync.pipeline.sync.analyse`, `avsync.pipeline.outputs.write_outputs`), its report and plot
written into the output folder as ``NAME.json`` and ``NAME.png`` (and ``NAME.synced.mp4`` when
rendered). Each shot ends one of three ways:

* ``placed``: its lips follow the song somewhere, or its own sound is the song's
  (`avsync.pipeline.camera_audio`); the report says where (``offset_s``, time map) and by what
  (``placed_by``);
* ``no match``: nothing in the song stands out for it (a take of another song, no singing, lips
  too small to read): its best score is reported and it is not placed, never given a made-up
  offset (`avsync.align.place.is_match`);
* ``failed``: a user-facing error (unreadable file, no face, too short), reported in one line;
  the other shots go on.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from avsync.errors import AvsyncError
from avsync.io.media import MediaInfo, atomic_path, keep_existing
from avsync.pipeline.checks import SyncInputs, check_reference, check_video
from avsync.pipeline.report import song_span, to_json
from avsync.pipeline.shot_files import collect_shots
from avsync.signals import Terminated, raise_if_stopped

if TYPE_CHECKING:
    from avsync.features.cache import FeatureCache
    from avsync.features.extract import AudioFeatures, VisualFeatures, VisualParams
    from avsync.models.checkpoints import LoadedModel
    from avsync.pipeline.shot_features import LipsReader

STATUSES = ("placed", "no match", "failed")
SUMMARY_FIELDS = ("shot", "status", "song_start_s", "song_end_s", "offset_s", "offset_frames", "confidence",
                  "confidence_level", "placed_by", "camera_audio_offset_s", "retimed_percent", "warnings", "error", "report",
                  "output")  # fmt: skip


@dataclass(frozen=True)
class Shot:
    """One shot to align: its file, the name its outputs take (unique within the batch) and, when
    its report is to say what it was computed from, its `avsync.pipeline.resume.shot_key`."""

    path: Path
    name: str
    key: dict | None = field(default=None, compare=False, hash=False)


def find_shots(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The shot files: each path as given, a folder replaced by its video files (`collect_shots`, not recursive).

    Args:
        paths: files and folders.

    Raises:
        AvsyncError: a folder without any video file.
    """
    return collect_shots(paths).paths


def name_shots(paths: Sequence[Path]) -> list[Shot]:
    """Give every shot a unique output name: its file stem, with ``-2``, ``-3``... on repeats."""
    seen: dict[str, int] = {}
    shots = []
    for path in paths:
        stem = path.stem or "shot"
        count = seen.get(stem.lower(), 0) + 1
        seen[stem.lower()] = count
        shots.append(Shot(path, stem if count == 1 else f"{stem}-{count}"))
    return shots


@dataclass(frozen=True)
class BatchSettings:
    """What every shot of a batch shares (plain values, so worker processes can receive it).

    Attributes:
        music: the song (the synced videos' audio).
        vocal: its isolated vocal (the alignment follows it), or None.
        out_dir: where each shot's report, plot and video go.
        checkpoint: the model (`avsync.models.checkpoints.load_model`), None for the shipped one.
        device: ``auto``, ``cpu`` or ``cuda``.
        mode: ``warp`` or ``offset`` (how a rendered video is synced).
        render: write each placed shot's synced video (``NAME.synced.mp4``).
        face: which face to follow (``--face``).
        cache_dir: feature cache folder, or None.
        song_cache: the feature cache for the song's features and the model's embedding of it
            (`avsync.pipeline.sync.analyse`); None: `cache_dir`'s.
        progress: per-shot progress bars (one worker only).
        force: replace existing outputs (else an output that appears meanwhile is kept).
        replaceable: absolute paths of files an earlier run wrote here (`avsync.pipeline.resume`):
            a shot whose existing outputs are all among them replaces them without `force`.
        camera_audio: match each shot's own audio against the music too (`avsync.pipeline.camera_audio`).
    """

    music: Path
    vocal: Path | None
    out_dir: Path
    checkpoint: str | None = None
    device: str = "auto"
    mode: str = "warp"
    render: bool = False
    face: str = "largest"
    cache_dir: Path | None = None
    song_cache: FeatureCache | None = None
    progress: bool = True
    force: bool = False
    replaceable: frozenset[str] = frozenset()
    camera_audio: bool = True

    def visual_params(self) -> VisualParams:
        """How every shot's lips are read (`avsync.features.extract.VisualParams`)."""
        from avsync.features.extract import VisualParams

        return VisualParams.following(self.face)


@dataclass
class ShotOutcome:
    """How one shot ended (`STATUSES`), with its report (as saved) or its error, and how it is synced (``mode``);
    ``resumed``: its report was current, kept from an earlier run (`resumed_outcome`)."""

    shot: str
    name: str
    status: str
    mode: str = "warp"
    report: dict | None = None
    error: str | None = None
    report_path: str | None = None
    seconds: float = 0.0
    resumed: bool = False

    def summary_row(self) -> dict:
        """One row of the summary table (`SUMMARY_FIELDS`): times in seconds of the song."""
        row = dict.fromkeys(SUMMARY_FIELDS)
        row.update(shot=self.shot, status=self.status, error=self.error, report=self.report_path)
        if self.report is not None:
            start, end = song_span(self.report, self.mode)
            row.update(song_start_s=round(start, 3), song_end_s=round(end, 3), offset_s=self.report["offset_s"],
                       offset_frames=self.report["offset_frames"], confidence=self.report["confidence"],
                       confidence_level=self.report["confidence_level"],
                       retimed_percent=round(100 * self.report["retimed_fraction"], 1),
                       warnings=" | ".join(self.report["warnings"]), output=self.report.get("output"),
                       placed_by=self.report.get("placed_by"),
                       camera_audio_offset_s=(self.report.get("camera_audio") or {}).get("offset_s"))  # fmt: skip
        return row


def output_paths(shot: Shot, settings: BatchSettings) -> dict[str, Path]:
    """The files a shot may write: ``report``, ``plot`` and (when rendering) ``video``."""
    paths = {"report": settings.out_dir / f"{shot.name}.json", "plot": settings.out_dir / f"{shot.name}.png"}
    if settings.render:
        paths["video"] = settings.out_dir / f"{shot.name}.synced.mp4"
    return paths


@dataclass(frozen=True)
class Song:
    """The song every shot is aligned to: its headers, checked once, and the features the lips follow.

    Attributes:
        music_info: the music's header.
        vocal_info: the vocal's header, or None.
        features: the log-mel of the vocal when given, else of the music.
        music_features: the music's log-mel when `features` is the vocal's and the shots' own
            audio is matched against the music (`BatchSettings.camera_audio`), else None.
    """

    music_info: MediaInfo
    vocal_info: MediaInfo | None
    features: AudioFeatures
    music_features: AudioFeatures | None = None


def load_song(settings: BatchSettings) -> Song:
    """Check the song's headers and load the features every shot is aligned to.

    Raises:
        MediaError: unreadable, too short or silent.
    """
    from avsync.pipeline.sync import load_reference

    music_info, vocal_info = check_reference(settings.music), None if settings.vocal is None else check_reference(settings.vocal)
    cache = settings.cache_dir if settings.song_cache is None else settings.song_cache
    music_features = None
    if settings.vocal is not None and settings.camera_audio:
        music_features = load_reference(settings.music, cache)
    return Song(music_info, vocal_info, load_reference(settings.vocal or settings.music, cache), music_features)


class ShotAligner:
    """Aligns shots one at a time against one song, with the model loaded once.

    Args:
        settings: what the shots share.
        song: from `load_song`.
    """

    def __init__(self, settings: BatchSettings, song: Song) -> None:
        self.settings = settings
        self.song = song
        self._model: LoadedModel | None = None

    def load(self) -> LoadedModel:
        """The model, loaded on first use.

        Raises:
            AvsyncError: the checkpoint cannot be loaded.
        """
        if self._model is None:
            from avsync.models.runtime import load_inference_model

            self._model = load_inference_model(self.settings.checkpoint, self.settings.device)
            # what is loaded now lives for the whole batch: keep the per-shot collection off it
            # (a full collection walks ~280,000 objects, 0.2 s; the shot's own objects alone take ~0)
            gc.collect()
            gc.freeze()
        return self._model

    def align(self, shot: Shot, lips: Callable[..., VisualFeatures] | None = None) -> ShotOutcome:
        """Align one shot and write its outputs; a user-facing error makes it ``failed``, not an exception.

        Args:
            shot: the shot.
            lips: returns its features when they were read elsewhere (`read_ahead`), else None.
        """
        from avsync.pipeline.outputs import write_outputs
        from avsync.pipeline.sync import analyse

        started = time.perf_counter()
        settings = self.settings
        paths = output_paths(shot, settings)
        before = {kind: _file_identity(path) for kind, path in paths.items()}
        try:
            model = self.load()
            inputs = SyncInputs(shot.path, check_video(shot.path), settings.music, self.song.music_info, settings.vocal,
                                self.song.vocal_info)  # fmt: skip
            analysis = analyse(inputs, model, cache_dir=settings.cache_dir, visual_params=settings.visual_params(),
                               audio=self.song.features, shot=lips, camera_audio=settings.camera_audio,
                               music_audio=self.song.music_features, song_cache=settings.song_cache,
                               progress=settings.progress)  # fmt: skip
            matched = analysis.placed_by is not None
            status = "placed" if matched else "no match"
            video = paths.get("video") if matched else None
            existing = [os.path.abspath(path) for kind, path in paths.items() if before[kind] is not None]
            replace_all = settings.force or (existing and settings.replaceable.issuperset(existing))
            with contextlib.nullcontext() if replace_all else keep_existing():
                report = write_outputs(analysis, output=video, report_path=None, plot_path=paths["plot"], mode=settings.mode,
                                       span="video", started=started, progress=settings.progress).to_dict()  # fmt: skip
                if shot.key is not None:  # what it was computed from and what it wrote: a rerun may keep it
                    written = [paths["report"], paths["plot"]] + ([video] if video is not None else [])
                    report["batch"] = {"key": shot.key, "status": status, "files": [os.path.abspath(path) for path in written]}
                with atomic_path(paths["report"]) as temporary:
                    Path(temporary).write_text(to_json(report) + "\n")
        except AvsyncError as exc:
            _remove_new_files(paths, before)
            return ShotOutcome(os.fspath(shot.path), shot.name, "failed", settings.mode, error=str(exc),
                               seconds=time.perf_counter() - started)  # fmt: skip
        except BaseException:  # Ctrl-C, SIGTERM: the shot is unfinished, so none of its files stays
            _remove_new_files(paths, before)
            raise
        finally:
            # a shot's analysis (cost matrices, plot) sits in reference cycles: collect it now, so memory
            # stays at one shot's peak (measured: +27 MB per 30-s shot against a 3-minute song otherwise)
            gc.collect()
        return ShotOutcome(os.fspath(shot.path), shot.name, status, settings.mode, report=report,
                           report_path=os.fspath(paths["report"]), seconds=time.perf_counter() - started)  # fmt: skip


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(inode, modification time) of a file, None when there is none: an atomic replace changes it."""
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_ino, status.st_mtime_ns)


def _remove_new_files(paths: dict[str, Path], before: dict[str, tuple[int, int] | None]) -> None:
    """Remove the outputs written since `before` was taken (a shot that did not finish leaves none)."""
    for kind, path in paths.items():
        now = _file_identity(path)
        if now is not None and now != before[kind]:
            path.unlink(missing_ok=True)


def resumed_outcome(shot: Shot, settings: BatchSettings) -> ShotOutcome | None:
    """The outcome of a shot whose saved report is current (`avsync.pipeline.resume.current_outcome`), else None."""
    from avsync.pipeline.resume import current_outcome, read_report

    if shot.key is None:
        return None
    report_path = output_paths(shot, settings)["report"]
    report = current_outcome(read_report(report_path), shot.key)
    if report is None:
        return None
    return ShotOutcome(os.fspath(shot.path), shot.name, report["batch"]["status"], settings.mode, report=report,
                       report_path=os.fspath(report_path), resumed=True)  # fmt: skip


def with_keys(shots: Sequence[Shot], base: dict) -> list[Shot]:
    """The shots, each with its `avsync.pipeline.resume.shot_key` (None where the file cannot be read: it fails later)."""
    from avsync.pipeline.resume import shot_key

    keyed = []
    for shot in shots:
        try:
            keyed.append(replace(shot, key=shot_key(base, shot.path)))
        except AvsyncError:
            keyed.append(shot)
    return keyed


def read_ahead(reader: LipsReader) -> Callable[..., VisualFeatures]:
    """Take the features `reader` was asked for, as `ShotAligner.align`'s ``lips``: they (or the
    user error reading them raised) come back when the shot's analysis asks, so that the next shot
    can be requested first. (Read already, they have no crops to hand over as they are cut: the
    analysis's ``on_crops`` goes unused.)"""
    try:
        features = reader.result()
    except AvsyncError as exc:
        error = exc

        def failed(on_crops: object = None) -> VisualFeatures:
            raise error

        return failed
    return lambda on_crops=None: features


_worker: ShotAligner | None = None
_worker_busy = False
_worker_stopping = False


def _init_worker(settings: BatchSettings, song: Song, threads: int) -> None:
    """A ``--jobs`` worker: Ctrl-C is the parent's to handle (it stops the workers with SIGTERM)."""
    from avsync.models.runtime import set_threads

    global _worker
    worker_signals()
    set_threads(threads)
    _worker = ShotAligner(settings, song)


def worker_signals() -> None:
    """How a ``--jobs`` worker stops: Ctrl-C is ignored (a terminal sends it to the whole group; the
    parent stops its workers), SIGTERM unwinds the shot it is aligning (`_stop_worker`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)


def _stop_worker(signum: int, frame: object) -> None:
    """SIGTERM in a worker: unwind the shot it is aligning (its files go), or end quietly between shots;
    a shot already queued for it is not started (`_align_in_worker`)."""
    global _worker_stopping
    _worker_stopping = True
    if _worker_busy:
        raise Terminated
    raise SystemExit(0)  # waiting for work: nothing to clean up; multiprocessing ends it without a traceback


def _align_in_worker(shot: Shot) -> ShotOutcome:
    global _worker_busy
    assert _worker is not None
    if _worker_stopping:
        raise Terminated
    _worker_busy = True
    try:
        return _worker.align(shot)
    finally:
        _worker_busy = False


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop every worker of `pool` (SIGTERM: each unwinds its shot), cancel what has not started, wait for them."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # the executor's own: no public way
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def align_shots(
    shots: Sequence[Shot],
    settings: BatchSettings,
    *,
    jobs: int = 1,
    on_done: Callable[[int, ShotOutcome], None] | None = None,
) -> list[ShotOutcome]:
    """Align every shot against the song; outcomes in the order of `shots`.

    Args:
        shots: from `name_shots`.
        settings: what the shots share.
        jobs: shots aligned at once, each in its own process with ``cores // jobs`` threads
            (1: in this process, one after another, while a forked worker reads the next
            shot's lips: `avsync.pipeline.shot_features.lips_reader`).
        on_done: called with (index in `shots`, outcome) as each shot finishes.

    Raises:
        AvsyncError: the song or the model cannot be loaded: nothing can be aligned.
    """
    outcomes: list[ShotOutcome | None] = [None] * len(shots)

    def finished(index: int, outcome: ShotOutcome) -> None:
        outcomes[index] = outcome
        if on_done is not None:
            on_done(index, outcome)

    if jobs <= 1 or len(shots) <= 1:
        from avsync.pipeline.shot_features import lips_reader

        with lips_reader() as reader:  # forked before torch loads; it reads shot k+1 while shot k is aligned
            visual_params = settings.visual_params()
            if reader is not None and shots:
                reader.request(shots[0].path, settings.cache_dir, visual_params, settings.progress)
            aligner = ShotAligner(settings, load_song(settings))  # a bad song ends the batch here, not once per shot
            aligner.load()
            for index, shot in enumerate(shots):
                raise_if_stopped()  # a stop that a finalizer swallowed ends the batch here at the latest
                lips = None
                if reader is not None:
                    lips = read_ahead(reader)
                    if index + 1 < len(shots):
                        reader.request(shots[index + 1].path, settings.cache_dir, visual_params, settings.progress)
                finished(index, aligner.align(shot, lips))
        return [outcome for outcome in outcomes if outcome is not None]
    song = load_song(settings)  # once for all shots; a bad song ends the batch here, not once per shot
    ShotAligner(settings, song).load()  # a bad checkpoint is one error here, not one per shot in the workers
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(shots)), mp_context=context, initializer=_init_worker,
                             initargs=(settings, song, threads)) as pool:  # fmt: skip
        futures = {pool.submit(_align_in_worker, shot): index for index, shot in enumerate(shots)}
        try:
            for future in as_completed(futures):
                finished(futures[future], future.result())
                raise_if_stopped()
        except BaseException:  # Ctrl-C, SIGTERM (or a bug): the workers stop now, not after their shots
            stop_pool(pool)
            raise
    return [outcome for outcome in outcomes if outcome is not None]


def summary_paths(out_dir: str | os.PathLike[str], shard: tuple[int, int] = (0, 1)) -> dict[str, Path]:
    """The summary files of a batch: ``summary.json``, ``.csv``, ``.png``; ``summary.shard-I-of-N.*`` for one shard of N."""
    stem = "summary" if shard[1] == 1 else f"summary.shard-{shard[0]}-of-{shard[1]}"
    return {kind: Path(out_dir) / f"{stem}.{kind}" for kind in ("json", "csv", "png")}


def write_summary(outcomes: Sequence[ShotOutcome], paths: dict[str, Path], music: str, run: dict,
                  written: dict[str, list[str]] | None = None) -> None:  # fmt: skip
    """Write the summary JSON (the run's settings, the counts, a row per shot, the files written) and CSV (the rows).

    Args:
        outcomes: from `align_shots`.
        paths: from `summary_paths` (``json`` and ``csv`` are written).
        music: the song.
        run: what else describes the run (model, mode, shard, runtime).
        written: shot path -> the files written for it, ``""`` -> the run's own (the timeline's):
            what a later ``--force`` run may remove (`avsync.pipeline.resume.stale_files`).
    """
    rows = [outcome.summary_row() for outcome in outcomes]
    counts = {status: sum(row["status"] == status for row in rows) for status in STATUSES}
    document = {"music": music, **run, "counts": counts, "shots": rows, "written": written or {}}
    with atomic_path(paths["json"]) as temporary:
        Path(temporary).write_text(to_json(document) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(paths["csv"]) as temporary:
        Path(temporary).write_text(buffer.getvalue())


def format_table(outcomes: Sequence[ShotOutcome]) -> str:
    """The summary table `avsync align` prints for a batch (one line per shot)."""
    header = f"{'shot':<28} {'status':<9} {'song s':>15} {'offset s':>9} {'confidence':>18} {'re-timed':>8}  warnings"
    lines = [header, "-" * len(header)]
    for outcome in outcomes:
        row = outcome.summary_row()
        name = outcome.name if len(outcome.name) <= 28 else outcome.name[:25] + "..."
        if outcome.report is None:
            lines.append(f"{name:<28} {outcome.status:<9} {outcome.error}")
            continue
        place = f"{row['song_start_s']:.2f}-{row['song_end_s']:.2f}" if outcome.status == "placed" else "-"
        offset = f"{row['offset_s']:+.2f}" if outcome.status == "placed" else "-"
        confidence = f"{row['confidence']:.2f} {row['confidence_level']}"
        count = len(outcome.report["warnings"])
        lines.append(f"{name:<28} {outcome.status:<9} {place:>15} {offset:>9} {confidence:>18} {row['retimed_percent']:7.1f}%  {count}")
    return "\n".join(lines)
