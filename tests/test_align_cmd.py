"""`avsync align` through the CLI: bad input ends with one line and exit 2, outputs are atomic.

The checkpoint here is an untrained TwoTower saved the way training saves it: these tests check
the command's plumbing and validation, not alignment quality (tests/test_robustness.py does).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import assert_one_line_error, run_cli, write_test_clip

from avsync.errors import AvsyncError
from avsync.io import media
from avsync.models import TwoTower
from avsync.models.checkpoints import (
    find_latest_checkpoint,
    load_model,
    resolve_checkpoint,
)
from avsync.models.pretrained import pretrained_checkpoint
from avsync.training.lit_module import LitAVSync

TONE_SECONDS = 4.0


def save_checkpoint(path: Path, network: torch.nn.Module) -> Path:
    """Save `network` as a Lightning checkpoint with the hyperparameters training stores."""
    module = LitAVSync(network)
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "pytorch-lightning_version": pl.__version__}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    network = TwoTower(embed_dim=16, frame_dim=8, temporal_dim=8, audio_channels=8)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", network)


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    """A 4 s 440 Hz tone (a reference that is not silent)."""
    t = np.arange(int(TONE_SECONDS * 16000)) / 16000
    path = tmp_path / "tone.wav"
    media.write_audio(path, 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32), 16000)
    return path


@pytest.fixture
def faceless(tmp_path: Path) -> Path:
    """2 s of numbered gray frames: a video without any face."""
    return write_test_clip(tmp_path / "faceless.mp4", seconds=2.0, size=(64, 48), audio=False)


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes()).hexdigest()


def test_missing_video(capsys, tmp_path: Path, tone: Path, untrained_ckpt: Path) -> None:
    status, _, err = run_cli(capsys, tmp_path / "nope.mp4", tone, "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "nope.mp4", "file not found")


def test_reference_without_audio(capsys, faceless: Path, untrained_ckpt: Path) -> None:
    status, _, err = run_cli(capsys, faceless, faceless, "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "faceless.mp4", "no audio stream")


def test_silent_reference(capsys, tmp_path: Path, faceless: Path, untrained_ckpt: Path) -> None:
    silent = write_test_clip(tmp_path / "silent.wav", seconds=3.0, video=False)
    status, _, err = run_cli(capsys, faceless, silent, "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "silent.wav", "is silent")


def test_video_without_any_face(capsys, faceless: Path, tone: Path, untrained_ckpt: Path) -> None:
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "faceless.mp4", "no face")


def test_video_shorter_than_one_second(capsys, tmp_path: Path, tone: Path, untrained_ckpt: Path) -> None:
    short = write_test_clip(tmp_path / "short.mp4", seconds=0.6, size=(64, 48), audio=False)
    status, _, err = run_cli(capsys, short, tone, "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "short.mp4", "too short")


@pytest.mark.parametrize("option", ["-o", "--report", "--plot"])
def test_output_equal_to_an_input(capsys, faceless: Path, tone: Path, untrained_ckpt: Path, option: str) -> None:
    target = faceless if option == "-o" else tone.with_suffix(".png") if option == "--plot" else tone
    if option == "--plot":  # an input reached through another name
        target.symlink_to(tone)
    before = digest(tone), digest(faceless)
    status, _, err = run_cli(capsys, faceless, tone, option, target, "--checkpoint", untrained_ckpt, "--force")
    assert_one_line_error(status, err, "would overwrite the input")
    assert (digest(tone), digest(faceless)) == before


def test_existing_output_needs_force(capsys, tmp_path: Path, faceless: Path, tone: Path, untrained_ckpt: Path) -> None:
    existing = tmp_path / "report.json"
    existing.write_text("keep me")
    status, _, err = run_cli(capsys, faceless, tone, "--report", existing, "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "report.json", "--force")
    assert existing.read_text() == "keep me"


def test_two_outputs_with_one_name(capsys, tmp_path: Path, faceless: Path, tone: Path, untrained_ckpt: Path) -> None:
    status, _, err = run_cli(capsys, faceless, tone, "--report", tmp_path / "x.png", "--plot", tmp_path / "x.png",
                             "--checkpoint", untrained_ckpt)  # fmt: skip
    assert_one_line_error(status, err, "name the same file")


def test_output_folder_that_is_a_file(capsys, tmp_path: Path, faceless: Path, tone: Path, untrained_ckpt: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    status, _, err = run_cli(capsys, faceless, tone, "-o", blocker / "sub" / "out.mp4", "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "out.mp4", "not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder(capsys, tmp_path: Path, faceless: Path, tone: Path, untrained_ckpt: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        status, _, err = run_cli(capsys, faceless, tone, "-o", locked / "out.mp4", "--checkpoint", untrained_ckpt)
    finally:
        locked.chmod(0o755)
    assert_one_line_error(status, err, "not writable")


def test_output_suffixes(capsys, tmp_path: Path, faceless: Path, tone: Path, untrained_ckpt: Path) -> None:
    status, _, err = run_cli(capsys, faceless, tone, "-o", tmp_path / "out.gif", "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "out.gif", ".mp4")
    status, _, err = run_cli(capsys, faceless, tone, "--plot", tmp_path / "plot.jpg", "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "plot.jpg", ".png")


def test_checkpoint_that_is_not_one(capsys, tmp_path: Path, faceless: Path, tone: Path) -> None:
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"\x80\x04 this is not a checkpoint")
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", bogus)
    assert_one_line_error(status, err, "bogus.ckpt", "not an avsync model checkpoint")
    other = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(3)}, other)
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", other)
    assert_one_line_error(status, err, "other.ckpt", "not an avsync model checkpoint")
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", tmp_path / "missing.ckpt")
    assert_one_line_error(status, err, "missing.ckpt", "checkpoint not found")
    foreign = tmp_path / "foreign.ckpt"
    for description in ({"class_path": "collections.OrderedDict", "init_args": {}}, {"class_path": "avsync.models.NoSuchNet"}):
        torch.save({"state_dict": {}, "hyper_parameters": {"model": description}}, foreign)
        status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", foreign)
        assert_one_line_error(status, err, "foreign.ckpt", "not an avsync model checkpoint")


class _RunsCode:
    """Pickles to a call of `pathlib.Path.touch` on load: what a crafted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_before_it_runs(capsys, tmp_path: Path, faceless: Path, tone: Path) -> None:
    marker = tmp_path / "code-ran"
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": _RunsCode(marker)}}, crafted)
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", crafted)
    assert_one_line_error(status, err, "crafted.ckpt", "not an avsync model checkpoint")
    assert "could run code" in err
    assert not marker.exists()


def test_loading_a_model_does_not_import_lightning() -> None:
    """Inference rebuilds the network from the checkpoint alone (Lightning costs seconds of start-up)."""
    code = "import sys; from avsync.models.checkpoints import load_model; load_model(None, 'cpu'); print(sorted(m for m in sys.modules if 'lightning' in m))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_latest_without_any_run_says_what_to_run(capsys, monkeypatch, tmp_path: Path, faceless: Path, tone: Path) -> None:
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", "latest")
    assert_one_line_error(status, err, "no model checkpoint found under runs/", "make train")


def test_default_is_the_shipped_model_and_latest_the_newest_run(monkeypatch, tmp_path: Path) -> None:
    assert resolve_checkpoint(None) == resolve_checkpoint("shipped") == pretrained_checkpoint()
    assert load_model(None, "cpu").path == pretrained_checkpoint()
    newest = save_checkpoint(tmp_path / "runs" / "exp" / "version_0" / "checkpoints" / "a.ckpt", TwoTower(embed_dim=8))
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint("latest").resolve() == newest.resolve()
    assert resolve_checkpoint(tmp_path / "x.ckpt") == tmp_path / "x.ckpt"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_for_without_cuda(capsys, faceless: Path, tone: Path, untrained_ckpt: Path) -> None:
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", untrained_ckpt, "--device", "cuda")
    assert_one_line_error(status, err, "CUDA is not available")
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", untrained_ckpt, "--device", "tpu")
    assert_one_line_error(status, err, "--device must be auto, cpu or cuda")


def test_newest_checkpoint_is_the_default(tmp_path: Path, untrained_ckpt: Path) -> None:
    older = save_checkpoint(tmp_path / "runs" / "exp" / "version_0" / "checkpoints" / "a.ckpt", TwoTower(embed_dim=8))
    newer = save_checkpoint(tmp_path / "runs" / "exp" / "version_1" / "checkpoints" / "b.ckpt", TwoTower(embed_dim=12))
    save_checkpoint(tmp_path / "runs" / "sweeps" / "demo" / "trial-00" / "exp" / "v" / "checkpoints" / "c.ckpt", TwoTower(embed_dim=4))
    os.utime(older, (1_000_000, 1_000_000))
    os.utime(newer, (2_000_000, 2_000_000))
    assert find_latest_checkpoint(tmp_path / "runs") == newer  # sweep trials are not make train's runs
    loaded = load_model(find_latest_checkpoint(tmp_path / "runs"), "cpu")
    assert loaded.network.config["embed_dim"] == 12 and not loaded.network.training
    with pytest.raises(AvsyncError, match="make train"):
        find_latest_checkpoint(tmp_path / "elsewhere")


@pytest.mark.slow
def test_full_run_writes_report_plot_and_video(capsys, tmp_path: Path, song: Path, untrained_ckpt: Path) -> None:
    video, music = song / "Video.mp4", song / "Mix.wav"
    before = digest(video), digest(music)
    out, report, plot = tmp_path / "out" / "synced.mp4", tmp_path / "report.json", tmp_path / "plot.png"
    status, stdout, err = run_cli(capsys, video, music, "-o", out, "--report", report, "--plot", plot,
                                  "--checkpoint", untrained_ckpt, "--device", "cpu")  # fmt: skip
    assert status == 0, err
    assert stdout.startswith("offset: ") and "confidence: " in stdout and f"wrote {out}" in stdout
    data = json.loads(report.read_text())
    assert data["video"] == str(video) and data["reference"] == str(music) and data["fps"] == 25.0
    knots = np.array(data["time_map"])
    assert (np.diff(knots, axis=0) >= 0).all()
    assert knots[0, 1] == 0.0 and knots[-1, 1] == pytest.approx(74 / 25)
    assert data["model"]["checkpoint"] == str(untrained_ckpt) and data["mode"] == "warp"
    assert data["output_copied"] is False  # the whole song: the first/last frame held, encoded
    assert data["runtime_s"] > 0
    stages = data["timings_s"]
    assert list(stages) == ["checks", "imports", "model", "music features", "video features", "music embedding", "camera audio", "cost", "dtw",
                            "write video", "plot"]
    assert all(seconds >= 0 for seconds in stages.values()) and sum(stages.values()) <= data["runtime_s"] + 1.0
    info = media.probe(out)
    assert (info.width, info.height, info.fps) == (320, 320, 25.0)
    assert info.duration == pytest.approx(media.probe(music).duration, abs=0.05)
    assert plot.stat().st_size > 1000
    assert (digest(video), digest(music)) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["synced.mp4"]
    # A second run without --force refuses, with --force replaces.
    status, _, err = run_cli(capsys, video, music, "--report", report, "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "--force")
    status, stdout, _ = run_cli(capsys, video, music, "-o", out, "--mode", "offset", "--report", report, "--force",
                                "--checkpoint", untrained_ckpt)  # fmt: skip
    assert status == 0 and f"wrote {out} (video copied, not re-encoded)" in stdout
    assert json.loads(report.read_text())["output_copied"] is True


def test_vocal_stem_is_the_alignment_reference_and_music_the_audio(capsys, tmp_path: Path, song: Path, untrained_ckpt: Path) -> None:
    video, music, vocal = song / "Video.mp4", song / "Mix.wav", song / "Vocal.wav"
    out, report = tmp_path / "synced.mp4", tmp_path / "report.json"
    status, stdout, err = run_cli(capsys, video, music, "--vocal", vocal, "-o", out, "--report", report,
                                  "--checkpoint", untrained_ckpt, "--device", "cpu")  # fmt: skip
    assert status == 0, err
    data = json.loads(report.read_text())
    assert data["reference"] == str(music) and data["vocal"] == str(vocal)
    assert not any("differ in length" in warning for warning in data["warnings"])
    # The output's audio is the mix (accompaniment included), not the vocal.
    rate = 16000
    written = media.read_audio(out, sample_rate=rate)
    mix, voice = media.read_audio(music, sample_rate=rate), media.read_audio(vocal, sample_rate=rate)
    length = min(len(written), len(mix))
    def correlation(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a[:length], b[:length])[0, 1])
    assert correlation(written, mix) > 0.9 > correlation(written, voice) + 0.1


def test_bad_vocal_stems(capsys, tmp_path: Path, song: Path, faceless: Path, untrained_ckpt: Path) -> None:
    video, music = song / "Video.mp4", song / "Mix.wav"
    status, _, err = run_cli(capsys, video, music, "--vocal", faceless, "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "faceless.mp4", "no audio stream")
    vocal = tmp_path / "vocal.wav"
    vocal.write_bytes((song / "Vocal.wav").read_bytes())
    status, _, err = run_cli(capsys, video, music, "--vocal", vocal, "--report", vocal, "--force", "--checkpoint", untrained_ckpt)
    assert_one_line_error(status, err, "would overwrite the input")
    long_vocal = tmp_path / "long_vocal.wav"
    samples = media.read_audio(song / "Vocal.wav", sample_rate=16000)
    media.write_audio(long_vocal, np.concatenate([samples, samples]), 16000)
    report = tmp_path / "report.json"
    status, _, err = run_cli(capsys, video, music, "--vocal", long_vocal, "--report", report, "--checkpoint", untrained_ckpt, "--device", "cpu")
    assert status == 0, err
    assert any("differ in length" in warning for warning in json.loads(report.read_text())["warnings"])


def test_too_long_output_name_is_refused_before_any_work(capsys, monkeypatch, tmp_path: Path, faceless: Path, tone: Path) -> None:
    import avsync.models.checkpoints

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output name was checked")

    monkeypatch.setattr(avsync.models.checkpoints, "load_model", no_model)
    long_name = tmp_path / ("x" * 250 + ".json")
    status, _, err = run_cli(capsys, faceless, tone, "--report", long_name)
    assert_one_line_error(status, err, "file name too long")


def test_span_with_offset_mode_and_a_file_as_cache_are_refused_at_once(capsys, tmp_path: Path, faceless: Path, tone: Path) -> None:
    status, _, err = run_cli(capsys, faceless, tone, "--mode", "offset", "--span", "video")
    assert_one_line_error(status, err, "--span applies to --mode warp only")
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("x")
    status, _, err = run_cli(capsys, faceless, tone, "--cache", not_a_folder)
    assert_one_line_error(status, err, "--cache is a file")


def test_hand_made_checkpoint_without_weights_is_one_line(capsys, tmp_path: Path, faceless: Path, tone: Path) -> None:
    empty = tmp_path / "empty.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"class_path": "avsync.models.two_tower.TwoTower", "init_args": {}}}}, empty)
    status, _, err = run_cli(capsys, faceless, tone, "--checkpoint", empty)
    assert_one_line_error(status, err, "empty.ckpt", "not an avsync model checkpoint")


def test_a_user_mistake_is_reported_before_torch_is_imported(tmp_path: Path) -> None:
    code = ("import sys; from avsync.cli import main; "
            f"status = main(['align', {str(tmp_path / 'missing.mp4')!r}, {str(tmp_path / 'missing.wav')!r}]); "
            "print(status, 'torch' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["2", "False"]
    assert result.stderr.strip().endswith("missing.mp4: file not found")


def test_the_program_ends_without_teardown_and_loses_no_output(capsys, tmp_path: Path, song: Path, faceless: Path, tone: Path,
                                                                untrained_ckpt: Path) -> None:  # fmt: skip
    """`python -m avsync align` leaves through os._exit once torch is loaded: everything printed and written first."""
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "avsync", "align", str(song / "Video.mp4"), str(song / "Mix.wav"), "--report", str(report),
               "--checkpoint", str(untrained_ckpt), "--device", "cpu", "--quiet"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr  # the lips worker ends quietly
    assert result.stdout.startswith("offset: ") and result.stdout.rstrip().endswith(f"wrote report {report}")
    data = json.loads(report.read_text())
    assert data["confidence_level"] in ("reliable", "uncertain", "unreliable")
    # The lips were read in a forked process while the model loaded (the command had not loaded torch
    # yet), with the same result as reading them in-process (torch is loaded in this test process).
    assert "video features (waited)" in data["timings_s"] and "music embedding" in data["timings_s"]
    in_process = tmp_path / "in_process.json"
    status, _, err = run_cli(capsys, song / "Video.mp4", song / "Mix.wav", "--report", in_process, "--checkpoint", untrained_ckpt,
                             "--device", "cpu", "--quiet")  # fmt: skip
    assert status == 0, err
    expected = json.loads(in_process.read_text())
    assert "video features" in expected["timings_s"]
    for key in ("time_map", "offset_s", "confidence", "frames_without_face", "unreliable_spans"):
        assert data[key] == expected[key], key
    failing = subprocess.run([sys.executable, "-m", "avsync", "align", str(faceless), str(tone), "--checkpoint", str(untrained_ckpt)],
                             capture_output=True, text=True)  # fmt: skip
    assert failing.returncode == 2
    assert failing.stderr.strip().splitlines()[-1].endswith("no face in any frame (nothing to read the lips from)")


def test_the_onnx_path_also_ends_without_teardown_after_its_output(tmp_path: Path, song: Path) -> None:
    """Without torch the teardown (numba's LLVM, onnxruntime, the lips worker) took 0.3-0.45 s: skipped too, output first."""
    report = tmp_path / "report.json"
    arguments = ["avsync", "align", str(song / "Video.mp4"), str(song / "Mix.wav"), "--report", str(report), "--quiet"]
    script = ("import atexit, sys; atexit.register(lambda: print('TEARDOWN', file=sys.stderr)); "
              f"sys.argv = {arguments!r}; from avsync.cli import entry; entry()")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "TEARDOWN" not in result.stderr and "torch" not in result.stderr
    assert result.stdout.startswith("offset: ") and result.stdout.rstrip().endswith(f"wrote report {report}")
    assert json.loads(report.read_text())["model"]["network"] == "Ensemble"  # the shipped model, through its ONNX export
