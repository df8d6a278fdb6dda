"""LightningModule: trains a match / no-match network (binary cross-entropy, or cross-entropy over
all offsets) and validates it.

Logged metrics (names fixed by docs/design.md): `train/loss`, `train/acc`, `val/loss`, `val/acc`,
`val/auc`, `val/offset_acc` (and the same under `test/`). Offset accuracy: for each validation
mouth window, the audio is scored at every shift in `-max_offset..max_offset` frames; the window
counts as right when the best-scoring shift is within `offset_tolerance` frames of the truth (0).
Each validation epoch also appends its metrics to `<run folder>/metrics.jsonl` and plots the mean
logit per shift to `<run folder>/plots/` (run folder: `avsync.training.wandb_setup.run_directory`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from avsync.errors import AvsyncError
from avsync.models import describe, is_sequence_model
from avsync.models.checkpoints import network_weights
from avsync.models.layers import MELS_PER_FRAME, WINDOW_FRAMES
from avsync.align.plots import save_figure
from avsync.training.wandb_setup import run_directory

CLI_INSTANTIATOR = "pytorch_lightning.cli.instantiate_module"
LOSSES = ("bce", "offsets")
METRICS_FILE = "metrics.jsonl"


def candidate_windows(mel_context: Tensor, max_offset: int) -> Tensor:
    """Every audio window of a context, one per shift.

    Args:
        mel_context: float `[B, 80, 4 * (16 + 2 * max_offset)]`, centred on the true position.
        max_offset: shifts run from `-max_offset` to `max_offset` frames.

    Returns:
        float `[B, 2 * max_offset + 1, 80, 64]`; index `max_offset + s` is shift `s`.
    """
    windows = mel_context.unfold(-1, WINDOW_FRAMES * MELS_PER_FRAME, MELS_PER_FRAME)  # [B, 80, K, 64]
    if windows.shape[2] != 2 * max_offset + 1:
        raise ValueError(f"mel_context of {mel_context.shape[-1]} columns does not hold +-{max_offset} frame shifts")
    return windows.permute(0, 2, 1, 3)


class LitAVSync(pl.LightningModule):
    """Binary cross-entropy training of `PosterCNN` or `TwoTower` on window pairs.

    Batches (from `datamodules.AVPairsDataModule`) hold `mouth` float `[B, 16, 64, 64]` in 0..1,
    `log_mel` float `[B, 80, 64]`, `label` float `[B]`, and in validation/test also `mel_context`
    float `[B, 80, 4 * (16 + 2 * max_offset)]`.

    Args:
        model: the network (LightningCLI: `class_path` + `init_args`).
        lr: peak learning rate of the one-cycle schedule (AdamW).
        weight_decay: AdamW weight decay.
        warmup_fraction: share of the steps spent warming up to `lr`.
        max_offset: offset accuracy scores shifts `-max_offset..max_offset` frames.
        offset_tolerance: a best shift within this many frames of the truth counts as right.
        loss: ``"bce"``: binary cross-entropy on positive and shifted-negative pairs; ``"offsets"``:
            cross-entropy over all `2 * max_offset + 1` shifts of each window's audio, the true one
            being the target (SyncNet/VocaLiST style: every window teaches every offset). A
            sequence network (LipSync) always trains over all offsets, on lip segments.
        batch_negatives: sequence networks: in training, every frame is also scored against the
            other segments' audio of the batch at the same place (other clips' sound, or other
            times of its own), one more wrong class each: what separates a singer's own audio from
            the rest of a long song, where the offsets around the truth teach only the neighbourhood.
        init_weights: a checkpoint from `avsync fit` whose network weights (its ``model.*``
            ``state_dict`` entries) start training (fine-tuning), loaded in `setup("fit")`; the
            networks must have the same parameter names and shapes. A resumed run (``ckpt_path``)
            or a module from `load_from_checkpoint` keeps its own weights instead.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.1,
        max_offset: int = 15,
        offset_tolerance: int = 1,
        loss: str = "bce",
        batch_negatives: bool = False,
        init_weights: str | None = None,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if batch_negatives and not is_sequence_model(model):
            raise ValueError(f"batch_negatives needs a sequence network (LipSync), not {type(model).__name__}")
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        # The checkpoint alone rebuilds the network: store it the way LightningCLI does.
        self.hparams["model"] = describe(model)
        self.hparams["_instantiator"] = CLI_INSTANTIATOR
        self.model = model
        self.train_acc = BinaryAccuracy()
        self.eval_metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {
                        "acc": BinaryAccuracy(),
                        "auc": BinaryAUROC(),
                        "offset_acc": MeanMetric(),
                        "loss": MeanMetric(),
                    }
                )
                for stage in ("val", "test")
            }
        )
        shifts = 2 * max_offset + 1
        self.register_buffer("shift_logit_sum", torch.zeros(shifts), persistent=False)
        self.register_buffer("shift_count", torch.zeros(()), persistent=False)
        self._weights_restored = False

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.init_weights and not self._weights_restored:
            self.load_network_weights(self.hparams.init_weights)
            self._weights_restored = True

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._weights_restored = True  # the checkpoint's own weights win over `init_weights`

    def load_network_weights(self, path: str | Path) -> None:
        """Copy the network weights of an `avsync fit` checkpoint into `self.model`.

        Raises:
            AvsyncError: the file is missing or not a checkpoint, or its network's parameter names
                or shapes differ from this one's (one line naming the file).
        """
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as exc:
            raise AvsyncError("init_weights: checkpoint not found", path) from exc
        except Exception as exc:  # unreadable, not a zip/pickle, or holds Python objects
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AvsyncError(f"init_weights: not an avsync model checkpoint ({first_line[:160]})", path) from exc
        state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
        weights = network_weights(state or {})
        if not weights:
            raise AvsyncError("init_weights: not an avsync model checkpoint (no model.* weights in its state_dict)", path)
        own = self.model.state_dict()
        missing, unexpected = sorted(own.keys() - weights.keys()), sorted(weights.keys() - own.keys())
        if missing or unexpected:
            raise AvsyncError(f"init_weights: its network differs from {type(self.model).__name__} "
                              f"({len(missing)} parameters missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, "
                              f"e.g. {unexpected[:1]})", path)  # fmt: skip
        wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if weights[k].shape != v.shape]
        if wrong:
            raise AvsyncError(f"init_weights: shape mismatch with {type(self.model).__name__} "
                              f"({len(wrong)} tensors, e.g. {wrong[0]}; checkpoint vs this network)", path)  # fmt: skip
        self.model.load_state_dict(weights)
        rank_zero_info(f"init_weights: loaded {len(weights)} network tensors from {path}")

    def forward(self, mouth_clips: Tensor, log_mel: Tensor) -> Tensor:
        """Match logits `[B]` of mouth clips `[B, 16, 64, 64]` and mel windows `[B, 80, 64]`."""
        return self.model(mouth_clips, log_mel)

    def _video(self, batch: dict[str, Tensor]) -> Tensor:
        """The batch's mouth windows (networks that read lip geometry train on segments instead)."""
        if "mouth" not in batch:
            raise AvsyncError(f"{type(self.model).__name__} reads mouth windows but the batches hold lip segments: "
                              "set data.video_input: mouth")  # fmt: skip
        return batch["mouth"]

    def _shift_logits(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits of each mouth window against its audio at every shift: ``[B, 2 * max_offset + 1]``."""
        return self.model.score_candidates(self._video(batch), candidate_windows(batch["mel_context"], self.hparams.max_offset))

    def _offset_loss(self, shift_logits: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy of logits over the shifts ``[R, 2 * max_offset + 1 (+ more wrong classes)]``
        (the truth, shift 0, at index ``max_offset``), and 1.0 where the best of the shifts is
        within `offset_tolerance` of it."""
        max_offset = self.hparams.max_offset
        target = torch.full((len(shift_logits),), max_offset, device=shift_logits.device)
        best = shift_logits.detach()[:, : 2 * max_offset + 1].argmax(dim=1)
        right = ((best - max_offset).abs() <= self.hparams.offset_tolerance).float()
        return F.cross_entropy(shift_logits, target), right

    def _segment_loss(self, batch: dict[str, Tensor], across_batch: bool = False) -> tuple[Tensor, Tensor]:
        """Cross-entropy over all offsets of every scorable frame of lip segments (and with
        `across_batch`, the other segments' audio), and which were right."""
        if "offset_mask" not in batch:
            raise AvsyncError(f"{type(self.model).__name__} reads lip geometry but the batches hold mouth windows: "
                              "set data.video_input: lips")  # fmt: skip
        max_offset = self.hparams.max_offset
        logits = self.model.offset_logits(batch["lips"], batch["audio_frames"], max_offset, across_batch=across_batch)
        mask = batch["offset_mask"]
        rows = mask[..., max_offset]
        if across_batch:  # segment c's audio at frame i counts where c's own frame i is scorable, never c = b
            others = rows.transpose(0, 1)[None].expand(len(rows), -1, -1).clone()  # [B, S, B]: [b, i, c] = rows[c, i]
            others[torch.arange(len(rows)), :, torch.arange(len(rows))] = False
            mask = torch.cat([mask, others], dim=-1)
        return self._offset_loss(logits.masked_fill(~mask, -1e4)[rows])

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if is_sequence_model(self.model) or self.hparams.loss == "offsets":
            if is_sequence_model(self.model):
                loss, right = self._segment_loss(batch, across_batch=self.hparams.batch_negatives)
            else:
                loss, right = self._offset_loss(self._shift_logits(batch))
            self.train_acc(right, torch.ones_like(right))
        else:
            logits = self(self._video(batch), batch["log_mel"])
            loss = F.binary_cross_entropy_with_logits(logits, batch["label"])
            self.train_acc(logits.detach(), batch["label"].long())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> None:
        metrics = self.eval_metrics[stage]
        if is_sequence_model(self.model):
            loss, right = self._segment_loss(batch)
            metrics["loss"].update(loss, weight=len(right))
            metrics["offset_acc"].update(right)
            for name in ("loss", "offset_acc"):
                self.log(f"{stage}/{name}", metrics[name], on_step=False, on_epoch=True, prog_bar=True)
            return
        logits = self(self._video(batch), batch["log_mel"])
        labels = batch["label"]
        metrics["loss"].update(F.binary_cross_entropy_with_logits(logits, labels), weight=labels.numel())
        metrics["acc"].update(logits, labels.long())
        metrics["auc"].update(logits, labels.long())

        shift_logits = self._shift_logits(batch)
        metrics["offset_acc"].update(self._offset_loss(shift_logits)[1])
        self.shift_logit_sum += shift_logits.sum(dim=0)
        self.shift_count += shift_logits.shape[0]

        for name in ("loss", "acc", "auc", "offset_acc"):
            self.log(f"{stage}/{name}", metrics[name], on_step=False, on_epoch=True, prog_bar=name != "auc")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self.shift_logit_sum.zero_()
        self.shift_count.zero_()

    on_test_epoch_start = on_validation_epoch_start

    def _summarise(self, stage: str) -> None:
        """Print the epoch's metrics on one line; on rank 0 append them to `metrics.jsonl` in the
        run folder and plot the mean logit per audio shift."""
        if self.trainer.sanity_checking:
            return
        values = {f"{stage}/{name}": float(metric.compute()) for name, metric in self.eval_metrics[stage].items()
                  if metric.update_count}  # sequence networks score offsets only  # fmt: skip
        train_loss = self.trainer.callback_metrics.get("train/loss")
        if stage == "val" and train_loss is not None:
            values["train/loss"] = float(train_loss)
        rank_zero_info(
            f"epoch {self.current_epoch} step {self.global_step}: " + " ".join(f"{k}={v:.4f}" for k, v in sorted(values.items()))
        )
        curve = self.all_gather(self.shift_logit_sum).reshape(-1, self.shift_logit_sum.numel()).sum(0)
        count = float(self.all_gather(self.shift_count).sum())
        folder = run_directory(self.trainer)
        if not self.trainer.is_global_zero or folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"epoch": self.current_epoch, "step": self.global_step, **values}) + "\n")
        if count > 0:
            self._plot_offset_curve((curve / count).cpu(), stage, folder / "plots")

    def on_validation_epoch_end(self) -> None:
        self._summarise("val")

    def on_test_epoch_end(self) -> None:
        self._summarise("test")

    def _plot_offset_curve(self, mean_logits: Tensor, stage: str, folder: Path) -> None:
        """Save the mean logit against the audio shift as a PNG (and log it as an image)."""
        folder.mkdir(parents=True, exist_ok=True)
        out_png = folder / f"{stage}_offset_curve_epoch{self.current_epoch:03d}.png"
        max_offset = self.hparams.max_offset
        figure = Figure(figsize=(5, 3))
        axes = figure.subplots()
        axes.plot(range(-max_offset, max_offset + 1), mean_logits.numpy(), marker="o")
        axes.set_xlabel("audio shift (frames)")
        axes.set_ylabel("mean logit")
        axes.set_title(f"{stage}: mean score by shift, epoch {self.current_epoch}")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        save_figure(figure, out_png, dpi=80)
        log_image = getattr(self.trainer.logger, "log_image", None)
        if callable(log_image):
            log_image(key=f"{stage}/offset_curve", images=[str(out_png)], step=self.global_step)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.hparams.lr,
            total_steps=max(int(self.trainer.estimated_stepping_batches), 1),
            pct_start=self.hparams.warmup_fraction,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def teardown(self, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
