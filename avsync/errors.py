"""User-facing errors: one line naming the file and the problem, exit status 2."""

from __future__ import annotations

from pathlib import Path


class AvsyncError(Exception):
    """An error caused by the user's input, reported as one line without a traceback.

    Args:
        message: what is wrong, in words a user can act on.
        path: the file the problem is about; prefixed to the message when given.
    """

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        text = message if path is None else f"{path}: {message}"
        super().__init__(" ".join(text.split()))

    def __reduce__(self) -> tuple:
        # pickled whole (a worker process's error is raised again in the parent): the text already names the path
        return _restore, (type(self), str(self), self.path)


def _restore(kind: type[AvsyncError], text: str, path: str | None) -> AvsyncError:
    error = kind(text)
    error.path = path
    return error


class DiskFullError(AvsyncError):
    """The disk filled up while writing an output (nothing half-written is left); exit status 1."""

    exit_code = 1


class MediaError(AvsyncError):
    """A media file is missing, unreadable, corrupt, or lacks a needed stream."""
