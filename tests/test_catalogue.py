"""The reliability catalogue's last cases (issue 22): each is one line ``avsync: error: ...``, or cleaned up.

* a checkpoint that is a plain pickle: torch's warning about it never reaches the user;
* ``--cache`` on a read-only file system, and a cache entry that is a folder: no traceback;
* the temporary MP4 of a run killed with SIGKILL is removed by the next run at once (its
  writer is gone), not only after `STALE_TEMP_AGE_S`.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, write_test_clip

import avsync.features.cache
from avsync.cli import main
from avsync.commands.checks import check_outputs
from avsync.errors import AvsyncError
from avsync.features.cache import FeatureCache
from avsync.io import media


def _tone(path: Path, seconds: float = 4.0) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    media.write_audio(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_plain_pickle_checkpoint_is_one_line_without_torch_warnings(tmp_path: Path, capfd) -> None:
    write_test_clip(tmp_path / "video.mp4", seconds=2.0, audio=False)
    _tone(tmp_path / "music.wav")
    with open(tmp_path / "evil.ckpt", "wb") as handle:  # pickle protocol 4: torch warns before refusing it
        pickle.dump({"state_dict": {}, "hyper_parameters": {"model": _RunsCode(tmp_path / "code-ran")}}, handle, protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["align", str(tmp_path / "video.mp4"), str(tmp_path / "music.wav"), "--checkpoint",
                       str(tmp_path / "evil.ckpt"), "--quiet"])  # fmt: skip
    assert_one_line_error(status, capfd.readouterr().err, "evil.ckpt: not an avsync model checkpoint")
    assert [str(warning.message) for warning in caught] == []
    assert not (tmp_path / "code-ran").exists()


def test_a_cache_that_cannot_be_made_on_a_read_only_file_system_is_one_line(tmp_path: Path, capfd, monkeypatch) -> None:
    write_test_clip(tmp_path / "video.mp4", seconds=2.0, audio=False)
    _tone(tmp_path / "music.wav")
    read_only = tmp_path / "mounted"
    read_only.mkdir()
    real_access = os.access
    # what access(2) answers for a folder on a read-only mount (EROFS), whoever asks (root included)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == read_only else real_access(path, mode, **kw))
    status = main(["align", str(tmp_path / "video.mp4"), str(tmp_path / "music.wav"), "--cache", str(read_only / "cache"), "--quiet"])
    assert_one_line_error(status, capfd.readouterr().err, "--cache cannot be made", "is not writable")
    assert not (read_only / "cache").exists()


def test_cache_writes_refused_by_the_file_system_are_one_line_errors(tmp_path: Path, monkeypatch) -> None:
    audio = _tone(tmp_path / "a.wav", seconds=1.0)
    cache = FeatureCache(tmp_path / "cache")

    def read_only_mkdir(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    with pytest.raises(AvsyncError, match=r"cannot write the feature cache \(Read-only file system\)"):
        cache.audio(audio)


def test_a_cache_entry_that_is_a_folder_is_one_line_and_left_alone(tmp_path: Path, capfd) -> None:
    audio = _tone(tmp_path / "a.wav", seconds=1.0)
    cache = FeatureCache(tmp_path / "cache")
    entry = cache.entry_path("audio", audio, avsync.features.cache.audio_params(avsync.features.cache.MelConfig()))
    (entry / "inside").mkdir(parents=True)
    with pytest.raises(AvsyncError, match="is a folder where the feature cache keeps a file") as error:
        cache.audio(audio)
    assert str(entry) in str(error.value) and (entry / "inside").is_dir()
    # the command: one line, exit 2 (the music is read through the cache first)
    write_test_clip(tmp_path / "video.mp4", seconds=2.0, audio=False)
    status = main(["align", str(tmp_path / "video.mp4"), str(audio), "--cache", str(tmp_path / "cache"), "--quiet",
                   "--device", "cpu"])  # fmt: skip
    assert_one_line_error(status, capfd.readouterr().err, "is a folder where the feature cache keeps a file")


def test_the_temporary_of_a_killed_run_is_removed_by_the_next_run_at_once(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    code = (
        "import os, signal\n"
        "from avsync.io import media\n"
        f"with media.atomic_path({str(target)!r}) as temporary:\n"
        "    temporary.write_bytes(b'half a video')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    left = list(tmp_path.glob(".out.*.tmp.mp4"))
    assert len(left) == 1  # what SIGKILL leaves; seconds old, not minutes
    with media.atomic_path(tmp_path / "out.json") as live:  # another run's temporary, still being written
        live.write_text("{}")
        check_outputs({"-o": target}, [], force=False)  # what the next run does before its heavy work
        assert not left[0].exists() and live.exists()
    assert not target.exists()
