"""Per-epoch DTW evaluation during training: align known warps of the test clips and log the scores.

`DTWEvalCallback` runs `avsync.evaluation.harness` (the synthetic protocol of `avsync eval`, model
only, through the analysis `avsync align` runs) at the end of every validation epoch and of `test`,
on global rank 0 only, and logs under the stage (`val/...` or `test/...`):

* ``dtw_cost``: mean normalised cost along the DTW path (lower = the model is surer of its path),
* ``frame_err``, ``frame_err_median``: frame error of the time map against the true warp (frames),
* ``within1``: share of video frames placed within +-1 frame of the truth,
* ``offset_acc_dtw``, ``offset_err_dtw``: the constant offset from the path, within +-1 frame / its
  error in frames (named apart from the module's window-level ``offset_acc``),

plus one PNG per clip (cost matrix with the found and the true path) in
``<run folder>/plots/dtw/<stage>_epoch<NNN>/`` that also goes to the logger (W&B) as the image list
``<stage>/dtw_alignment``, the per-case scores appended to ``<run folder>/dtw_eval.jsonl``, and a
compact table printed to the log. The clips' features are loaded once (from the training cache),
kept in memory and warped at the feature level; the warps are deterministic and draw nothing from
the global random state, so training runs stay reproducible. Networks that score pairs one by one (PosterCNN) are skipped
unless ``pair_models=True`` (too slow for every epoch on a CPU).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from avsync.errors import AvsyncError
from avsync.evaluation.harness import (
    Case,
    EvalReport,
    ModelMethod,
    format_table,
    load_eval_clips,
    make_cases,
    run_evaluation,
)
from avsync.evaluation.warp import MIN_FRAMES
from avsync.features.extract import VisualParams
from avsync.models import is_pair_model
from avsync.training.wandb_setup import run_directory

RESULTS_FILE = "dtw_eval.jsonl"
LOGGED = {  # logged name -> summary field of `EvalReport.summary()`
    "dtw_cost": "dtw_cost",
    "frame_err": "frame_err_mean",
    "frame_err_median": "frame_err_median",
    "within1": "within1",
    "offset_acc_dtw": "offset_acc",
    "offset_err_dtw": "offset_err",
}


class DTWEvalCallback(pl.Callback):
    """Align deterministic known warps of the test clips each validation epoch and in `test`.

    Args:
        data: manifest or dataset folder; None takes the datamodule's ``hparams.data``.
        cache: feature cache folder; None takes the datamodule's ``hparams.cache``.
        split: which split's clips.
        n_clips: how many clips (the first by id that are at least ``MIN_FRAMES`` long).
        max_frames: cut every clip to its first frames (the cost grows with it; None: whole clips).
        every_n_epochs: run after every n-th validation epoch (and always after the last one).
        seed: warp seed (`avsync.evaluation.harness.make_cases`).
        plots: write and log the per-clip PNGs.
        batch_size: windows (TwoTower) or pairs (pair models) per forward pass.
        pair_models: also evaluate networks that score pairs one by one (PosterCNN). Off by
            default: on CPU that is ~24,000 forward passes per 6 s clip, tens of minutes per
            epoch; the callback then warns once and does nothing (`avsync eval` still scores them).
    """

    def __init__(self, data: str | None = None, cache: str | None = None, split: str = "test", n_clips: int = 10,
                 max_frames: int | None = 150, every_n_epochs: int = 1, seed: int = 0, plots: bool = True,
                 batch_size: int = 256, pair_models: bool = False) -> None:
        if n_clips < 1:
            raise ValueError(f"n_clips must be at least 1, got {n_clips}")
        if max_frames is not None and max_frames < MIN_FRAMES:
            raise ValueError(f"max_frames must be at least {MIN_FRAMES} (the shortest clip a warp takes), got {max_frames}")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}")
        self.data, self.cache, self.split = data, cache, split
        self.n_clips, self.max_frames, self.every_n_epochs = n_clips, max_frames, every_n_epochs
        self.seed, self.plots, self.batch_size, self.pair_models = seed, plots, batch_size, pair_models
        self._cases: list[Case] | None = None
        self._disabled = False

    def _load_cases(self, trainer: pl.Trainer) -> list[Case] | None:
        """The warped cases (loaded on first use), or None when there are none (warned once)."""
        if self._cases is not None or self._disabled:
            return self._cases
        datamodule = trainer.datamodule
        hparams = getattr(datamodule, "hparams", {})
        data = self.data or hparams.get("data")
        cache = self.cache or hparams.get("cache")
        visual = getattr(datamodule, "visual", VisualParams())
        try:
            if data is None or cache is None:
                raise AvsyncError("no data/cache given and the datamodule has none")
            clips = load_eval_clips(data, cache, split=self.split, n_clips=self.n_clips, max_frames=self.max_frames,
                                    visual=visual)
        except AvsyncError as exc:
            rank_zero_warn(f"DTWEvalCallback: DTW evaluation off: {exc}")
            self._disabled = True
            return None
        self._cases = make_cases(clips, seed=self.seed)
        return self._cases

    def _due(self, trainer: pl.Trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epoch + 1
        return (epoch + 1) % self.every_n_epochs == 0 or last

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and self._due(trainer):
            self.evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.evaluate(trainer, pl_module, "test")

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> EvalReport | None:
        """Align the cases with the module's network and log the scores under ``stage`` (rank 0 only).

        Args:
            trainer: the running trainer.
            pl_module: the `LitAVSync` (its ``model``) or any module that scores windows itself.
            stage: ``val`` or ``test``.

        Returns:
            The report on global rank 0 (None elsewhere or when there are no cases).
        """
        if not trainer.is_global_zero or self._disabled:
            return None
        network: nn.Module = getattr(pl_module, "model", pl_module)
        if is_pair_model(network) and not self.pair_models:
            rank_zero_warn(f"DTWEvalCallback: DTW evaluation off: {type(network).__name__} scores pairs one by one, too "
                           "slow for every epoch (set pair_models=true, or run `avsync eval` on the checkpoint)")
            self._disabled = True
            return None
        cases = self._load_cases(trainer)
        if not cases:
            return None
        started = time.perf_counter()
        folder = run_directory(trainer)
        plots_dir = folder / "plots" / "dtw" / f"{stage}_epoch{trainer.current_epoch:03d}" if self.plots and folder else None
        report = run_evaluation([ModelMethod(network, batch_size=self.batch_size)], cases, plots_dir=plots_dir, progress=False)
        means = report.summary()["model"]
        for name, field in LOGGED.items():
            pl_module.log(f"{stage}/{name}", means[field], rank_zero_only=True)
        if folder is not None:
            self._write(folder, trainer, stage, report)
        rank_zero_info(f"DTW alignment of {len(cases)} {self.split} clips ({stage}, epoch {trainer.current_epoch}, "
                       f"{time.perf_counter() - started:.1f} s):\n" + format_table(report))
        return report

    @staticmethod
    def _write(folder: Path, trainer: pl.Trainer, stage: str, report: EvalReport) -> None:
        """Append the scores to the run's ``dtw_eval.jsonl`` and log the plots as images."""
        folder.mkdir(parents=True, exist_ok=True)
        record = {"stage": stage, "epoch": trainer.current_epoch, "step": trainer.global_step, **report.to_dict()}
        with open(folder / RESULTS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        log_image = getattr(trainer.logger, "log_image", None)
        if report.plots and callable(log_image):
            log_image(key=f"{stage}/dtw_alignment", images=[str(p) for p in report.plots],
                      caption=[r.case for r in report.results], step=trainer.global_step)
