"""`avsync eval` end to end on a tiny generated dataset with a checkpoint trained in the test; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from avsync.cli import main as avsync_main
from avsync.evaluation.warp import MIN_FRAMES
from avsync.models import TwoTower
from avsync.training.lit_module import LitAVSync
from tests.test_train import toy_loaders


def train_tiny_checkpoint(path: Path) -> Path:
    """Two optimiser steps of a small TwoTower on toy clips, saved as a Lightning checkpoint."""
    torch.manual_seed(0)
    module = LitAVSync(TwoTower(embed_dim=16, frame_dim=8, temporal_dim=16, audio_channels=16))
    train, val = toy_loaders(16)
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, train, val)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def tiny_eval_data(tmp_path_factory) -> dict[str, Path]:
    """Two 6.5 s synthetic songs, both in the test split; a feature cache; a checkpoint under runs/."""
    root = tmp_path_factory.mktemp("evaldata")
    synth = root / "synth"
    assert avsync_main(["synth", str(synth), "--songs", "2", "--seconds", "6.5", "--workers", "1"]) == 0
    manifest = synth / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**r, "split": "test"}) + "\n" for r in records))
    checkpoint = train_tiny_checkpoint(root / "runs" / "tiny" / "version_0" / "checkpoints" / "epoch000.ckpt")
    return {"root": root, "synth": synth, "cache": root / "cache", "checkpoint": checkpoint}


@pytest.mark.slow
def test_eval_with_the_newest_checkpoint_writes_table_json_and_plots(tiny_eval_data, monkeypatch, capsys) -> None:
    root = tiny_eval_data["root"]
    monkeypatch.chdir(root)  # `latest` is the newest checkpoint under ./runs
    out = root / "results" / "eval.json"
    args = ["eval", "--checkpoint", "latest", "--data", str(tiny_eval_data["synth"]), "--cache", str(tiny_eval_data["cache"]),
            "--out", str(out), "--quiet"]
    assert avsync_main(args) == 0
    stdout = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert Path(results["checkpoint"]).resolve() == tiny_eval_data["checkpoint"].resolve()
    assert results["network"] == "TwoTower" and results["split"] == "test"
    cases = results["cases"]
    assert [(c["case"], c["method"]) for c in cases] == [
        ("song000:shift", "model"), ("song000:shift", "baseline"), ("song001:tempo", "model"), ("song001:tempo", "baseline")]
    for case in cases:
        assert 0.0 <= case["within1"] <= 1.0 and case["frame_err_mean"] >= 0.0 and case["offset_acc"] in (0.0, 1.0)
    assert set(results["summary"]) == {"model", "baseline"}
    assert set(results["summary_by_kind"]["baseline"]) == {"shift", "tempo"}
    mean_model_within1 = (cases[0]["within1"] + cases[2]["within1"]) / 2
    assert results["summary"]["model"]["within1"] == pytest.approx(mean_model_within1)
    plots = [Path(p) for p in results["plots"]]
    assert [p.name for p in plots] == [f"song00{k}_{kind}_{method}{plot}.png" for k, kind in enumerate(("shift", "tempo"))
                                       for method in ("model", "baseline") for plot in ("", "_timemap")]
    assert all(p.parent == root / "results" / "eval_plots" and p.stat().st_size > 1000 for p in plots)
    assert "song001:tempo" in stdout and "MEAN tempo" in stdout and "model vs baseline: within +-1 frame" in stdout
    assert f"wrote {out}" in stdout
    assert not list(out.parent.glob("*.tmp*"))


@pytest.mark.slow
def test_eval_of_an_explicit_checkpoint_without_baseline_cut_short(tiny_eval_data, tmp_path, capsys) -> None:
    out = tmp_path / "only_model.json"
    args = ["eval", "--checkpoint", str(tiny_eval_data["checkpoint"]), "--data", str(tiny_eval_data["synth"]),
            "--cache", str(tiny_eval_data["cache"]), "--out", str(out), "--plots", str(tmp_path / "png"),
            "--no-baseline", "--clips", "1", "--max-frames", str(MIN_FRAMES), "--seed", "3", "--quiet"]
    assert avsync_main(args) == 0
    results = json.loads(out.read_text())
    (case,) = results["cases"]
    assert case["method"] == "model" and case["case"] == "song000:shift" and results["max_frames"] == MIN_FRAMES
    assert set(results["summary"]) == {"model"} and "model vs baseline" not in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == ["song000_shift_model.png", "song000_shift_model_timemap.png"]


@pytest.mark.slow
def test_eval_reads_the_cases_lips_with_the_backend_asked(tiny_eval_data, tmp_path) -> None:
    from avsync.features.cache import FeatureCache
    from avsync.features.extract import VisualParams

    out, cases = tmp_path / "dlib.json", tmp_path / "cases"
    args = ["eval", "--checkpoint", str(tiny_eval_data["checkpoint"]), "--data", str(tiny_eval_data["synth"]),
            "--cache", str(tiny_eval_data["cache"]), "--cases", str(cases), "--out", str(out), "--no-baseline",
            "--clips", "1", "--max-frames", str(MIN_FRAMES), "--backend", "dlib", "--quiet"]
    assert avsync_main(args) == 0
    assert json.loads(out.read_text())["backend"] == "dlib"
    (video,) = cases.glob("*.mp4")
    cache = FeatureCache(tiny_eval_data["cache"])
    assert cache.entry_path("visual", video, VisualParams(backend="dlib").params()).is_file()
    assert not cache.entry_path("visual", video, VisualParams().params()).exists()  # the default (mesh) never ran on the case


@pytest.fixture
def manifest(tmp_path) -> Path:
    """A readable one-clip manifest (the media is never opened by the failing runs)."""
    path = tmp_path / "data" / "manifest.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"id": "a", "video": "a.mp4", "audio": None, "split": "test"}) + "\n")
    return path


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--clips", "0"], "--clips must be at least 1"),
        (["--max-frames", "100"], f"--max-frames must be at least {MIN_FRAMES}"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--out", "{tmp}/results.txt"], "--out must end in .json"),
        (["--out", "{tmp}/folder.json"], "--out is a folder"),
        (["--data", "{tmp}/missing"], "manifest or dataset folder not found"),
        (["--checkpoint", "{tmp}/missing.ckpt"], "checkpoint not found"),
        (["--checkpoint", "{tmp}/not_a.ckpt"], "not an avsync model checkpoint"),
        (["--checkpoint", "latest"], "no model checkpoint found under runs/: train one with `make train`"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(extra, message, manifest, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no runs/ here
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "not_a.ckpt").write_text("hello")
    extra = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    assert avsync_main(["eval", "--data", str(manifest), "--out", str(tmp_path / "out.json"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("avsync: error:") and message in err, err
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "out_plots").exists()


def test_output_under_a_file_is_one_line_and_exit_2(manifest, tmp_path, capsys) -> None:
    assert avsync_main(["eval", "--data", str(manifest), "--out", str(manifest / "sub" / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a writable folder" in err


@pytest.mark.slow
def test_eval_defaults_to_the_shipped_model(tiny_eval_data, tmp_path) -> None:
    out = tmp_path / "shipped.json"
    args = ["eval", "--data", str(tiny_eval_data["synth"]), "--cache", str(tiny_eval_data["cache"]), "--out", str(out),
            "--no-baseline", "--clips", "1", "--max-frames", str(MIN_FRAMES), "--quiet"]
    assert avsync_main(args) == 0
    results = json.loads(out.read_text())
    assert Path(results["checkpoint"]).parent.name == "pretrained" and len(results["cases"]) == 1
