"""File safety for every output: atomic writes, never replacing a file that appeared, stale temporaries.

`atomic_path` yields a temporary file beside the output that replaces it only when the block
succeeds (so a killed run never leaves half a file under the real name); inside `keep_existing` the
final rename refuses to replace a file that appeared meanwhile; `remove_stale_temporaries` removes
the temporaries a killed run left. No media library is imported here: writing a JSON report, a
manifest or a checkpoint does not load PyAV (`avsync.io.media`, which re-exports these names).
"""

from __future__ import annotations

import contextvars
import errno
import functools
import glob
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import time as wall_clock

from avsync.errors import AvsyncError, DiskFullError, MediaError

PathLike = str | os.PathLike[str]

_KEEP_EXISTING: contextvars.ContextVar[bool] = contextvars.ContextVar("keep_existing", default=False)
STALE_TEMP_AGE_S = 60.0
"""A temporary output of ours untouched this long and open in no process is left over from a killed run."""


@contextmanager
def keep_existing() -> Iterator[None]:
    """Within the block, `atomic_path` refuses to replace a file that exists when it renames.

    A command checks its outputs before the heavy work; this makes the final rename check again,
    so a file that appears meanwhile is never replaced without ``--force``.
    """
    token = _KEEP_EXISTING.set(True)
    try:
        yield
    finally:
        _KEEP_EXISTING.reset(token)


def _default_mode() -> int:
    """The mode the umask gives a new file (``mkstemp`` makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _open_files() -> set[str]:
    """Real paths of the files any process has open (empty where /proc cannot tell)."""
    opened = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            opened.update(os.path.realpath(fd) for fd in fd_dir.iterdir())
        except OSError:
            continue
    return opened


TEMPORARY_NAME_EXTRA = 32
"""Bytes at most that `atomic_path` adds to an output's name for its temporary file
(``.`` + stem + ``.HHHHHH-PID.`` + 8 random characters + ``.tmp`` + suffix)."""


@functools.cache
def _host_tag() -> str:
    """Six hex digits naming this machine in temporary file names (a folder may be shared over the network)."""
    import hashlib
    import socket

    return hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()


def _owner_tag() -> str:
    """``HHHHHH-PID``: the machine and process writing a temporary file (`atomic_path`)."""
    return f"{_host_tag()}-{os.getpid()}"


def _owner_is_gone(temporary: Path, stem: str) -> bool:
    """Whether `temporary`'s name says it was made on this machine by a process that no longer runs."""
    tag = temporary.name[len(stem) + 2 :].split(".", 1)[0]
    host, _, pid = tag.partition("-")
    if host != _host_tag() or not pid.isdigit():
        return False  # another machine's, or named before owners were recorded: only its age tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # alive (another user's) or no such pid at all
        return False
    try:  # a killed process not yet reaped by its parent is a zombie: gone all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def remove_stale_temporaries(path: PathLike) -> list[Path]:
    """Remove temporary files `atomic_path` left for `path` when a run was killed (SIGKILL, power loss).

    Only files named as ours (``.<stem>.*.tmp<suffix>`` beside `path`) and open in no process are
    removed, and of those only the ones whose writer is known to be gone (made on this machine by a
    process that no longer runs) or, whoever wrote them, untouched for `STALE_TEMP_AGE_S`.

    Returns:
        The removed files.
    """
    target = Path(path)
    candidates = [c for c in target.parent.glob(f".{glob.escape(target.stem)}.*.tmp{glob.escape(target.suffix)}") if c.is_file()]
    now = wall_clock()
    candidates = [c for c in candidates if _owner_is_gone(c, target.stem) or now - c.stat().st_mtime > STALE_TEMP_AGE_S]
    if not candidates:
        return []
    opened = _open_files()
    removed = []
    for candidate in candidates:
        if os.path.realpath(candidate) not in opened:
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path` that replaces `path` when the block succeeds.

    The temporary file keeps `path`'s suffix (so format guessing by extension works) and is
    removed when the block raises; parent folders are created. The result gets the mode the
    umask gives new files. Inside `keep_existing`, a `path` that exists at the rename is kept
    and the write fails instead.

    Args:
        path: the final output path.

    Yields:
        The temporary path to write.

    Raises:
        AvsyncError: the folder cannot be created or written; `path` appeared (inside `keep_existing`).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.stem}.{_owner_tag()}.", suffix=f".tmp{target.suffix}"
        )
    except OSError as exc:
        raise AvsyncError(f"cannot write here ({exc.strerror})", path) from exc
    os.close(handle)
    try:
        try:
            yield Path(temporary)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFullError("no space left on device", target) from exc
            raise
        os.chmod(temporary, _default_mode())
        if _KEEP_EXISTING.get():
            _link_new(Path(temporary), target)
        else:
            os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _link_new(temporary: Path, target: Path) -> None:
    """Move `temporary` to `target` only if `target` does not exist (atomically, by a hard link)."""
    try:
        os.link(temporary, target)
    except FileExistsError as exc:
        raise AvsyncError("file exists: it appeared while avsync was working (use --force to replace it)", target) from exc
    except OSError:  # no hard links on this file system: check, then rename
        if target.exists():
            raise AvsyncError("file exists: it appeared while avsync was working (use --force to replace it)", target) from None
        os.replace(temporary, target)
        return
    temporary.unlink()


def check_media_path(path: str | os.PathLike[str]) -> None:
    """What can be said of a media file before opening it: it exists, is a regular file, not empty.

    Args:
        path: the file.

    Raises:
        MediaError: missing (or a broken or looping link), a folder, a device/pipe/socket, or empty.
    """
    if not os.path.exists(path):
        if os.path.islink(path):
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise MediaError("is a symbolic link that loops (it never reaches a file)", path) from exc
            raise MediaError("is a symbolic link to a file that does not exist", path)
        raise MediaError("file not found", path)
    if os.path.isdir(path):
        raise MediaError("is a folder, not a media file", path)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise MediaError("is not a regular file (a device, pipe or socket); give a media file", path)
    if os.path.getsize(path) == 0:
        raise MediaError("is empty (0 bytes)", path)
