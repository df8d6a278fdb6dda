"""DTWEvalCallback: per-epoch alignment scores, plots and table inside a real Lightning run."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from matplotlib.image import imread
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

import avsync.training.callbacks
from avsync.training.callbacks import LOGGED, RESULTS_FILE, DTWEvalCallback
from tests.test_eval import BrightnessPairModel, BrightnessTwoTower, synthetic_clip


class TinyModule(pl.LightningModule):
    """Holds the network as ``model`` (like LitAVSync) and trains a throwaway parameter."""

    def __init__(self, network: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.model = network if network is not None else BrightnessTwoTower()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return ((self.weight - batch[0]) ** 2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", ((self.weight - batch[0]) ** 2).mean())

    test_step = validation_step

    def configure_optimizers(self):
        return torch.optim.SGD([self.weight], lr=0.1)


def loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)


@pytest.fixture
def clips_from_memory(monkeypatch) -> list[dict]:
    """Serve 3 in-memory clips of 200 frames instead of reading a dataset; record the calls."""
    calls: list[dict] = []

    def fake_load(data, cache, **kwargs):
        calls.append({"data": data, "cache": cache, **kwargs})
        return [synthetic_clip(f"clip{k}", 200, k) for k in range(kwargs["n_clips"])]

    monkeypatch.setattr(avsync.training.callbacks, "load_eval_clips", fake_load)
    return calls


def trainer_for(tmp_path, callback: DTWEvalCallback, max_epochs: int) -> pl.Trainer:
    return pl.Trainer(max_epochs=max_epochs, logger=CSVLogger(tmp_path, name="run"), callbacks=[callback],
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, accelerator="cpu")


def test_logs_scores_plots_and_table_each_due_epoch_and_in_test(tmp_path, clips_from_memory, caplog) -> None:
    caplog.set_level(logging.INFO)
    callback = DTWEvalCallback(data="some/data", cache="some/cache", n_clips=3, max_frames=None, every_n_epochs=2)
    trainer = trainer_for(tmp_path, callback, max_epochs=3)
    module = TinyModule()
    trainer.fit(module, loader(), loader())
    assert len(clips_from_memory) == 1 and clips_from_memory[0]["data"] == "some/data"  # loaded once
    for name in LOGGED:
        assert f"val/{name}" in trainer.callback_metrics
    assert float(trainer.callback_metrics["val/within1"]) > 0.8
    assert float(trainer.callback_metrics["val/frame_err_median"]) <= 1.0

    run = tmp_path / "run" / "version_0"
    records = [json.loads(line) for line in (run / RESULTS_FILE).read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in records] == [("val", 1), ("val", 2)]  # every 2nd and the last
    assert [c["case"] for c in records[0]["cases"]] == ["clip0:shift", "clip1:tempo", "clip2:cut"]
    assert records[1]["summary"]["model"]["within1"] == pytest.approx(float(trainer.callback_metrics["val/within1"]))
    pngs = sorted((run / "plots" / "dtw" / "val_epoch002").glob("*.png"))
    assert [p.name for p in pngs] == ["clip0_shift_model.png", "clip1_tempo_model.png", "clip2_cut_model.png"]
    assert all(p.stat().st_size > 1000 for p in pngs)
    assert len({imread(p).shape for p in pngs}) == 1  # W&B wants one image size per key
    assert "DTW alignment of 3 test clips (val, epoch 2, " in caplog.text and "clip1:tempo" in caplog.text

    (results,) = trainer.test(module, loader(), verbose=False)
    assert results["test/within1"] == pytest.approx(records[1]["summary"]["model"]["within1"])  # same cases, same model
    assert (run / "plots" / "dtw" / "test_epoch003").is_dir()


def test_takes_data_and_cache_from_the_datamodule(tmp_path, clips_from_memory) -> None:
    class DataModule(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"data": "dm/data", "cache": "dm/cache"})

        def train_dataloader(self):
            return loader()

        def val_dataloader(self):
            return loader()

    callback = DTWEvalCallback(n_clips=2, plots=False)
    trainer = trainer_for(tmp_path, callback, max_epochs=1)
    trainer.fit(TinyModule(), datamodule=DataModule())
    (call,) = clips_from_memory
    assert (call["data"], call["cache"], call["max_frames"], call["split"]) == ("dm/data", "dm/cache", 150, "test")
    assert not (tmp_path / "run" / "version_0" / "plots").exists()
    assert "val/frame_err" in trainer.callback_metrics


def test_without_usable_clips_it_warns_once_and_training_goes_on(tmp_path) -> None:
    callback = DTWEvalCallback(data=str(tmp_path / "missing"), cache=str(tmp_path / "cache"))
    trainer = trainer_for(tmp_path, callback, max_epochs=2)
    with pytest.warns(UserWarning, match="DTW evaluation off: .*manifest or dataset folder not found") as warned:
        trainer.fit(TinyModule(), loader(), loader())
    assert sum("DTW evaluation off" in str(w.message) for w in warned) == 1
    assert trainer.current_epoch == 2 and "val/frame_err" not in trainer.callback_metrics


def test_pair_models_are_skipped_unless_asked_for(tmp_path, clips_from_memory) -> None:
    trainer = trainer_for(tmp_path, DTWEvalCallback(data="d", cache="c", n_clips=2, plots=False), max_epochs=2)
    with pytest.warns(UserWarning, match="BrightnessPairModel scores pairs one by one") as warned:
        trainer.fit(TinyModule(BrightnessPairModel()), loader(), loader())
    assert sum("DTW evaluation off" in str(w.message) for w in warned) == 1
    assert clips_from_memory == [] and "val/frame_err" not in trainer.callback_metrics

    trainer = trainer_for(tmp_path, DTWEvalCallback(data="d", cache="c", n_clips=2, plots=False, pair_models=True), max_epochs=1)
    trainer.fit(TinyModule(BrightnessPairModel()), loader(), loader())
    assert float(trainer.callback_metrics["val/within1"]) > 0.8


def test_only_global_rank_zero_evaluates(clips_from_memory) -> None:
    callback = DTWEvalCallback(data="d", cache="c")
    other_rank = SimpleNamespace(is_global_zero=False)
    assert callback.evaluate(other_rank, TinyModule(), "val") is None
    assert clips_from_memory == []


@pytest.mark.parametrize("kwargs", [{"n_clips": 0}, {"max_frames": 100}, {"every_n_epochs": 0}])
def test_bad_arguments_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        DTWEvalCallback(**kwargs)
