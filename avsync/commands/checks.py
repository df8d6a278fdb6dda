"""The command-line checks `avsync align`, the shoot and `avsync check` run before any heavy work.

Each refuses a user mistake in one line naming the path or the option: outputs that would
overwrite an input or each other, an existing output without ``--force``, a folder that takes no
new files or a name too long for it, option values that cannot work together. Apart from
`avsync.commands.align` so the shoot (`avsync.commands.align_shots`), which that command hands
folders to, imports them without importing it back.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from avsync.errors import AvsyncError
from avsync.features.face_choice import face_point
from avsync.io.files import TEMPORARY_NAME_EXTRA, remove_stale_temporaries

if TYPE_CHECKING:
    from avsync.features.cache import FeatureCache


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name the same file (by inode when both exist, else by real path)."""
    if first.exists() and second.exists():
        return os.path.samefile(first, second)
    return os.path.realpath(first) == os.path.realpath(second)


def _check_folder_writable(path: Path) -> None:
    """Raise unless the folder of `path` (or its nearest existing ancestor) accepts new files."""
    folder = path.parent
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise AvsyncError(f"cannot write here: {folder} is not a folder", path)
    try:
        handle, probe_path = tempfile.mkstemp(dir=folder, prefix=".avsync-write-test.")
    except OSError as exc:
        raise AvsyncError(f"cannot write here: folder {folder} is not writable ({exc.strerror})", path) from exc
    os.close(handle)
    os.unlink(probe_path)


def _check_name_length(path: Path) -> None:
    """Raise unless the file system takes the output's name (and its temporary's) in that folder."""
    folder = path.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(path.name.encode()) + TEMPORARY_NAME_EXTRA > limit:
        raise AvsyncError(f"file name too long ({len(path.name.encode())} bytes; this folder takes at most "
                          f"{limit - TEMPORARY_NAME_EXTRA})", path)  # fmt: skip


def check_outputs(outputs: dict[str, Path | None], inputs: list[Path], force: bool) -> None:
    """Refuse outputs that would overwrite an input, each other, or an existing file without --force.

    Args:
        outputs: option name -> path (None when not asked for).
        inputs: the input files.
        force: whether existing outputs may be replaced.

    Raises:
        AvsyncError: the first problem found, naming the path.
    """
    chosen = [(option, path) for option, path in outputs.items() if path is not None]
    for index, (option, path) in enumerate(chosen):
        for source in inputs:
            if _same_file(path, source):
                raise AvsyncError(f"{option} would overwrite the input {source}; choose another path", path)
        for other_option, other in chosen[:index]:
            if _same_file(path, other):
                raise AvsyncError(f"{option} and {other_option} name the same file", path)
        if path.is_dir():
            raise AvsyncError(f"{option} is a folder; give a file name", path)
        if path.exists() and not force:
            raise AvsyncError(f"{option}: file exists (use --force to replace it)", path)
        _check_folder_writable(path)
        _check_name_length(path)
        remove_stale_temporaries(path)


def check_options(args: argparse.Namespace) -> None:
    """Refuse option values and combinations that cannot work (one line each), before any heavy work."""
    try:
        face_point(args.face)
    except ValueError as exc:
        raise AvsyncError(f"--face: {exc}") from None
    if args.mode == "offset" and args.span is not None:
        raise AvsyncError("--span applies to --mode warp only (--mode offset copies the video, shifted, without re-timing)")
    if args.cache is not None and args.no_cache:
        raise AvsyncError("--cache and --no-cache contradict each other; give one")
    if args.cache is not None and (args.cache.exists() and not args.cache.is_dir()):
        raise AvsyncError("--cache is a file; give a folder", args.cache)
    if args.cache is not None:
        _check_cache_writable(args.cache)


def song_cache(args: argparse.Namespace) -> FeatureCache | None:
    """Where `avsync align` keeps the music's features and embeddings: ``--cache``, else the user's
    cache folder (`avsync.features.cache.user_cache_dir`, best effort: one the user did not ask for
    never stops the command); None with ``--no-cache``."""
    from avsync.features.cache import FeatureCache, user_cache_dir

    if args.no_cache:
        return None
    if args.cache is not None:
        return FeatureCache(args.cache)
    folder = user_cache_dir()
    return None if folder is None else FeatureCache(folder, best_effort=True)


def _check_cache_writable(cache: Path) -> None:
    """Raise unless `cache` (or, when it does not exist yet, the nearest folder above it) takes new files."""
    folder = cache
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        raise AvsyncError(f"--cache cannot be made: {folder} is not a folder", cache)
    if not os.access(folder, os.W_OK | os.X_OK):  # also false on a read-only file system (EROFS)
        reason = "is not writable" if folder == cache else f"cannot be made: {folder} is not writable"
        raise AvsyncError(f"--cache {reason}", cache)
