"""Training: LitAVSync metrics and checkpoints, every experiment YAML (fast_dev_run), DDP on CPU, CLI errors.

The slow tests share one tiny synthetic dataset (3 songs of 4 s) and its feature cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from avsync.cli import main as avsync_main
from avsync.models import PosterCNN, TwoTower
from avsync.training.lit_module import LitAVSync, candidate_windows
from datamodules.av_pairs import EpochKeySampler, FixedPairs, RandomPairs
from datamodules.sampling import ShiftConfig, WindowSampler
from datamodules.toy import toy_clip

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml") if p.stem != "base")
LAYERS = sorted(p.stem for p in (REPO / "experiments" / "with").glob("*.yaml"))  # make ... ALSO=NAME: layered on a LipSync experiment
SUMMARY = re.compile(r"epoch (\d+) step (\d+): (.*)")


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """A 3-song, 4 s synthetic dataset, the same videos as a plain folder, and a shared cache."""
    root = tmp_path_factory.mktemp("tiny")
    synth = root / "synth"
    assert avsync_main(["synth", str(synth), "--songs", "3", "--seconds", "4", "--workers", "1"]) == 0
    folder = root / "videos"
    folder.mkdir()
    rows = ["path,split"]
    for line in (synth / "manifest.jsonl").read_text().splitlines():
        record = json.loads(line)
        shutil.copy(synth / record["video"], folder / f"{record['id']}.mp4")
        rows.append(f"{record['id']}.mp4,{record['split']}")
    (folder / "clips.csv").write_text("\n".join(rows) + "\n")
    return {"synth": synth, "videos": folder, "cache": root / "cache"}


def summaries(caplog) -> list[dict[str, float]]:
    found = []
    for record in caplog.records:
        match = SUMMARY.search(record.getMessage())
        if match:
            found.append({k: float(v) for k, v in (pair.split("=") for pair in match.group(3).split())})
    return found


def fit_args(experiment: str, data: Path, cache: Path, save_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config", "experiments/base.yaml",
        "--config", f"experiments/{experiment}.yaml",
        f"--data.data={data}",
        f"--data.cache={cache}",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.default_root_dir={save_dir}",  # fast_dev_run turns the logger off: checkpoints fall back here, not the cwd
        "--data.batch_size=8",
        "--data.val_pairs=8",
        "--data.samples_per_epoch=16",
        "--data.prepare_workers=1",
        "--data.shifts.easy_max=20",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]  # fmt: skip


def toy_loaders(count: int = 32) -> tuple[DataLoader, DataLoader]:
    clips = [toy_clip(200, seed) for seed in range(2)]
    sampler = WindowSampler(clips, ShiftConfig(easy_max=20))
    train = RandomPairs(sampler, count, seed=0)
    val = FixedPairs(sampler, sampler.fixed_pairs(count, seed=1))

    def collate(items):
        batch = torch.utils.data.default_collate(items)
        batch["mouth"] = batch["mouth"].float() / 255
        batch.pop("accompaniment")
        return batch

    return DataLoader(train, batch_size=8, collate_fn=collate), DataLoader(val, batch_size=8, collate_fn=collate)


def test_candidate_windows_step_one_frame_per_shift():
    context = torch.arange(4 * (16 + 2 * 3), dtype=torch.float32).expand(2, 80, -1)
    windows = candidate_windows(context, max_offset=3)
    assert windows.shape == (2, 7, 80, 64)
    for index, shift in enumerate(range(-3, 4)):
        first_column = 4 * (3 + shift)
        torch.testing.assert_close(windows[:, index], context[:, :, first_column : first_column + 64])
    with pytest.raises(ValueError, match="shifts"):
        candidate_windows(context, max_offset=5)


def test_offset_accuracy_counts_best_shift_within_one_frame():
    """A network that prefers audio shifted by s frames is right exactly when |s| <= 1."""

    class PrefersShift(torch.nn.Module):
        def __init__(self, shift: int):
            super().__init__()
            self.shift = shift
            self.weight = torch.nn.Parameter(torch.zeros(()))

        def forward(self, mouth, log_mel):
            return torch.zeros(mouth.shape[0])

        def score_candidates(self, mouth, candidates):
            logits = torch.zeros(candidates.shape[:2])
            logits[:, 15 + self.shift] = 1.0
            return logits

    results = {}
    for shift in (0, 1, -1, 2, -5):
        module = LitAVSync(TwoTower())
        module.model = PrefersShift(shift)
        batch = {
            "mouth": torch.rand(4, 16, 64, 64),
            "log_mel": torch.randn(4, 80, 64),
            "label": torch.tensor([1.0, 0.0, 1.0, 0.0]),
            "mel_context": torch.randn(4, 80, 4 * 46),
        }
        module.log = lambda *args, **kwargs: None  # no trainer attached
        module._evaluate(batch, "val")
        results[shift] = float(module.eval_metrics["val"]["offset_acc"].compute())
    assert results == {0: 1.0, 1: 1.0, -1: 1.0, 2: 0.0, -5: 0.0}


@pytest.mark.slow
@pytest.mark.parametrize("cls", [PosterCNN, TwoTower])
def test_checkpoint_alone_rebuilds_a_python_built_module(cls, tmp_path):
    torch.manual_seed(0)
    module = LitAVSync(cls(), lr=1e-3)
    train, val = toy_loaders()
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, train, val)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = LitAVSync.load_from_checkpoint(path, weights_only=False)
    assert type(loaded.model) is cls and loaded.hparams.lr == 1e-3
    batch = next(iter(val))
    module.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["mouth"], batch["log_mel"]), module(batch["mouth"], batch["log_mel"]))


def test_epoch_keys_differ_between_epochs_and_ranks():
    dataset = RandomPairs(WindowSampler([toy_clip(100, 0)], ShiftConfig(easy_max=20)), length=8, seed=0)
    keys = {}
    for rank in (0, 1):
        sampler = EpochKeySampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            keys[rank, epoch] = list(sampler)
    assert sorted(keys[0, 0] + keys[1, 0]) == list(range(8))
    assert sorted(keys[0, 1] + keys[1, 1]) == list(range(8, 16))
    first, again = dataset[3], dataset[3]
    np.testing.assert_array_equal(first["mouth"], again["mouth"])  # a key always gives the same pair
    assert first["label"] == 0.0 and dataset[2]["label"] == 1.0  # odd keys negatives, even positives


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS + [f"lipsync_real+{layer}" for layer in LAYERS])
def test_fast_dev_run_of_every_experiment(experiment, tiny_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    experiment, *layers = experiment.split("+")
    data = tiny_data["videos"] if experiment.endswith("_real") else tiny_data["synth"]
    layered = [arg for layer in layers for arg in ("--config", f"experiments/with/{layer}.yaml")]
    args = fit_args(experiment, data, tiny_data["cache"], tmp_path, "--trainer.fast_dev_run=true", *layered)
    assert avsync_main(args) == 0
    (values,) = summaries(caplog)
    pair_metrics = () if experiment.startswith("lipsync") else ("val/acc", "val/auc")  # LipSync scores offsets only
    for name in (*pair_metrics, "val/offset_acc"):
        assert 0.0 <= values[name] <= 1.0
    assert np.isfinite(values["val/loss"]) and values["val/loss"] > 0


@pytest.mark.slow
def test_fit_writes_config_metrics_plot_and_a_loadable_checkpoint(tiny_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    args = fit_args("twotower_synth", tiny_data["synth"], tiny_data["cache"], tmp_path, "--trainer.max_epochs=2")
    assert avsync_main(args) == 0
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert "W&B: offline (no API key configured); run saved in" in messages and "wandb sync" in messages
    (checkpoint,) = tmp_path.glob("twotower_synth/*/checkpoints/*.ckpt")
    run = checkpoint.parents[1]
    assert "best checkpoint (val/offset_acc=" in messages and str(checkpoint) in messages
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1]
    assert [line["val/offset_acc"] for line in lines] == [s["val/offset_acc"] for s in summaries(caplog)]
    assert (run / "plots" / "val_offset_curve_epoch001.png").stat().st_size > 1000
    assert "twotower_synth" in (run / "config.yaml").read_text()
    loaded = LitAVSync.load_from_checkpoint(checkpoint, weights_only=False)
    assert isinstance(loaded.model, TwoTower)
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    torch.testing.assert_close(loaded.state_dict()["model.bias"], state["model.bias"])


@pytest.mark.slow
def test_ddp_with_two_processes_on_cpu(tiny_data, tmp_path):
    args = fit_args(
        "twotower_synth", tiny_data["synth"], tiny_data["cache"], tmp_path,
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--trainer.max_epochs=1",
    )  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-m", "avsync", *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert "MEMBER: 2/2" in output  # both processes joined the group
    (checkpoint,) = tmp_path.glob("twotower_synth/*/checkpoints/*.ckpt")
    (line,) = (checkpoint.parents[1] / "metrics.jsonl").read_text().splitlines()
    assert 0.0 <= json.loads(line)["val/offset_acc"] <= 1.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config", "experiments/no_such_experiment.yaml"], "no_such_experiment.yaml"),
        (["--config", "experiments/base.yaml", "--model.lr=fast"], "model.lr"),
    ],
)
def test_bad_config_or_option_is_one_line_and_exit_2(extra, message, capsys):
    assert avsync_main(["fit", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("avsync: error:") and message in err[0]


def test_missing_dataset_folder_is_one_line_and_exit_2(tmp_path, capsys):
    args = fit_args("twotower_synth", tmp_path / "nothing", tmp_path / "cache", tmp_path, "--trainer.fast_dev_run=true")
    assert avsync_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("avsync: error:") and "nothing" in err[-1] and "not found" in err[-1]


def _saved_twotower_checkpoint(path: Path, seed: int = 0) -> LitAVSync:
    """Train a `TwoTower` module for one step and save its checkpoint at `path` (as `avsync fit` would)."""
    torch.manual_seed(seed)
    module = LitAVSync(TwoTower(), lr=1e-3)
    train, _ = toy_loaders(8)
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=path.parent)  # fmt: skip
    trainer.fit(module, train)
    trainer.save_checkpoint(path)
    return module


def test_init_weights_start_training_and_the_result_still_loads(tmp_path):
    from avsync.models.checkpoints import load_model

    source_path = tmp_path / "pretrained.ckpt"
    source = _saved_twotower_checkpoint(source_path)
    expected = {k: v.detach().clone() for k, v in source.model.state_dict().items()}
    torch.manual_seed(1)
    module = LitAVSync(TwoTower(), lr=1e-4, init_weights=str(source_path))
    assert any(not torch.equal(v, expected[k]) for k, v in module.model.state_dict().items())  # fresh until fit starts

    seen = {}

    class Capture(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.update({k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()})

    train, _ = toy_loaders(8)
    trainer = pl.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, callbacks=[Capture()])  # fmt: skip
    trainer.fit(module, train)
    assert seen.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(seen[key], value, msg=key)
    tuned_path = tmp_path / "finetuned.ckpt"
    trainer.save_checkpoint(tuned_path)
    source_path.unlink()  # the fine-tuned checkpoint stands alone
    loaded = load_model(tuned_path, device="cpu")
    torch.testing.assert_close(loaded.network.state_dict()["bias"], module.model.state_dict()["bias"])
    again = LitAVSync.load_from_checkpoint(tuned_path, weights_only=False)
    assert again.hparams.init_weights == str(source_path)
    torch.testing.assert_close(again.model.state_dict()["bias"], module.model.state_dict()["bias"])


@pytest.mark.parametrize("network, problem", [(lambda: TwoTower(embed_dim=64), "shape mismatch"), (PosterCNN, "network differs")])
def test_init_weights_from_a_different_network_is_a_one_line_error(network, problem, tmp_path):
    from avsync.errors import AvsyncError

    path = tmp_path / "pretrained.ckpt"
    _saved_twotower_checkpoint(path)
    module = LitAVSync(network(), init_weights=str(path))
    with pytest.raises(AvsyncError) as info:
        module.setup("fit")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{path}: init_weights:") and problem in message
    with pytest.raises(AvsyncError, match="checkpoint not found"):
        LitAVSync(TwoTower(), init_weights=str(tmp_path / "none.ckpt")).setup("fit")
