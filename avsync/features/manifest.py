"""Clip manifests: one record per clip (video, reference audio, split, stems), and their readers.

Manifest file format (JSONL, one JSON object per line, ``#`` lines and blank lines ignored)::

    {"id": "song01", "video": "song01/Video.mp4", "audio": null, "split": "train",
     "vocal": "song01/Vocal.wav", "accompaniment": "song01/Accompaniment.wav",
     "truth": "song01/truth.json", "speaker": "singer3"}

``id``, ``video`` and ``split`` (train/val/test) are required; the rest may be absent or null.
Relative paths are relative to the manifest's folder. ``audio`` is the track the video is in
sync with (null: the video's own audio); ``vocal`` is the isolated voice, the preferred
alignment reference when present (`ClipRecord.reference_audio`). Real clips may carry
``av_offset`` (frames by which the picture is late on its own audio), ``truth_by`` (how that
offset was set: `TRUTH_BY`) and a ``note``.

`read_manifest` also accepts a folder:

- with a ``manifest.jsonl`` (the synthetic dataset of ``avsync synth``): that file;
- in the URSing layout (subfolders holding ``Mix.wav``, optionally ``Vocal.wav`` and
  ``Accompaniment.wav``, and one video): one clip per subfolder, ``audio`` = Mix.wav, split from
  ``split.csv`` (``id,split``) or else assigned 50/11.5/38.5 % (URSing's 13/3/10 of 26);
- any other folder: every video file below it (recursively) with its own audio; if a
  ``clips.csv`` with a ``path`` column is present, only the clips it lists, with its ``speaker``
  and ``split`` columns when it has them; speaker defaults to the file stem; splits are assigned
  80/10/10 % by speaker (a speaker never spans two splits).

Assigned splits are deterministic: groups are ranked by a hash of their name and cut in
proportion, so the same folder always gives the same split.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.io.files import atomic_path

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.jsonl"
URSING_SPLIT_NAME = "split.csv"
CLIPS_CSV_NAME = "clips.csv"
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".m4v"})
URSING_FRACTIONS = (13 / 26, 3 / 26)  # train, val; the rest is test
FOLDER_FRACTIONS = (0.8, 0.1)
PATH_FIELDS = ("video", "audio", "vocal", "accompaniment", "truth")
TRUTH_BY = ("dataset", "two witnesses", "unverified")
"""How a real clip's `av_offset` was set (``truth_by``): its dataset's published sync; the model-free
reference and a model that never saw the speaker agreeing (`avsync.evaluation.reaudit`); or neither
(kept for training, scored apart)."""


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a dataset; paths are absolute.

    Attributes:
        id: unique clip name.
        video: the video file.
        audio: the music/mix the video is in sync with; None: the video's own audio track.
        split: ``"train"``, ``"val"`` or ``"test"``.
        vocal: the isolated singing voice, if available.
        accompaniment: the music without the voice, if available.
        truth: per-frame ground truth (synthetic data), if available.
        speaker: who is on screen (keeps splits speaker-disjoint), if known.
        av_offset: frames (25 fps) by which the clip's own picture is late on its reference
            (positive: video late), found by an audit: video frame ``i`` belongs at reference
            frame ``i - av_offset``. Training pairs and evaluation truths correct for it.
        note: why the clip is corrected (or anything else worth knowing about it).
        truth_by: how `av_offset` was set, one of `TRUTH_BY` (None: not said, e.g. synthetic clips
            whose truth is generated).
    """

    id: str
    video: Path
    audio: Path | None
    split: str
    vocal: Path | None = None
    accompaniment: Path | None = None
    truth: Path | None = None
    speaker: str | None = None
    av_offset: int = 0
    note: str | None = None
    truth_by: str | None = None

    @property
    def reference_audio(self) -> Path:
        """The audio the lips are aligned with: the vocal stem, else the mix, else the video itself."""
        return self.vocal or self.audio or self.video

    def to_json(self, folder: Path) -> dict:
        """The manifest line of this record, with paths relative to `folder` where possible."""
        line: dict = {"id": self.id, "split": self.split, "speaker": self.speaker}
        for field in PATH_FIELDS:
            value = getattr(self, field)
            line[field] = None if value is None else _relative(value, folder)
        if self.av_offset:
            line["av_offset"] = self.av_offset
        if self.note:
            line["note"] = self.note
        if self.truth_by:
            line["truth_by"] = self.truth_by
        return line


def base_id(clip_id: str) -> str:
    """A manifest id without its ``#val``-style suffix (the same clip listed again in another split)."""
    return clip_id.split("#", 1)[0]


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path)


def rank_split(names: list[str], fractions: tuple[float, float]) -> dict[str, str]:
    """Assign splits deterministically: rank names by hash, cut train/val/test in proportion.

    Args:
        names: group names (clip ids or speakers); duplicates are counted once.
        fractions: ``(train, val)`` fractions; the rest goes to test.

    Returns:
        Name -> split.
    """
    unique = sorted(set(names), key=lambda name: hashlib.blake2b(name.encode(), digest_size=8).hexdigest())
    train_end = round(fractions[0] * len(unique))
    val_end = train_end + round(fractions[1] * len(unique))
    return {name: SPLITS[0] if i < train_end else SPLITS[1] if i < val_end else SPLITS[2] for i, name in enumerate(unique)}


def _check_split(split: str, where: str) -> str:
    if split not in SPLITS:
        raise AvsyncError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


def read_jsonl(path: str | os.PathLike[str]) -> list[ClipRecord]:
    """Read a JSONL manifest (format in the module docstring).

    Args:
        path: the ``.jsonl`` file.

    Returns:
        The records, in file order.

    Raises:
        AvsyncError: unreadable file, bad JSON, a missing required field, a bad split, or a
            repeated id (the message names the file and line).
    """
    manifest = Path(path)
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AvsyncError(f"cannot read manifest ({exc.strerror or exc})", manifest) from exc
    except UnicodeDecodeError as exc:
        raise AvsyncError("cannot read manifest (not UTF-8 text)", manifest) from exc
    folder = manifest.resolve().parent
    records: list[ClipRecord] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{manifest} line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AvsyncError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(entry, dict):
            raise AvsyncError(f"{where}: expected a JSON object")
        missing = [key for key in ("id", "video", "split") if not entry.get(key)]
        if missing:
            raise AvsyncError(f"{where}: missing {', '.join(missing)}")
        clip_id = str(entry["id"])
        if clip_id in seen:
            raise AvsyncError(f"{where}: id {clip_id!r} appears twice")
        seen.add(clip_id)
        paths = {field: (folder / entry[field]) if entry.get(field) else None for field in PATH_FIELDS}
        speaker = entry.get("speaker")
        av_offset = entry.get("av_offset", 0)
        if not isinstance(av_offset, int) or isinstance(av_offset, bool):
            raise AvsyncError(f"{where}: av_offset must be a whole number of frames, got {av_offset!r}")
        truth_by = entry.get("truth_by")
        if truth_by is not None and truth_by not in TRUTH_BY:
            raise AvsyncError(f"{where}: truth_by must be one of {', '.join(TRUTH_BY)}, got {truth_by!r}")
        records.append(
            ClipRecord(
                id=clip_id,
                split=_check_split(str(entry["split"]), where),
                speaker=None if speaker is None else str(speaker),
                av_offset=av_offset,
                note=entry.get("note"),
                truth_by=truth_by,
                **paths,
            )
        )
    if not records:
        raise AvsyncError("manifest lists no clips", manifest)
    return records


def write_manifest(records: list[ClipRecord], path: str | os.PathLike[str]) -> None:
    """Write records as a JSONL manifest (paths relative to its folder); atomic.

    Args:
        records: the clips.
        path: the ``.jsonl`` file to write.
    """
    target = Path(path)
    folder = target.resolve().parent
    with atomic_path(target) as temporary:
        temporary.write_text("".join(json.dumps(r.to_json(folder)) + "\n" for r in records), encoding="utf-8")


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AvsyncError(f"cannot read CSV ({exc})", path) from exc


def _video_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


def is_ursing(folder: Path) -> bool:
    """Whether a folder has the URSing layout (some subfolder holds a ``Mix.wav``)."""
    return any((sub / "Mix.wav").is_file() for sub in folder.iterdir() if sub.is_dir())


def read_ursing(folder: str | os.PathLike[str]) -> list[ClipRecord]:
    """Read a dataset in the URSing layout (see the module docstring).

    Args:
        folder: the dataset root.

    Returns:
        One record per song folder that has a ``Mix.wav`` and a video, sorted by id.

    Raises:
        AvsyncError: a song folder without a video, or a bad ``split.csv``.
    """
    root = Path(folder).resolve()
    songs = sorted(sub for sub in root.iterdir() if sub.is_dir() and (sub / "Mix.wav").is_file())
    split_file = root / URSING_SPLIT_NAME
    if split_file.is_file():
        rows = _read_csv(split_file)
        if rows and not {"id", "split"} <= set(rows[0]):
            raise AvsyncError("needs the columns id,split", split_file)
        splits = {row["id"]: _check_split(row["split"], str(split_file)) for row in rows}
    else:
        splits = rank_split([song.name for song in songs], URSING_FRACTIONS)
    records = []
    for song in songs:
        videos = _video_files(song)
        if not videos:
            raise AvsyncError("song folder has Mix.wav but no video file", song)
        if song.name not in splits:
            raise AvsyncError(f"song {song.name!r} is not listed", split_file)
        stems = {name: song / f"{name}.wav" for name in ("Vocal", "Accompaniment")}
        records.append(
            ClipRecord(
                id=song.name,
                video=videos[0],
                audio=song / "Mix.wav",
                split=splits[song.name],
                vocal=stems["Vocal"] if stems["Vocal"].is_file() else None,
                accompaniment=stems["Accompaniment"] if stems["Accompaniment"].is_file() else None,
                truth=song / "truth.json" if (song / "truth.json").is_file() else None,
            )
        )
    return records


def read_video_folder(folder: str | os.PathLike[str]) -> list[ClipRecord]:
    """Read a folder of videos that carry their own audio (see the module docstring).

    Args:
        folder: searched recursively; ids are the paths relative to it without the extension.

    Returns:
        Records sorted by id.

    Raises:
        AvsyncError: no video found, or a ``clips.csv`` listing a missing file or a bad split.
    """
    root = Path(folder).resolve()
    clips_csv = root / CLIPS_CSV_NAME
    rows: dict[Path, dict[str, str]] = {}
    table = _read_csv(clips_csv) if clips_csv.is_file() else []
    if table and "path" in table[0]:
        for row in table:
            video = root / row["path"]
            if not video.is_file():
                raise AvsyncError(f"lists {row['path']!r}, which does not exist", clips_csv)
            rows[video] = row
        videos = sorted(rows)
    else:
        videos = _video_files(root)
    if not videos:
        raise AvsyncError("no video files found (and no manifest.jsonl)", root)
    ids = {video: video.relative_to(root).with_suffix("").as_posix() for video in videos}
    speakers = {video: rows.get(video, {}).get("speaker") or video.stem for video in videos}
    assigned = rank_split(list(speakers.values()), FOLDER_FRACTIONS)
    records = []
    for video in videos:
        split = rows.get(video, {}).get("split") or assigned[speakers[video]]
        records.append(
            ClipRecord(
                id=ids[video],
                video=video,
                audio=None,
                split=_check_split(split, str(clips_csv)),
                speaker=speakers[video],
            )
        )
    return records


def read_manifest(path_or_dir: str | os.PathLike[str]) -> list[ClipRecord]:
    """Read clips from a manifest file or a dataset folder (see the module docstring).

    Args:
        path_or_dir: a ``.jsonl`` manifest, or a folder (synthetic, URSing, or plain videos).

    Returns:
        The clip records.

    Raises:
        AvsyncError: missing path, unreadable or malformed manifest (the message names the file).
    """
    path = Path(path_or_dir)
    if not path.exists():
        raise AvsyncError("manifest or dataset folder not found", path)
    if path.is_file():
        return read_jsonl(path)
    if (path / MANIFEST_NAME).is_file():
        return read_jsonl(path / MANIFEST_NAME)
    if is_ursing(path):
        return read_ursing(path)
    return read_video_folder(path)
