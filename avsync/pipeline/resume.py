"""Resuming a shoot: which takes of an earlier ``--out-dir`` run are still current, and what a run wrote.

Each take's report carries a ``batch`` block: the key of what it was computed from (the BLAKE2b of
the take's, the music's and the vocal's bytes, the model checkpoint's path and bytes, and the
options that change the outputs: mode, rendering, face, camera audio), the take's status and the files written
for it. A rerun without ``--force`` skips a take whose report has the same key and whose files are
all there (`current_outcome`): renaming or touching a take keeps it current, changing a byte of
it, the music, the model or an option does not.

The summary lists every file the run wrote (`written_files`); a ``--force`` run removes the files
an earlier run wrote for takes it is no longer given (`stale_files`), and nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.features.cache import file_hash

KEY_VERSION = 2
"""Raised when what a key covers changes, so that older reports are not taken as current."""


def model_file(checkpoint: str | None) -> Path:
    """The checkpoint file a ``--checkpoint`` choice names (the shipped model for None), without importing torch."""
    if checkpoint is None or checkpoint == "shipped":
        from avsync.models.pretrained import pretrained_checkpoint

        return pretrained_checkpoint()
    if checkpoint == "latest":
        from avsync.models.checkpoints import resolve_checkpoint

        return resolve_checkpoint(checkpoint)
    return Path(checkpoint)


def batch_key(music: Path, vocal: Path | None, checkpoint: str | None, options: dict) -> dict:
    """What every take of a run is computed from, except the take itself.

    Args:
        music: the song.
        vocal: its vocal stem, or None.
        checkpoint: the ``--checkpoint`` choice (None: the shipped model).
        options: the options that change a take's outputs (mode, render, face, ...).

    Raises:
        AvsyncError: a file cannot be read (the music, the vocal or the checkpoint).
    """
    model = model_file(checkpoint)
    if not model.is_file():
        raise AvsyncError("checkpoint not found", model)
    return {
        "version": KEY_VERSION,
        "music": file_hash(music),
        "vocal": None if vocal is None else file_hash(vocal),
        "model": {"checkpoint": os.path.abspath(model), "blake2b": file_hash(model)},
        "options": dict(sorted(options.items())),
    }


def shot_key(base: dict, video: Path) -> dict:
    """`batch_key` plus the take's own bytes (`file_hash`; a missing file raises `MediaError`)."""
    return {**base, "video": file_hash(video)}


def read_report(path: Path) -> dict | None:
    """A report as saved, or None when it is missing or not a report (then it is not current)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) else None


def current_outcome(report: dict | None, key: dict) -> dict | None:
    """The saved report when it is current for `key` and every file it lists is there, else None.

    Args:
        report: from `read_report`.
        key: the take's `shot_key`.
    """
    if report is None:
        return None
    batch = report.get("batch")
    if not isinstance(batch, dict) or batch.get("key") != key or batch.get("status") not in ("placed", "no match"):
        return None
    files = batch.get("files")
    if not isinstance(files, list) or not all(isinstance(file, str) and Path(file).is_file() for file in files):
        return None
    return report


def written_files(previous_summary: Path) -> dict[str, list[str]]:
    """What an earlier run's summary says it wrote: shot path -> its files; ``""`` -> the run's own (timeline).

    A summary without the list (missing, damaged, or from an older avsync) gives nothing.
    """
    document = read_report(previous_summary)
    written = document.get("written") if document else None
    if not isinstance(written, dict):
        return {}
    return {str(shot): [str(file) for file in files] for shot, files in written.items() if isinstance(files, list)}


def stale_files(previous: dict[str, list[str]], shots: Iterable[str], keep: Sequence[Path]) -> list[Path]:
    """The files an earlier run wrote for takes no longer given, and its own files this run does not write again.

    Args:
        previous: from `written_files`.
        shots: the paths of this run's takes, as its summary names them.
        keep: the files this run writes (never removed).
    """
    given = set(shots)
    kept = {os.path.abspath(path) for path in keep}
    stale = []
    for shot, files in previous.items():
        if shot in given:
            continue
        stale += [Path(file) for file in files if os.path.abspath(file) not in kept and Path(file).is_file()]
    return stale
