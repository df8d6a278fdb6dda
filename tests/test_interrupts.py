"""Ctrl-C and SIGTERM stop a run at any point: finished takes stay, nothing half-written does.

Each case fails without its fix: a stop that lands in a finalizer (Python prints "Exception
ignored" and goes on), a take interrupted after some of its files were written, and ``--jobs``
workers that finished their takes before the run stopped.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

import avsync.pipeline.outputs
import avsync.pipeline.shots as shots
import avsync.pipeline.sync
from avsync.io.media import atomic_path
from avsync.pipeline.shots import BatchSettings, Shot, ShotAligner
from avsync.signals import Terminated

REPO = Path(__file__).resolve().parents[1]


def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_run(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (CI may start us with it ignored)\n"
        "from avsync import cli\n"
        "class Finalized:\n"
        "    def __del__(self):  # the Ctrl-C lands here, where Python cannot raise it\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        sum(range(100000))\n"
        "def run(args):\n"
        "    Finalized()\n"
        "    for _ in range(300):\n"
        "        time.sleep(0.01)\n"
        f"    open({str(tmp_path / 'finished')!r}, 'w').close()\n"
        "    return 0\n"
        "cli.build_parser = lambda only=None: type('P', (), {'parse_args': lambda self, a: type('N', (), {'func': staticmethod(run)})()})()\n"
        "sys.exit(cli.main(['align']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (130, "avsync: interrupted\n")
    assert not (tmp_path / "finished").exists()


def _interrupted_aligner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: BaseException) -> tuple[ShotAligner, Path]:
    """An aligner whose outputs stop with `stop` after the plot is written (the analysis faked)."""
    settings = BatchSettings(music=tmp_path / "song.wav", vocal=None, out_dir=tmp_path / "out", render=True, progress=False)
    aligner = ShotAligner(settings, SimpleNamespace(music_info=None, vocal_info=None, features=None, music_features=None))
    aligner._model = object()
    monkeypatch.setattr(shots, "check_video", lambda path: None)
    monkeypatch.setattr(avsync.pipeline.sync, "analyse", lambda *a, **k: SimpleNamespace(sync=SimpleNamespace(confidence=9.0), placed_by="lips"))

    def write_then_stop(analysis, *, plot_path, **kwargs):
        with atomic_path(plot_path) as temporary:
            temporary.write_bytes(b"a plot")
        raise stop

    monkeypatch.setattr(avsync.pipeline.outputs, "write_outputs", write_then_stop)
    return aligner, settings.out_dir


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), Terminated()], ids=["ctrl-c", "sigterm"])
def test_a_take_stopped_halfway_leaves_none_of_its_files(tmp_path: Path, monkeypatch, stop: BaseException) -> None:
    aligner, out = _interrupted_aligner(tmp_path, monkeypatch, stop)
    out.mkdir()
    (out / "other.json").write_text("a finished take's")
    with pytest.raises(type(stop)):
        aligner.align(Shot(tmp_path / "take.mp4", "take"))
    assert sorted(path.name for path in out.iterdir()) == ["other.json"]


class SlowAligner:
    """Stands in for a worker's `ShotAligner`: writes its output slowly, through `atomic_path`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def align(self, shot: Shot) -> str:
        with atomic_path(self.folder / f"{shot.name}.mp4") as temporary:
            temporary.write_bytes(b"half a video")
            time.sleep(60)
        return "finished"


def _slow_worker(folder: Path) -> None:
    shots.worker_signals()
    shots._worker = SlowAligner(folder)


def test_stopping_the_pool_unwinds_busy_workers_at_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(2, mp_context=context, initializer=_slow_worker, initargs=(tmp_path,))
    futures = [pool.submit(shots._align_in_worker, Shot(tmp_path / f"{name}.mp4", name)) for name in ("a", "b", "c")]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob(".*.tmp.mp4"))) < 2 and time.monotonic() < deadline:  # both workers are writing
        time.sleep(0.05)
    assert len(list(tmp_path.glob(".*.tmp.mp4"))) == 2
    started = time.monotonic()
    shots.stop_pool(pool)
    assert time.monotonic() - started < 10  # not the 60 s each take would take
    assert list(tmp_path.iterdir()) == []  # each worker removed its temporary
    assert [type(future.exception()).__name__ for future in futures[:2]] == ["Terminated", "Terminated"]
    assert futures[2].cancelled() or type(futures[2].exception()).__name__ == "Terminated"  # queued already: never started
    assert all(not process.is_alive() for process in multiprocessing.active_children() if process.name.startswith("SpawnProcess"))
