"""Which files a shoot's arguments name: folders expanded, each take once, never avsync's own outputs.

`collect_shots` turns the files and folders given to ``avsync align SHOT|FOLDER ... --out-dir DIR``
into the list of takes:

* a file given by name is taken as it is;
* a folder gives its video files (by suffix, `SHOT_SUFFIXES`), sorted by name, leaving out hidden
  files and macOS AppleDouble files (``._take.mp4``: resource forks, not videos), avsync's own
  outputs (``NAME.synced.mp4``) and anything inside the output folder;
* a folder's subfolders are read with ``recursive`` (hidden ones and the output folder never),
  else named in a note, so none is skipped without a word;
* a file named twice (also through a link, or once by name and once through its folder) is one take.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from avsync.errors import AvsyncError

SHOT_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".mxf", ".webm", ".mts", ".m2ts", ".mpg", ".mpeg", ".wmv")
"""Files taken from a folder of shots (by suffix, any case)."""
OUTPUT_MARK = ".synced"
"""What ends the stem of a synced video avsync writes (``NAME.synced.mp4``): never a take."""


@dataclass
class FoundShots:
    """The takes the arguments name, and what the user should hear about how they were found.

    Attributes:
        paths: the take files, each once, in the order given (a folder's in name order).
        notes: one line each: subfolders not read, files given twice.
    """

    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_output_name(path: Path) -> bool:
    """Whether a file is named as a synced video avsync writes (``NAME.synced.EXT``)."""
    return path.stem.lower().endswith(OUTPUT_MARK)


def collect_shots(paths: Sequence[str | os.PathLike[str]], *, recursive: bool = False,
                  out_dir: str | os.PathLike[str] | None = None) -> FoundShots:  # fmt: skip
    """The take files that `paths` name (the rules are the module docstring's).

    Args:
        paths: files and folders, as given.
        recursive: read the folders' subfolders too.
        out_dir: the output folder (nothing inside it is taken from a folder).

    Raises:
        AvsyncError: a folder without any video file.
    """
    found = FoundShots()
    outputs = _real(out_dir) if out_dir is not None else None
    seen: dict[tuple[int, int] | str, Path] = {}
    for given in map(Path, paths):
        if given.is_dir():
            files, subfolders = _folder_videos(given, recursive, outputs)
            if subfolders:
                names = ", ".join(folder.name for folder in subfolders[:5]) + (", ..." if len(subfolders) > 5 else "")
                found.notes.append(f"{given}: {len(subfolders)} subfolder{'s' if len(subfolders) != 1 else ''} not read "
                                   f"({names}); --recursive reads them")  # fmt: skip
            if not files:
                hint = " (its videos are in subfolders: add --recursive)" if subfolders else ""
                raise AvsyncError(f"folder has no video files ({', '.join(SHOT_SUFFIXES)}){hint}", given)
        else:
            files = [given]
        for path in files:
            identity = _identity(path)
            if identity in seen:
                found.notes.append(f"{path}: given twice (also as {seen[identity]}); aligned once")
                continue
            seen[identity] = path
            found.paths.append(path)
    return found


def _folder_videos(folder: Path, recursive: bool, outputs: str | None) -> tuple[list[Path], list[Path]]:
    """A folder's takes (with its subfolders' when `recursive`) and the subfolders left unread."""
    files: list[Path] = []
    unread: list[Path] = []
    for entry in sorted(folder.iterdir(), key=lambda path: path.name):
        if entry.name.startswith("."):  # hidden files and folders, AppleDouble "._NAME"
            continue
        if outputs is not None and _real(entry) == outputs:
            continue
        if entry.is_dir():
            if recursive:
                files += _folder_videos(entry, recursive, outputs)[0]
            else:
                unread.append(entry)
        elif entry.is_file() and entry.suffix.lower() in SHOT_SUFFIXES and not is_output_name(entry):
            files.append(entry)
    return files, unread


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


def _identity(path: Path) -> tuple[int, int] | str:
    """The file a path names: its device and inode where it exists, else its real path."""
    try:
        status = path.stat()
    except OSError:
        return _real(path)
    return (status.st_dev, status.st_ino)
