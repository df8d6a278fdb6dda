"""Content-keyed feature cache: each media file's features are computed once, then loaded.

Layout: ``ROOT/<kind>/<h[:2]>/<h>-<p>.npz`` with ``kind`` = ``visual`` or ``audio``, ``h`` the
BLAKE2b hash of the media file's bytes (renaming or moving a file keeps its entry) and ``p`` a
hash of the extraction parameters (including the extractor's version). Each ``.npz`` holds the
feature arrays plus ``meta`` (JSON: format, kind, parameters, source path, and the shape, dtype
and BLAKE2b checksum of every array). ``ROOT/embedding/<k[:2]>/<k>.npz`` holds a network's
embeddings of a reference (`FeatureCache.embedding`), ``k`` the hash of the log-mel's checksum and the
network's weights.

`avsync align` keeps the music's entries (log-mel and embeddings) in `user_cache_dir` when no
``--cache`` is given: the takes of one song, aligned one command at a time, compute them once.

- Atomic: entries are written to a temporary file in the same folder, then renamed.
- Verified: an entry whose file cannot be read, whose metadata does not match its key, or whose
  arrays do not match their recorded checksums is treated as missing and rebuilt.
- Safe with several processes: computing an entry holds an exclusive ``fcntl.flock`` on
  ``<entry>.lock``; a second process asking for the same entry waits, then loads it.

`prepare_manifest` fills the cache for a whole manifest (``avsync prepare``), over a process
pool, optionally for one shard of the clips so several machines can share a large dataset.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from avsync.errors import AvsyncError, MediaError
from avsync.features.audio import MelConfig
from avsync.features.extract import (
    AudioFeatures,
    VisualFeatures,
    VisualParams,
    audio_params,
    extract_audio,
    extract_visual,
)
from avsync.features.landmarks import check_fan_weights
from avsync.features.manifest import ClipRecord
from avsync.io.digest import array_checksum, digest
from avsync.io.files import atomic_path, remove_stale_temporaries
from avsync.shards import in_shard

CACHE_FORMAT = 1
HASH_CHUNK = 1 << 20
CACHE_ENV = "AVSYNC_CACHE_DIR"
"""Environment variable naming the user's cache folder (`user_cache_dir`); empty: none."""
EMBEDDING_FORMAT = 1
"""Version of the embedding entries' key (`FeatureCache.embedding`)."""
log = logging.getLogger(__name__)

T = TypeVar("T")


_file_hashes: dict[tuple, str] = {}


def file_hash(path: str | os.PathLike[str]) -> str:
    """BLAKE2b (128-bit, hex) of a file's bytes; remembered per process while the file is unchanged.

    Args:
        path: the file.

    Raises:
        MediaError: the file is missing or unreadable.
    """
    try:
        stat = os.stat(path)
        key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key not in _file_hashes:
            hasher = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as handle:
                while chunk := handle.read(HASH_CHUNK):
                    hasher.update(chunk)
            _file_hashes[key] = hasher.hexdigest()
        return _file_hashes[key]
    except FileNotFoundError as exc:
        raise MediaError("file not found", path) from exc
    except IsADirectoryError as exc:
        raise MediaError("is a folder, not a media file", path) from exc
    except OSError as exc:
        raise MediaError(f"cannot be read ({exc.strerror})", path) from exc


def user_cache_dir() -> Path | None:
    """The folder `avsync align` keeps the music's features in by default, or None where there is none.

    ``$AVSYNC_CACHE_DIR`` when set (empty: none), else ``$XDG_CACHE_HOME/avsync``, else
    ``~/.cache/avsync``. A folder that cannot be made or written is no cache (None): the user did
    not ask for it, so it is no error either; the features are computed as without a cache.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        if not configured.strip():
            return None
        folder = Path(configured).expanduser()
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "avsync"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def params_hash(params: dict) -> str:
    """Short hash (64-bit, hex) of a parameter dict (canonical JSON)."""
    return digest(json.dumps(params, sort_keys=True, default=str).encode(), size=8)


class CorruptEntry(Exception):
    """A cache entry that cannot be used (unreadable, incomplete or not matching its key)."""


def _unwritable(exc: OSError, path: Path) -> AvsyncError:
    """The one-line error for a cache file that cannot be written (read-only file system, no permission, ...)."""
    return AvsyncError(f"cannot write the feature cache ({exc.strerror or exc}); use another --cache or none", path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if needed) for the block.

    Raises:
        AvsyncError: the lock file cannot be made (read-only file system, a folder in its place, ...).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")
    except OSError as exc:
        raise _unwritable(exc, path) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def audio_features(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | FeatureCache | None,
                   mel_cfg: MelConfig = MelConfig()) -> AudioFeatures:  # fmt: skip
    """A file's log-mel: through the feature cache in `cache_dir`, or computed without one (None).

    Args:
        path: an audio file, or a video file (its own audio track).
        cache_dir: feature cache folder (or the `FeatureCache` itself), or None.
        mel_cfg: log-mel parameters.

    Raises:
        MediaError: missing or unreadable file, or no audio stream.
    """
    if cache_dir is None:
        return extract_audio(path, mel_cfg)
    return (cache_dir if isinstance(cache_dir, FeatureCache) else FeatureCache(cache_dir)).audio(path, mel_cfg)


def visual_features(video: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None,
                    params: VisualParams = VisualParams(), progress: bool = False,
                    on_crops: Callable[[list[np.ndarray]], None] | None = None) -> VisualFeatures:  # fmt: skip
    """A video's mouth crops and landmarks: through the feature cache in `cache_dir`, or computed without one (None).

    Args:
        video: the video file.
        cache_dir: feature cache folder, or None.
        params: extraction parameters.
        progress: show a per-frame progress bar while extracting.
        on_crops: given the mouth crops as they are cut, when they are extracted (`extract_visual`);
            never called for features loaded from the cache.

    Raises:
        MediaError: missing or unreadable video.
    """
    if cache_dir is None:
        return extract_visual(video, params, progress, on_crops)
    return FeatureCache(cache_dir).visual(video, params, progress, on_crops)


class FeatureCache:
    """Feature cache under a root folder (layout and guarantees in the module docstring).

    Args:
        root: the cache folder (created on first write).
        best_effort: a cache the user did not ask for (`user_cache_dir`): where it cannot be
            written (a full disk, a folder in an entry's place), features are computed without it
            and a warning is logged, instead of the error that ``--cache DIR`` gets.

    Attributes:
        stats: counts of ``hit`` (loaded), ``computed`` (missing, extracted), ``rebuilt``
            (corrupt, extracted again) and ``uncached`` (computed, the cache not writable) entries
            since this object was made.
    """

    def __init__(self, root: str | os.PathLike[str], best_effort: bool = False) -> None:
        self.root = Path(root)
        self.best_effort = best_effort
        self.stats: Counter[str] = Counter()

    def entry_path(self, kind: str, media_path: str | os.PathLike[str], params: dict) -> Path:
        """Where the entry of one media file and parameter set lives.

        Args:
            kind: ``"visual"`` or ``"audio"``.
            media_path: the media file (its content is hashed).
            params: the extraction parameters.
        """
        content = file_hash(media_path)
        return self.root / kind / content[:2] / f"{content}-{params_hash(params)}.npz"

    def visual(self, video_path: str | os.PathLike[str], params: VisualParams = VisualParams(),
               progress: bool = False, on_crops: Callable[[list[np.ndarray]], None] | None = None) -> VisualFeatures:  # fmt: skip
        """Visual features of a video: loaded from the cache, or extracted and stored.

        Args:
            video_path: the video file.
            params: extraction parameters.
            progress: show a per-frame progress bar while extracting.
            on_crops: given the mouth crops as they are cut while extracting (`extract_visual`).

        Raises:
            MediaError: missing or unreadable video.
        """
        key = params.params()
        return self._get(
            self.entry_path("visual", video_path, key), {"kind": "visual", "params": key}, os.fspath(video_path),
            lambda: extract_visual(video_path, params, progress, on_crops).to_arrays(), lambda a: VisualFeatures.from_arrays(a, key),
        )  # fmt: skip

    def audio(self, audio_path: str | os.PathLike[str], mel_cfg: MelConfig = MelConfig()) -> AudioFeatures:
        """Audio features (log-mel) of a file: loaded from the cache, or extracted and stored.

        Args:
            audio_path: an audio file, or a video file (its own audio track).
            mel_cfg: log-mel parameters.

        Raises:
            MediaError: missing or unreadable file, or no audio stream.
        """
        key = audio_params(mel_cfg)
        return self._get(
            self.entry_path("audio", audio_path, key), {"kind": "audio", "params": key}, os.fspath(audio_path),
            lambda: extract_audio(audio_path, mel_cfg).to_arrays(), lambda a: AudioFeatures.from_arrays(a, key),
        )  # fmt: skip

    def embedding(self, key: dict, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """A network's embeddings of a reference: loaded from the cache, or computed and stored.

        Args:
            key: what the embeddings depend on (the log-mel's checksum and shape, the network's
                weights; `avsync.align.cost`), JSON-serialisable.
            compute: returns them, float ``[M, D]``.
        """
        params = {**key, "version": EMBEDDING_FORMAT}
        name = digest(json.dumps(params, sort_keys=True).encode())
        entry = self.root / "embedding" / name[:2] / f"{name}.npz"
        return self._get(entry, {"kind": "embedding", "params": params}, "", lambda: {"embedding": compute()},
                         lambda a: a["embedding"])  # fmt: skip

    def _get(
        self,
        entry: Path,
        meta: dict,
        source: str,
        compute: Callable[[], dict[str, np.ndarray]],
        rebuild: Callable[[dict[str, np.ndarray]], T],
    ) -> T:
        """An entry's value: loaded and verified, or computed (under the entry's lock) and stored.

        Args:
            entry: the entry's file.
            meta: what its metadata must say (``kind``, ``params``; the format is added here).
            source: the media file it comes from (recorded), or empty.
            compute: the arrays to store when the entry is missing or corrupt.
            rebuild: the value from the arrays.
        """
        meta = {"format": CACHE_FORMAT, **meta}
        if entry.is_dir():  # never removed: a folder is not ours to delete
            problem = AvsyncError("is a folder where the feature cache keeps a file; remove it or use another --cache", entry)
            return self._without_cache(problem, compute, rebuild)
        try:
            features = self._load(entry, meta, rebuild)
            self.stats["hit"] += 1
            return features
        except FileNotFoundError:
            pass
        except CorruptEntry:
            pass  # rebuilt below, under the lock
        with ExitStack() as held:
            try:
                held.enter_context(_locked(entry.with_suffix(".lock")))
            except AvsyncError as problem:
                return self._without_cache(problem, compute, rebuild)
            corrupt = False
            try:  # another process may have written it meanwhile
                features = self._load(entry, meta, rebuild)
                self.stats["hit"] += 1
                return features
            except FileNotFoundError:
                pass
            except CorruptEntry as exc:
                log.warning("cache entry %s is corrupt (%s); rebuilding it", entry, exc)
                corrupt = True
            arrays = compute()  # its own errors (the input's) are never the cache's
            try:
                self._store(entry, {**meta, "source": source}, arrays)
            except AvsyncError as problem:  # a full disk, ...
                return self._without_cache(problem, lambda: arrays, rebuild)
            self.stats["rebuilt" if corrupt else "computed"] += 1
            return rebuild(arrays)

    def _without_cache(self, problem: AvsyncError, arrays: Callable[[], dict[str, np.ndarray]],
                       rebuild: Callable[[dict[str, np.ndarray]], T]) -> T:  # fmt: skip
        """The value where the cache cannot keep it: `problem` raised, or for a `best_effort` cache a
        warning and the value of `arrays` (computed now, or already)."""
        if not self.best_effort:
            raise problem
        log.warning("%s; computed without the cache", problem)
        self.stats["uncached"] += 1
        return rebuild(arrays())

    @staticmethod
    def _store(entry: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        meta = {
            **meta,
            "arrays": {
                name: {"shape": list(a.shape), "dtype": a.dtype.str, "blake2b": array_checksum(a)} for name, a in arrays.items()
            },
        }
        remove_stale_temporaries(entry)  # of a process killed while it wrote this entry
        try:
            with atomic_path(entry) as temporary, open(temporary, "wb") as handle:
                np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        except OSError as exc:  # e.g. the entry became a folder meanwhile (a full disk is DiskFullError already)
            raise _unwritable(exc, entry) from exc

    @staticmethod
    def _load(entry: Path, expected: dict, rebuild: Callable[[dict[str, np.ndarray]], T]) -> T:
        """Read and verify an entry.

        Raises:
            FileNotFoundError: no entry.
            CorruptEntry: the entry exists but cannot be trusted.
        """
        try:
            with np.load(entry, allow_pickle=False) as stored:
                meta = json.loads(str(stored["meta"]))
                arrays = {name: stored[name] for name in meta["arrays"]}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise CorruptEntry(f"unreadable: {exc.__class__.__name__}: {exc}") from exc
        for key, value in expected.items():
            if meta.get(key) != json.loads(json.dumps(value, default=str)):
                raise CorruptEntry(f"{key} does not match the key")
        for name, array in arrays.items():
            record = meta["arrays"][name]
            if list(array.shape) != record["shape"] or array.dtype.str != record["dtype"]:
                raise CorruptEntry(f"array {name} has shape {array.shape} {array.dtype}, expected {record}")
            if array_checksum(array) != record["blake2b"]:
                raise CorruptEntry(f"array {name} does not match its checksum")
        try:
            return rebuild(arrays)
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptEntry(f"incomplete: {exc.__class__.__name__}: {exc}") from exc


@dataclass
class ClipOutcome:
    """What preparing one clip did.

    Attributes:
        id: the clip.
        status: ``"computed"`` (some feature extracted), ``"cached"`` (all loaded) or ``"failed"``.
        error: the one-line error of a failed clip.
        frames: video frames (25 fps).
        invalid: reason -> number of frames without a usable face.
    """

    id: str
    status: str
    error: str = ""
    frames: int = 0
    invalid: Counter[str] = field(default_factory=Counter)


@dataclass
class PrepareReport:
    """Outcome of `prepare_manifest`.

    Attributes:
        outcomes: one per prepared clip, in manifest order.
    """

    outcomes: list[ClipOutcome]

    def count(self, status: str) -> int:
        """Clips with this status."""
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def failures(self) -> list[ClipOutcome]:
        """The failed clips."""
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]

    def summary(self) -> str:
        """One line: clips computed/cached/failed, frames, and frames without a usable face by reason."""
        frames = sum(outcome.frames for outcome in self.outcomes)
        invalid: Counter[str] = sum((outcome.invalid for outcome in self.outcomes), Counter())
        reasons = ", ".join(f"{reason}: {count}" for reason, count in invalid.most_common())
        return (
            f"{len(self.outcomes)} clips: {self.count('computed')} computed, {self.count('cached')} cached, "
            f"{self.count('failed')} failed; {frames} frames, {sum(invalid.values())} without a usable face"
            + (f" ({reasons})" if reasons else "")
        )


def select_shard(records: list[ClipRecord], shard: tuple[int, int]) -> list[ClipRecord]:
    """The records of shard ``(index, count)``: those whose id hashes to `index` modulo `count`.

    Hashing ids (not positions) keeps every clip in the same shard when the manifest grows.
    """
    return [record for record in records if in_shard(record.id, shard)]


def prepare_clip(record: ClipRecord, cache: FeatureCache, params: VisualParams, mel_cfg: MelConfig) -> ClipOutcome:
    """Put one clip's features in the cache: its video, reference audio and accompaniment.

    A user-side problem (missing or unreadable media) makes the clip ``failed``; other errors
    are bugs and propagate.
    """
    before = Counter(cache.stats)
    try:
        visual = cache.visual(record.video, params)
        cache.audio(record.reference_audio, mel_cfg)
        if record.accompaniment is not None:
            cache.audio(record.accompaniment, mel_cfg)
    except AvsyncError as exc:
        return ClipOutcome(record.id, "failed", error=str(exc))
    work = cache.stats - before
    status = "computed" if work["computed"] or work["rebuilt"] else "cached"
    invalid = Counter(reason for reason in visual.invalid_reason if reason)
    return ClipOutcome(record.id, status, frames=len(visual), invalid=invalid)


def _prepare_in_worker(record: ClipRecord, root: str, params: VisualParams, mel_cfg: MelConfig) -> ClipOutcome:
    return prepare_clip(record, FeatureCache(root), params, mel_cfg)


def _init_worker() -> None:
    """One compute thread per worker process: the processes are the parallelism."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def prepare_manifest(
    records: list[ClipRecord],
    cache: FeatureCache,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    params: VisualParams = VisualParams(),
    mel_cfg: MelConfig = MelConfig(),
    progress: bool = True,
) -> PrepareReport:
    """Fill the cache with the features of every clip of a manifest (or of one shard of it).

    Clips already cached are only loaded and checked; several processes or machines may prepare
    the same cache at once (entries are locked while computed).

    Args:
        records: the manifest's clips.
        cache: the feature cache.
        workers: parallel processes (clips are spread over them).
        shard: ``(index, count)``: prepare only this shard (`select_shard`).
        params: visual extraction parameters.
        mel_cfg: log-mel parameters.
        progress: show a progress bar (stderr).

    Returns:
        The `PrepareReport` (failed clips included, not raised).

    Raises:
        AvsyncError: bad `workers`, or the FAN backend's weights are missing.
    """
    if workers < 1:
        raise AvsyncError(f"workers must be at least 1, got {workers}")
    if params.backend == "fan":
        check_fan_weights(params.fan_detector)
    chosen = select_shard(records, shard)
    outcomes: dict[str, ClipOutcome] = {}
    bar = tqdm(total=len(chosen), unit="clip", desc="prepare", disable=not progress, dynamic_ncols=True)

    def done(outcome: ClipOutcome) -> None:
        outcomes[outcome.id] = outcome
        bar.update()
        bar.set_postfix(failed=sum(o.status == "failed" for o in outcomes.values()), refresh=False)

    with bar:
        if workers == 1 or len(chosen) <= 1:
            for record in chosen:
                done(prepare_clip(record, cache, params, mel_cfg))
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(chosen)), mp_context=context, initializer=_init_worker) as pool:
                futures = [pool.submit(_prepare_in_worker, r, os.fspath(cache.root), params, mel_cfg) for r in chosen]
                for future in as_completed(futures):
                    done(future.result())
    return PrepareReport([outcomes[record.id] for record in chosen])


@dataclass
class ClipFeatures:
    """A training clip: a video's mouth crops paired with its reference audio, same length.

    Attributes:
        id: the manifest record's id.
        split: ``"train"``, ``"val"`` or ``"test"``.
        mouth_crops: uint8 ``[T, size, size]`` (or ``[T, size, size, 3]``).
        valid: bool ``[T]``.
        log_mel: float32 ``[n_mels, mels_per_frame * T]`` of the reference audio.
        accompaniment_mel: float32 ``[n_mels, mels_per_frame * T]`` of the accompaniment, when
            requested and available (for augmentation), else None.
        fps: frame rate (25.0).
        speaker: the record's speaker, if known.
        landmarks: float32 ``[T, 68, 2]``, NaN where no face (None for clips made in memory).
    """

    id: str
    split: str
    mouth_crops: np.ndarray
    valid: np.ndarray
    log_mel: np.ndarray
    accompaniment_mel: np.ndarray | None
    fps: float
    speaker: str | None = None
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.valid)


def load_clip(
    record: ClipRecord,
    cache: FeatureCache,
    params: VisualParams = VisualParams(),
    mel_cfg: MelConfig = MelConfig(),
    accompaniment: bool = False,
) -> ClipFeatures:
    """Features of a manifest record from the cache (computed on a miss), cut to one length.

    The reference audio is the vocal stem when present, else the record's audio, else the
    video's own audio track (`ClipRecord.reference_audio`).

    Args:
        record: the clip.
        cache: the feature cache.
        params: visual extraction parameters.
        mel_cfg: log-mel parameters.
        accompaniment: also load the accompaniment's log-mel (None when the record has none).

    Returns:
        The clip's `ClipFeatures`, video and audio in sync (corrected by the record's `av_offset`),
        ``T = min(video frames, audio frames)``.

    Raises:
        MediaError: a missing or unreadable media file.
    """
    visual = cache.visual(record.video, params)
    reference = cache.audio(record.reference_audio, mel_cfg)
    extra = cache.audio(record.accompaniment, mel_cfg) if accompaniment and record.accompaniment else None
    per_frame = mel_cfg.mels_per_frame
    # an audited clip whose picture is `av_offset` frames late starts its video that much later
    first_frame, first_column = max(record.av_offset, 0), per_frame * max(-record.av_offset, 0)
    frames = min(len(visual) - first_frame, (reference.log_mel.shape[1] - first_column) // per_frame)
    if extra is not None:
        frames = min(frames, (extra.log_mel.shape[1] - first_column) // per_frame)
    frames = max(frames, 0)
    columns = slice(first_column, first_column + per_frame * frames)
    return ClipFeatures(
        id=record.id,
        split=record.split,
        mouth_crops=visual.mouth_crops[first_frame : first_frame + frames],
        valid=visual.valid[first_frame : first_frame + frames],
        log_mel=reference.log_mel[:, columns],
        accompaniment_mel=None if extra is None else extra.log_mel[:, columns],
        fps=visual.fps,
        speaker=record.speaker,
        landmarks=visual.landmarks[first_frame : first_frame + frames],
    )
