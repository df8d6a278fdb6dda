"""What a hostile or unlucky input does to `avsync align`: one line, an exit status, nothing left over.

Every case builds its inputs itself, runs the command as a user would, and checks the same four
things: the exit status, a single stderr line ``avsync: error: ...`` naming the problem, no new or
half-written file beside the inputs, and inputs left byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_test_clip

from avsync.cli import main
from avsync.io import media


def _tone(path: Path, seconds: float = 4.0) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    media.write_audio(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    return path


def _nan_music(folder: Path) -> list[str]:
    samples = (0.3 * np.sin(np.arange(4 * 16000) / 10)).astype(np.float32)
    samples[100:200] = np.nan
    media.write_audio(folder / "nan.wav", samples, 16000, float32=True)
    return ["video.mp4", "nan.wav"]


def _truncated_music(folder: Path) -> list[str]:
    whole = _tone(folder / "whole.wav").read_bytes()
    (folder / "whole.wav").unlink()
    (folder / "cut.wav").write_bytes(whole[: len(whole) // 2])
    return ["video.mp4", "cut.wav"]


def _still_image(folder: Path) -> list[str]:
    import av

    with av.open(str(folder / "still.png"), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "rgb24"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")), *stream.encode()]:
            out.mux(packet)
    return ["still.png", "music.wav"]


def _symlink_loop(folder: Path) -> list[str]:
    os.symlink(folder / "b.mp4", folder / "a.mp4")
    os.symlink(folder / "a.mp4", folder / "b.mp4")
    return ["a.mp4", "music.wav"]


def _crafted_checkpoint(folder: Path) -> list[str]:
    class RunsCode:
        def __reduce__(self):
            return (Path.touch, (folder / "code-ran",))

    torch.save({"state_dict": {}, "hyper_parameters": {"model": RunsCode()}}, folder / "evil.ckpt")
    return ["video.mp4", "music.wav", "--checkpoint", "evil.ckpt"]


def _existing_output(folder: Path) -> list[str]:
    (folder / "out.mp4").write_bytes(b"an earlier result")
    return ["video.mp4", "music.wav", "-o", "out.mp4"]


CASES: dict[str, tuple[Callable[[Path], list[str]], int, str]] = {
    "missing video": (lambda f: ["nothing.mp4", "music.wav"], 2, "nothing.mp4: file not found"),
    "still image as the video": (_still_image, 2, "is a still image (png), not a video"),
    "device as the music": (lambda f: ["video.mp4", "/dev/zero"], 2, "is not a regular file"),
    "symbolic link loop": (_symlink_loop, 2, "is a symbolic link that loops"),
    "music cut off at half its bytes": (_truncated_music, 2, "cut.wav: is truncated"),
    "music with NaN samples": (_nan_music, 2, "100 NaN or infinite samples"),
    "bad mode": (lambda f: ["video.mp4", "music.wav", "--mode", "foo"], 2, "invalid choice: 'foo'"),
    "span with offset mode": (lambda f: ["video.mp4", "music.wav", "--mode", "offset", "--span", "video"], 2, "--span applies to --mode warp only"),
    "cache that is a file": (lambda f: ["video.mp4", "music.wav", "--cache", "music.wav"], 2, "--cache is a file"),
    "output exists": (_existing_output, 2, "file exists (use --force to replace it)"),
    "output is the input": (lambda f: ["video.mp4", "music.wav", "--report", "music.wav"], 2, "would overwrite the input"),
    "output name too long": (lambda f: ["video.mp4", "music.wav", "--report", "x" * 250 + ".json"], 2, "file name too long"),
    "checkpoint that would run code": (_crafted_checkpoint, 2, "not an avsync model checkpoint"),
    "unknown face choice": (lambda f: ["video.mp4", "music.wav", "--face", "middle"], 2, "--face: face must be"),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "link")
            for p in folder.iterdir() if p.is_file() or p.is_symlink()}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_is_one_line_and_leaves_everything_as_it_was(name: str, tmp_path: Path, capfd, monkeypatch) -> None:
    make, status, message = CASES[name]
    if not Path("/dev/zero").exists() and "device" in name:
        pytest.skip("no /dev/zero here")
    write_test_clip(tmp_path / "video.mp4", seconds=2.0, size=(64, 48), audio=False)
    _tone(tmp_path / "music.wav")
    args = make(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    try:
        code = main(["align", *args, "--quiet"])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    assert len(lines) == 1 and lines[0].startswith("avsync: error: "), err
    assert message in lines[0], lines[0]
    assert _snapshot(tmp_path) == before  # nothing new, nothing half-written, inputs unchanged
    assert not (tmp_path / "code-ran").exists()
