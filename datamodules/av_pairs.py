"""LightningDataModule of mouth/audio window pairs (positives and shifted negatives) from a manifest.

`prepare_data` builds the feature cache once (one process per node); `setup` only reads it.
Training pairs are drawn afresh every epoch (deterministically from the seed, the epoch and the
sample's index); validation and test pairs are a fixed, balanced set. Batches reach the model as
`mouth` float `[B, 16, 64, 64]` in 0..1, `log_mel` float `[B, 80, 64]`, `label` float `[B]`,
`shift` int `[B]` and, in validation/test, `mel_context` float `[B, 80, 4 * (16 + 2 * max_offset)]`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from avsync.errors import AvsyncError, MediaError
from avsync.features.cache import (
    ClipFeatures,
    FeatureCache,
    load_clip,
    prepare_manifest,
)
from avsync.features.extract import VisualParams
from avsync.features.manifest import ClipRecord, read_manifest
from datamodules.augment import (
    AugmentConfig,
    augment_frames,
    augment_lips,
    augment_mel,
    augment_mouth,
)
from datamodules.lip_segments import FixedSegments, RandomSegments, SegmentSource
from datamodules.sampling import ShiftConfig, WindowPair, WindowSampler


class RandomPairs(Dataset):
    """Training pairs drawn at random: key `k` gives the same pair every time it is asked for.

    Keys come from `EpochKeySampler` (`epoch * len + index`), so every epoch sees new pairs.
    Even keys are positives, odd keys negatives; with `context`, every pair is a positive with its
    audio context (training over all offsets at once, `LitAVSync(loss="offsets")`).

    Args:
        sampler: draws the pairs.
        length: pairs per epoch.
        seed: base seed.
        context: draw positives with `mel_context` only.
    """

    def __init__(self, sampler: WindowSampler, length: int, seed: int, context: bool = False) -> None:
        self.sampler = sampler
        self.length = length
        self.seed = seed
        self.context = context
        self.starts = sampler.context_starts() if context else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int) -> dict:
        rng = np.random.default_rng([self.seed, int(key)])
        if self.context:
            return self.sampler.item(self.sampler.draw(rng, positive=True, starts=self.starts), context=True)
        return self.sampler.item(self.sampler.draw(rng, positive=key % 2 == 0))


class FixedPairs(Dataset):
    """A fixed list of pairs, each with its audio context for offset accuracy.

    Args:
        sampler: holds the clips.
        pairs: the pairs (`WindowSampler.fixed_pairs`).
    """

    def __init__(self, sampler: WindowSampler, pairs: list[WindowPair]) -> None:
        self.sampler = sampler
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        return self.sampler.item(self.pairs[index], context=True)


class EpochKeySampler(DistributedSampler):
    """Yields this rank's share of `epoch * len(dataset) + i` (shuffled), so each epoch draws new pairs.

    A `DistributedSampler`, so Lightning calls `set_epoch` and leaves it in place under DDP.
    """

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * len(self.dataset)
        return (offset + index for index in super().__iter__())


class AVPairsDataModule(pl.LightningDataModule):
    """Window pairs from the clips of a manifest or dataset folder (synthetic, URSing, plain videos).

    Args:
        data: a manifest `.jsonl` or a dataset folder (see `avsync.features.manifest.read_manifest`).
        cache: feature cache folder.
        batch_size: pairs per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        samples_per_epoch: training pairs per epoch (over all processes).
        val_pairs: size of the fixed validation and test sets (half positives).
        max_offset: validation windows are scored at shifts `-max_offset..max_offset` frames.
        shifts: negative shifts and the silence rule.
        augment: augmentation strengths; None disables augmentation.
        visual: mouth-crop extraction parameters (part of the cache key).
        prepare_workers: processes used to build the cache.
        seed: base seed of the training pairs and the fixed sets.
        video_input: what the network reads from the video, ``"mouth"`` crops or ``"lips"`` geometry
            (must match the network's `avsync.models.video_input`). With ``"lips"`` the sets hold
            segments (`datamodules.lip_segments`): ``samples_per_epoch`` and ``val_pairs`` count
            segments of ``segment_frames`` frames.
        train_context: training batches hold positives with their audio context (`mel_context`),
            for training over all offsets (set from `LitAVSync`'s ``loss``).
    """

    def __init__(
        self,
        data: str = "data/synth",
        cache: str = "cache",
        batch_size: int = 64,
        num_workers: int = 0,
        samples_per_epoch: int = 4096,
        val_pairs: int = 512,
        max_offset: int = 15,
        shifts: ShiftConfig = ShiftConfig(),
        augment: AugmentConfig | None = AugmentConfig(),
        visual: VisualParams = VisualParams(),
        prepare_workers: int = 1,
        seed: int = 0,
        video_input: str = "mouth",
        train_context: bool = False,
        segment_frames: int = 48,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # under LightningCLI these are the config's plain values
        self.shifts = shifts
        self.augment = augment
        self.visual = visual
        self.samplers: dict[str, WindowSampler] = {}
        self.datasets: dict[str, Dataset] = {}

    def _records(self) -> list[ClipRecord]:
        return read_manifest(self.hparams.data)

    def prepare_data(self) -> None:
        """Build the feature cache for every clip of the manifest (what is cached is only checked)."""
        report = prepare_manifest(
            self._records(), FeatureCache(self.hparams.cache), workers=self.hparams.prepare_workers, params=self.visual
        )
        rank_zero_info(f"prepare: {report.summary()}")
        for failure in report.failures:
            rank_zero_warn(f"clip {failure.id} left out: {failure.error}")

    def _clips(self, records: list[ClipRecord], split: str) -> list[ClipFeatures]:
        cache = FeatureCache(self.hparams.cache)
        chosen = [record for record in records if record.split == split]
        clips = []
        for record in chosen:
            try:
                clips.append(load_clip(record, cache, params=self.visual, accompaniment=split == "train"))
            except MediaError as exc:
                rank_zero_warn(f"clip {record.id} left out: {exc}")
        if not clips:
            raise AvsyncError(f"no usable clips in the {split!r} split", self.hparams.data)
        return clips

    def _sampler(self, records: list[ClipRecord], split: str) -> WindowSampler:
        sampler = WindowSampler(self._clips(records, split), self.shifts, self.hparams.max_offset)
        if sampler.usable_windows == 0:
            raise AvsyncError(f"the {split!r} split has no usable windows (no face or silent audio)", self.hparams.data)
        return sampler

    def setup(self, stage: str) -> None:
        """Load the cached features of the splits `stage` needs and build the pair sets."""
        records = self._records()
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ())
        for split in needed:
            if split in self.datasets:
                continue
            if self.hparams.video_input == "lips":
                self._setup_segments(records, split)
                continue
            sampler = self._sampler(records, split)
            self.samplers[split] = sampler
            if split == "train":
                self.datasets[split] = RandomPairs(sampler, self.hparams.samples_per_epoch, self.hparams.seed,
                                                   context=self.hparams.train_context)  # fmt: skip
            else:
                try:
                    pairs = sampler.fixed_pairs(self.hparams.val_pairs, seed=self.hparams.seed + 1)
                except ValueError as exc:
                    raise AvsyncError(f"{split} split: {exc}", self.hparams.data) from exc
                self.datasets[split] = FixedPairs(sampler, pairs)
            rank_zero_info(
                f"{split}: {len(sampler.clips)} clips, {sampler.usable_windows} usable windows, "
                f"{len(self.datasets[split])} pairs per epoch"
            )

    def _setup_segments(self, records: list[ClipRecord], split: str) -> None:
        """Lip-geometry segments of a split (for sequence networks)."""
        try:
            source = SegmentSource(self._clips(records, split), self.hparams.segment_frames, self.hparams.max_offset)
        except ValueError as exc:
            raise AvsyncError(f"{split} split: {exc}", self.hparams.data) from exc
        if split == "train":
            self.datasets[split] = RandomSegments(source, self.hparams.samples_per_epoch, self.hparams.seed)
        else:
            self.datasets[split] = FixedSegments(source, self.hparams.val_pairs, seed=self.hparams.seed + 1)
        rank_zero_info(f"{split}: {len(source.ids)} clips, {len(self.datasets[split])} segments of "
                       f"{self.hparams.segment_frames} frames per epoch")  # fmt: skip

    def _loader(self, dataset: Dataset, **kwargs) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochKeySampler(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=self.hparams.seed)
        return self._loader(dataset, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"], shuffle=False)

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        """Scale mouth crops to 0..1 on the device and augment training batches there."""
        trainer = self.trainer
        training = self.augment is not None and trainer is not None and trainer.training
        if "audio_frames" in batch:  # lip-geometry segments
            if training:
                batch["lips"] = augment_lips(batch["lips"], self.augment)
                batch["audio_frames"] = augment_frames(batch["audio_frames"], self.augment)
            return batch
        batch["mouth"] = batch["mouth"].float().div_(255.0)
        accompaniment = batch.pop("accompaniment")
        accompaniment_context = batch.pop("accompaniment_context", None)
        if training:
            batch["mouth"] = augment_mouth(batch["mouth"], self.augment)
            batch["log_mel"] = augment_mel(batch["log_mel"], accompaniment, self.augment)
            if accompaniment_context is not None:
                batch["mel_context"] = augment_mel(batch["mel_context"], accompaniment_context, self.augment)
        return batch
