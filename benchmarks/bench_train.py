"""Training throughput of `PosterCNN` and `TwoTower`, and whether data loading keeps up.

For each model: one training step (forward, binary cross-entropy, backward, AdamW) on a batch of
64 window pairs, timed over `STEPS` steps after `WARMUP` untimed ones, as samples per second. Data
loading is timed on its own with what training uses: the `AVPairsDataModule` datasets and the
`EpochKeySampler` over in-memory toy clips (`datamodules.toy`: the same array shapes and the same
per-item slicing as the cached features; no files), collated by a `DataLoader` with 0 workers, plus
the batch augmentation (run on the training device in `on_after_batch_transfer`). Loading keeps up
when its time per batch is well below the step time; with `num_workers=0` (the CPU default) the two
add up, so the share of the step spent loading is printed too. Runs on the CPU, and also on CUDA
when a GPU is present.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from avsync.models import PosterCNN, TwoTower
from datamodules.augment import AugmentConfig, augment_mel, augment_mouth
from datamodules.av_pairs import EpochKeySampler, RandomPairs
from datamodules.sampling import ShiftConfig, WindowSampler
from datamodules.toy import toy_clip

BATCH = 64
WARMUP = 3
STEPS = 12
TOY_CLIPS = 4
TOY_FRAMES = 750  # 30 s at 25 fps, like a synthetic song


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_seconds(network: nn.Module, device: torch.device, batch: int = BATCH) -> float:
    """Mean seconds of one training step on random inputs.

    Args:
        network: the model (moved to `device`, trained in place).
        device: where to run.
        batch: pairs per step.

    Returns:
        seconds per step (mean over `STEPS` after `WARMUP`).
    """
    network = network.to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    mouth = torch.rand(batch, 16, 64, 64, generator=generator).to(device)
    log_mel = (torch.randn(batch, 80, 64, generator=generator) - 5.0).to(device)
    labels = (torch.arange(batch) % 2).float().to(device)
    started = 0.0
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            _sync(device)
            started = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(network(mouth, log_mel), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return (time.perf_counter() - started) / STEPS


def loader_batch_seconds(device: torch.device, batches: int = STEPS) -> tuple[float, float]:
    """Mean seconds per training batch spent collating pairs and augmenting them.

    Args:
        device: where the augmentation runs (the training device).
        batches: batches timed (after `WARMUP` untimed ones).

    Returns:
        (collate seconds per batch on the CPU, transfer + augmentation seconds per batch on `device`).
    """
    sampler = WindowSampler([toy_clip(TOY_FRAMES, seed) for seed in range(TOY_CLIPS)], ShiftConfig())
    dataset = RandomPairs(sampler, length=BATCH * (WARMUP + batches), seed=0)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=EpochKeySampler(dataset, num_replicas=1, rank=0), drop_last=True)
    augment = AugmentConfig()
    collate = augmenting = 0.0
    for index, (batch, seconds) in enumerate(_timed_batches(loader)):
        started = time.perf_counter()
        mouth = batch["mouth"].to(device).float().div_(255.0)
        augment_mouth(mouth, augment)
        augment_mel(batch["log_mel"].to(device), batch["accompaniment"].to(device), augment)
        _sync(device)
        if index >= WARMUP:
            collate += seconds
            augmenting += time.perf_counter() - started
    return collate / batches, augmenting / batches


def _timed_batches(loader: DataLoader) -> Iterator[tuple[dict[str, Tensor], float]]:
    """Each batch of `loader` with the seconds it took to produce."""
    iterator = iter(loader)
    while True:
        started = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield batch, time.perf_counter() - started


def main() -> None:
    """Print samples/s per model and device, and the loader's time per batch against the step time."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"batch {BATCH}, {STEPS} timed steps after {WARMUP}; torch threads {torch.get_num_threads()}")
    for device in devices:
        torch.manual_seed(0)
        collate, augmenting = loader_batch_seconds(device)
        loading = collate + augmenting
        print(
            f"{device.type}: data loading {loading * 1e3:.0f} ms/batch "
            f"(collate {collate * 1e3:.0f} ms on CPU, transfer + augment {augmenting * 1e3:.0f} ms) "
            f"= {BATCH / loading:.0f} samples/s"
        )
        for network in (PosterCNN(), TwoTower()):
            params = sum(p.numel() for p in network.parameters())
            step = train_step_seconds(network, device)
            print(
                f"{device.type}: {type(network).__name__} ({params / 1e6:.2f} M params): train step "
                f"{step * 1e3:.0f} ms/batch = {BATCH / step:.0f} samples/s; with loading in the same process "
                f"{BATCH / (step + loading):.0f} samples/s (loading {loading / (step + loading):.0%} of the step)"
            )


if __name__ == "__main__":
    main()
