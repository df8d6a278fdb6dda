"""`avsync fit|validate|test --config experiments/base.yaml --config experiments/EXP.yaml [--key=value ...]`.

LightningCLI over `avsync.training.lit_module.LitAVSync` and `datamodules.AVPairsDataModule`. Several
`--config` files compose (later ones override earlier ones); `--print_config` shows the result.
Each run writes its resolved config, plots and checkpoints to `runs/<experiment>/<version>/`
(`checkpoints/*.ckpt`); `fit` prints the best checkpoint's path at the end.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

import yaml
from jsonargparse import ArgumentError
from pytorch_lightning.cli import (
    LightningArgumentParser,
    LightningCLI,
    SaveConfigCallback,
)
from pytorch_lightning.utilities import rank_zero_info

from avsync.errors import AvsyncError
from avsync.io.files import atomic_path
from avsync.training.lit_module import LitAVSync
from avsync.training.wandb_setup import run_directory
from datamodules.av_pairs import AVPairsDataModule

CONFIG_NAME = "config.yaml"


class RunConfigCallback(SaveConfigCallback):
    """Saves the resolved config into the run folder and logs it to the logger (rank 0)."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        folder = run_directory(trainer)
        if folder is None:
            return
        text = self.parser.dump(self.config, skip_none=False)
        with atomic_path(folder / CONFIG_NAME) as temporary:
            temporary.write_text(text, encoding="utf-8")
        trainer.logger.log_hyperparams({"config": yaml.safe_load(text)})


class AvsyncCLI(LightningCLI):
    """LightningCLI with the DataModule's offset range linked to the module's."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.max_offset", "model.max_offset")
        parser.link_arguments("model.loss", "data.train_context", compute_fn=lambda loss: loss == "offsets")

    def after_fit(self) -> None:
        callback = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and callback is not None and callback.best_model_path:
            score = callback.best_model_score
            rank_zero_info(
                f"best checkpoint ({callback.monitor}={float(score):.4f}): {callback.best_model_path}"
                if score is not None
                else f"checkpoint: {callback.best_model_path}"
            )


def main(argv: Sequence[str]) -> int:
    """Run a LightningCLI subcommand.

    Args:
        argv: `fit|validate|test` followed by its options (e.g. `--config FILE`).

    Returns:
        0 on success. Bad options or config files raise `AvsyncError` (one line, exit 2).
    """
    # cli.main passes the arguments explicitly; LightningCLI would warn that sys.argv has them too.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
    try:
        AvsyncCLI(
            LitAVSync,
            AVPairsDataModule,
            args=list(argv),
            save_config_callback=RunConfigCallback,
            save_config_kwargs={"save_to_log_dir": False},
            parser_kwargs={"exit_on_error": False},
            auto_configure_optimizers=False,
        )
    except ArgumentError as exc:
        raise AvsyncError(f"bad option or config: {' '.join(str(exc).split())}") from exc
    sys.stdout.flush()
    return 0
