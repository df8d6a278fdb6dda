"""``avsync prepare MANIFEST_OR_DIR --cache DIR``: compute the features of every clip once.

Exit status: 0 when every clip is in the cache, 1 when some clips failed (a missing or broken
media file; the others are still prepared and the failures are listed, one line each), 2 for a
usage error (bad manifest, bad option, FAN weights missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.features.cache import FeatureCache, prepare_manifest
from avsync.features.extract import VisualParams
from avsync.features.landmarks import BACKENDS, FAN_DETECTORS
from avsync.features.manifest import read_manifest
from avsync.shards import parse_shard


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` subcommand."""
    defaults = VisualParams()
    parser = subparsers.add_parser(
        "prepare",
        help="compute mouth crops and log-mels of a dataset into the feature cache",
        description="Track the face, cut 64x64 mouth crops (25 fps) and compute log-mels for every clip of a "
        "manifest (.jsonl) or dataset folder (synthetic, URSing layout, or plain videos), into a cache keyed "
        "by file content and parameters. Cached clips are skipped. Exit 1 if some clips failed.",
    )
    parser.add_argument("data", metavar="MANIFEST_OR_DIR", type=Path, help="manifest .jsonl or dataset folder")
    parser.add_argument("--cache", type=Path, required=True, help="feature cache folder (created if missing)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), metavar="I/N", help="prepare only shard I of N (0-based; default 0/1 = all)")
    parser.add_argument("--backend", choices=BACKENDS, default=defaults.backend, help=f"landmark backend (default {defaults.backend})")
    parser.add_argument("--fan-detector", choices=FAN_DETECTORS, default=defaults.fan_detector, help="face detector of the fan backend")
    parser.add_argument("--device", default=None, help="torch device of the fan backend (default: cuda when present)")
    parser.add_argument("--detect-every", type=int, default=defaults.tracker.detect_every, help=f"frames between face detections (default {defaults.tracker.detect_every})")
    parser.add_argument("--rgb", action="store_true", help="RGB mouth crops instead of gray")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prepare the clips; print a summary and the failures."""
    if args.detect_every < 1:
        raise AvsyncError(f"--detect-every must be at least 1, got {args.detect_every}")
    if args.cache.exists() and not args.cache.is_dir():
        raise AvsyncError("--cache must be a folder", args.cache)
    defaults = VisualParams()
    params = dataclasses.replace(
        defaults,
        backend=args.backend,
        fan_detector=args.fan_detector,
        device=args.device,
        tracker=dataclasses.replace(defaults.tracker, detect_every=args.detect_every),
        crop=dataclasses.replace(defaults.crop, rgb=args.rgb),
    )
    records = read_manifest(args.data)
    started = time.perf_counter()
    report = prepare_manifest(
        records, FeatureCache(args.cache), workers=args.workers, shard=args.shard, params=params, progress=not args.no_progress
    )
    shard = "" if args.shard == (0, 1) else f" (shard {args.shard[0]}/{args.shard[1]} of {len(records)})"
    print(f"avsync prepare: {report.summary()}{shard} in {time.perf_counter() - started:.1f} s; cache {os.fspath(args.cache)}")
    for failure in report.failures:
        print(f"avsync prepare: failed {failure.id}: {failure.error}", file=sys.stderr)
    return 1 if report.failures else 0
