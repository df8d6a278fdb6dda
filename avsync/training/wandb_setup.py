"""Weights & Biases logging that works without an account: offline unless an API key is configured.

Runs are saved under `save_dir` (default `runs/`): W&B's own files in `runs/wandb/<run>/`, and
ours (checkpoints, plots, the resolved config) in `runs/<experiment>/<version>/`.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import DummyLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

DEFAULT_HOST = "api.wandb.ai"


def wandb_api_key_configured() -> bool:
    """True when W&B can authenticate: `WANDB_API_KEY` is set or `~/.netrc` has the W&B host.

    `WANDB_MODE=offline` (or `dryrun`/`disabled`) in the environment counts as "no key".
    """
    if os.environ.get("WANDB_MODE", "").lower() in {"offline", "dryrun", "disabled"}:
        return False
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", f"https://{DEFAULT_HOST}")).hostname or DEFAULT_HOST
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class AvsyncWandbLogger(WandbLogger):
    """`WandbLogger` that picks offline mode by itself and files runs by experiment name.

    Offline unless an API key is configured (`wandb_api_key_configured`); the first time the run
    starts it prints one line saying which mode, where the run is saved and how to upload it.
    `name` (the experiment) is also the folder under `save_dir` where Lightning puts checkpoints:
    `save_dir/<name>/<version>/checkpoints/`.

    Args:
        name: experiment name (W&B run name and group, and the run folder).
        save_dir: root folder of runs.
        project: W&B project.
        offline: force offline (True) or online (False); None decides from the API key.
        **kwargs: passed to `WandbLogger` (and on to `wandb.init`).
    """

    def __init__(
        self,
        name: str = "avsync",
        save_dir: str = "runs",
        project: str = "avsync",
        offline: bool | None = None,
        **kwargs,
    ) -> None:
        if offline is None:
            offline = not wandb_api_key_configured()
        kwargs.setdefault("group", name)
        super().__init__(name=name, save_dir=save_dir, project=project, offline=offline, **kwargs)
        self._announced = False

    @property
    def name(self) -> str:
        """The experiment name (the folder of its runs under `save_dir`)."""
        return self._name

    @property
    def experiment(self):
        """The W&B run, started on first use (rank 0 only) with a one-line notice of its mode."""
        if self._experiment is None and self._save_dir:
            Path(self._save_dir).mkdir(parents=True, exist_ok=True)
        run = super().experiment
        if not self._announced and rank_zero_only.rank == 0 and getattr(run, "dir", None):
            self._announced = True
            run_folder = Path(run.dir).parent
            if self._offline:
                rank_zero_info(
                    f"W&B: offline (no API key configured); run saved in {run_folder}; "
                    f"upload it later with: wandb sync {run_folder}"
                )
            else:
                rank_zero_info(f"W&B: online, run {getattr(run, 'url', None) or run.id}; local copy in {run_folder}")
        return run

    def finalize(self, status: str) -> None:
        """Log checkpoints as Lightning does, then finish the W&B run, so that the next training
        run in this process (a test, a sweep trial) starts its own."""
        super().finalize(status)
        if self._experiment is not None and rank_zero_only.rank == 0:
            self._experiment.finish(exit_code=0 if status == "success" else 1)


def run_directory(trainer: pl.Trainer) -> Path | None:
    """The folder of the current run's own files (checkpoints, plots, config), or None without one.

    For `AvsyncWandbLogger` this is `save_dir/<experiment>/<version>`; for loggers with a
    `log_dir` (CSV, TensorBoard) that folder. None under `fast_dev_run` or without a logger.
    """
    logger = trainer.logger
    if logger is None or isinstance(logger, DummyLogger) or trainer.fast_dev_run:
        return None
    log_dir = getattr(logger, "log_dir", None)
    if log_dir:
        return Path(log_dir)
    if logger.save_dir is None or logger.version is None:
        return None
    return Path(logger.save_dir) / str(logger.name) / str(logger.version)
