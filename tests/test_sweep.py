"""`avsync sweep`: W&B sweep YAML parsing, grid/random trials, `${args}` expansion, a local 2-trial sweep."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from avsync.cli import main as avsync_main
from avsync.errors import AvsyncError
from avsync.training.lit_module import METRICS_FILE
from avsync.training.sweep import (
    TrialResult,
    best_value,
    expand_command,
    read_sweep,
    summary_table,
    trial_options,
)
from tests.test_train import REPO, tiny_data  # noqa: F401 (session fixture shared with test_train)


def write_sweep(folder: Path, **fields) -> Path:
    sweep = {
        "name": "demo",
        "method": "grid",
        "metric": {"name": "val/offset_acc", "goal": "maximize"},
        "parameters": {"model.lr": {"values": [0.001, 0.002]}, "data.batch_size": {"values": [8, 16, 32]}},
        "command": ["${env}", "${interpreter}", "-m", "avsync", "fit", "--config", "experiments/base.yaml", "${args}"],
        **fields,
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def test_every_sweep_yaml_of_the_repo_is_valid_and_monitors_the_checkpoint_metric():
    base = yaml.safe_load((REPO / "experiments" / "base.yaml").read_text())
    (checkpoint,) = [c for c in base["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    files = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
    assert files
    for file in files:
        spec = read_sweep(file)
        assert spec.metric == checkpoint["init_args"]["monitor"]
        assert "${args}" in spec.command
        assert trial_options(spec, count=2)


def test_grid_covers_every_combination_in_order(tmp_path):
    spec = read_sweep(write_sweep(tmp_path))
    trials = trial_options(spec, count=None)
    assert len(trials) == 6
    assert trials[0] == {"model.lr": 0.001, "data.batch_size": 8}
    assert trials[-1] == {"model.lr": 0.002, "data.batch_size": 32}
    assert trial_options(spec, count=2) == trials[:2]


def test_random_search_draws_from_the_distributions_deterministically(tmp_path):
    parameters = {
        "model.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "data.batch_size": {"values": [16, 32]},
        "model.model.init_args.embed_dim": {"distribution": "int_uniform", "min": 32, "max": 64},
        "data.seed": {"value": 3},
    }
    spec = read_sweep(write_sweep(tmp_path, method="random", parameters=parameters))
    trials = trial_options(spec, count=50)
    assert trials == trial_options(spec, count=50)
    assert len(trials) == 50
    lrs = [t["model.lr"] for t in trials]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs) and min(lrs) < 1e-3 < max(lrs)
    assert {t["data.batch_size"] for t in trials} == {16, 32}
    assert all(32 <= t["model.model.init_args.embed_dim"] <= 64 and isinstance(t["model.model.init_args.embed_dim"], int) for t in trials)
    assert {t["data.seed"] for t in trials} == {3}


def test_args_macro_expands_to_cli_options(tmp_path):
    spec = read_sweep(write_sweep(tmp_path))
    argv = expand_command(spec, {"model.lr": 0.001, "data.batch_size": 8})
    assert argv == [sys.executable, "-m", "avsync", "fit", "--config", "experiments/base.yaml", "--model.lr=0.001", "--data.batch_size=8"]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"method": "hyperband"}, "method"),
        ({"metric": {"goal": "maximize"}}, "metric.name"),
        ({"parameters": {"model.lr": {"distribution": "uniform", "min": 0.1, "max": 0.2}}}, "grid search needs"),
        ({"method": "random", "parameters": {"model.lr": {"distribution": "beta"}}}, "not supported"),
    ],
)
def test_bad_sweep_files_name_the_problem(tmp_path, fields, message):
    with pytest.raises(AvsyncError, match=message):
        read_sweep(write_sweep(tmp_path, **fields))


def test_missing_sweep_file_is_exit_2(tmp_path, capsys):
    assert avsync_main(["sweep", str(tmp_path / "none.yaml"), "--local"]) == 2
    assert "sweep file not found" in capsys.readouterr().err


def test_best_value_and_table_follow_the_goal(tmp_path):
    for number, values in enumerate([[0.2, 0.6, 0.5], [0.7, 0.4]]):
        run = tmp_path / f"trial-{number:02d}" / "exp" / "v1"
        run.mkdir(parents=True)
        (run / METRICS_FILE).write_text("".join(json.dumps({"epoch": i, "val/offset_acc": v}) + "\n" for i, v in enumerate(values)))
    assert best_value(tmp_path / "trial-00", "val/offset_acc", "maximize") == 0.6
    assert best_value(tmp_path / "trial-01", "val/offset_acc", "minimize") == 0.4
    assert best_value(tmp_path / "trial-02", "val/offset_acc", "maximize") is None
    spec = read_sweep(write_sweep(tmp_path))
    results = [
        TrialResult(0, {"model.lr": 0.001, "data.batch_size": 8}, 0, 0.6, tmp_path / "trial-00"),
        TrialResult(1, {"model.lr": 0.002, "data.batch_size": 8}, 0, 0.7, tmp_path / "trial-01"),
        TrialResult(2, {"model.lr": 0.001, "data.batch_size": 16}, 1, None, tmp_path / "trial-02"),
    ]
    table = summary_table(spec, results).splitlines()
    assert table[0].split()[:4] == ["trial", "model.lr", "data.batch_size", "val/offset_acc"]
    assert table[2].startswith("01 *") and "0.7000" in table[2]
    assert "failed (exit 1)" in table[3]


@pytest.mark.slow
def test_local_sweep_of_two_trials(tiny_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    command = ["${env}", "${interpreter}", "-m", "avsync", "fit", "--config", "experiments/base.yaml",
               "--config", "experiments/twotower_synth.yaml", "${args}"]  # fmt: skip
    sweep = write_sweep(tmp_path, command=command, parameters={"model.lr": {"values": [0.001, 0.003]}})
    extra = (
        f"--data.data={tiny_data['synth']} --data.cache={tiny_data['cache']} --data.batch_size=8 --data.val_pairs=8 "
        "--data.samples_per_epoch=16 --data.prepare_workers=1 --data.shifts.easy_max=20 --trainer.max_epochs=1 "
        "--trainer.enable_progress_bar=false"
    )
    root = tmp_path / "sweeps"
    assert avsync_main(["sweep", str(sweep), "--local", "--root", str(root), "--extra", extra]) == 0
    out = capsys.readouterr().out
    for number in range(2):
        folder = root / "demo" / f"trial-{number:02d}"
        (checkpoint,) = folder.glob("twotower_synth/*/checkpoints/*.ckpt")  # an ordinary run in its own folder
        value = best_value(folder, "val/offset_acc", "maximize")
        assert value is not None and 0.0 <= value <= 1.0
        assert f"{value:.4f}" in out
    config_lrs = sorted(float(yaml.safe_load(p.read_text())["model"]["lr"]) for p in root.glob("demo/*/*/*/config.yaml"))
    assert config_lrs == [0.001, 0.003]
    assert "trial" in out and "val/offset_acc" in out and "*" in out
