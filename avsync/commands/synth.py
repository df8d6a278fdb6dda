"""``avsync synth OUT``: write the synthetic singing dataset (URSing layout, see avsync.synth.dataset)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from avsync.synth.dataset import (
    DEFAULT_DISTRACTORS,
    DEFAULT_SECONDS,
    DEFAULT_SONGS,
    split_counts,
    write_dataset,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` subcommand."""
    parser = subparsers.add_parser(
        "synth",
        help="write the synthetic singing dataset",
        description="Write a synthetic singing dataset in the URSing layout (one folder per song with "
        "Mix/Vocal/Vocal_reverb/Accompaniment.wav, Video.mp4 and truth.json, plus manifest.jsonl and "
        "split.csv), deterministically from the seed. Complete songs already in OUT are kept.",
    )
    parser.add_argument("out", metavar="OUT", type=Path, help="dataset folder (created if missing)")
    parser.add_argument("--songs", type=int, default=DEFAULT_SONGS, help=f"number of songs (default {DEFAULT_SONGS}: 13 train / 3 val / 10 test)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help=f"length of each song (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument(
        "--distractors", type=float, default=DEFAULT_DISTRACTORS,
        help="expected share of each song covered by 1-3 s distractor spans: face covered or off-screen, "
        f"talking without singing, instrumental break (default {DEFAULT_DISTRACTORS:g}; 0 = clean)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes (default: up to 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the dataset and print a one-line summary."""
    started = time.perf_counter()
    results = write_dataset(args.out, args.songs, args.seconds, args.seed, args.distractors, args.workers)
    new = sum(not result.skipped for result in results)
    train, val, test = split_counts(len(results))
    print(
        f"avsync synth: {len(results)} songs in {args.out} ({new} written, {len(results) - new} already there) "
        f"in {time.perf_counter() - started:.1f} s; split {train}/{val}/{test} train/val/test; manifest {args.out / 'manifest.jsonl'}"
    )
    return 0
