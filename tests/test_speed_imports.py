"""What a user mistake costs: `avsync align`'s first checks run before the heavy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_align_command_s_checks_do_not_import_opencv():
    """A missing file or a text file given as the video is reported after the cheap checks: OpenCV
    (0.1 s of imports) loads only with the lips reader."""
    code = ("import sys, avsync.cli, avsync.commands.align, avsync.commands.checks, avsync.pipeline.checks; "
            "print('cv2' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_missing_video_is_one_line_without_opencv_pyav_or_numpy(tmp_path):
    """The file checks that need no decoder (missing, a folder, empty) run before PyAV and numpy load."""
    music = tmp_path / "music.wav"
    music.write_bytes(b"")
    code = ("import sys; from avsync.cli import main; status = main(['align', sys.argv[1], sys.argv[2]]); "
            "print(status, *(name in sys.modules for name in ('cv2', 'av', 'numpy')))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing.mp4"), str(music)], cwd=REPO,
                            capture_output=True, text=True)  # fmt: skip
    assert result.stdout.split() == ["2", "False", "False", "False"]
    assert "missing.mp4: file not found" in result.stderr.strip()
    assert len(result.stderr.strip().splitlines()) == 1
