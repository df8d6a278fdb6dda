"""``avsync eval``: DTW alignment of known warps of the test clips, trained model vs classical baseline.

Each of the first ``--clips`` clips of the split (in sync with its reference) is warped at the
feature level by a known frame map (`avsync.evaluation.warp`; clip k gets kind shift/tempo/cut/freeze/combo
in turn, deterministically from ``--seed``) and aligned against its unchanged reference by the
model (`avsync.align`) and by the baseline (`avsync.evaluation.baseline`). Prints one row per clip and method,
the means per method and per warp kind; writes the same as JSON (atomically) and two PNGs per clip
and method: the cost matrix with the found path (red) and the true path (white), and the time map
as the offset along the video (found and true). Everything cheap is checked
first, so a user mistake ends at once with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from avsync.align.dtw import DTWConfig
from avsync.errors import AvsyncError
from avsync.evaluation.harness import (
    EvalReport,
    format_table,
    is_pair_model,
    load_eval_clips,
    make_cases,
    pair_band,
    run_evaluation,
)
from avsync.evaluation.warp import MIN_FRAMES
from avsync.features.manifest import read_manifest
from avsync.io.media import atomic_path
from avsync.models.checkpoints import load_model

DEFAULT_OUT = Path("results/eval.json")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval",
        help="DTW alignment cost and frame error of a checkpoint on known warps of the test clips",
        description="Warp the test clips by known frame maps (shift, tempo, cut, freeze, combo), align them "
        "back to their references with the model and with the classical baseline (lip opening vs speech-band "
        "energy), and report per clip and per warp kind: offset error, frame error of the time map (mean, "
        "median, share within +-1 frame), offset accuracy and DTW alignment cost.",
    )
    parser.add_argument("--checkpoint", metavar="CKPT", type=Path,
                        help="model checkpoint: a .ckpt path, 'latest' (the newest under runs/) or 'shipped' "
                        "(default: the model shipped with avsync)")
    parser.add_argument("--data", metavar="DATA", type=Path, default=Path("data/synth"),
                        help="manifest.jsonl or dataset folder (default data/synth)")
    parser.add_argument("--cache", metavar="DIR", type=Path, default=Path("cache"), help="feature cache folder (default cache)")
    parser.add_argument("--split", default="test", help="which split's clips (default test)")
    parser.add_argument("--clips", type=int, default=10, help="how many clips (default 10)")
    parser.add_argument("--max-frames", type=int, help=f"cut each clip to its first frames (at least {MIN_FRAMES}; default: whole clips)")
    parser.add_argument("--seed", type=int, default=0, help="warp seed (default 0)")
    parser.add_argument("--out", metavar="JSON", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="PNG folder (default: beside --out, <name>_plots/)")
    parser.add_argument("--no-baseline", action="store_true", help="score only the model")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--batch-size", type=int, default=256, help="windows per forward pass (default 256)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    if args.clips < 1:
        raise AvsyncError(f"--clips must be at least 1, got {args.clips}")
    if args.max_frames is not None and args.max_frames < MIN_FRAMES:
        raise AvsyncError(f"--max-frames must be at least {MIN_FRAMES} (the shortest clip a warp takes), got {args.max_frames}")
    if args.batch_size < 1:
        raise AvsyncError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.out.suffix.lower() != ".json":
        raise AvsyncError("--out must end in .json", args.out)
    if args.out.is_dir():
        raise AvsyncError("--out is a folder; give a .json file", args.out)
    for path in (args.out, args.plots):
        folder = _nearest_existing(path.parent)
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise AvsyncError(f"cannot write here: {folder} is not a writable folder", path)


def _nearest_existing(folder: Path) -> Path:
    """`folder`, or its nearest ancestor that exists (where the missing folders would be created)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def _comparison(report: EvalReport) -> str:
    """One line: the model's means next to the baseline's."""
    summary = report.summary()
    if "baseline" not in summary:
        return ""
    model, baseline = summary["model"], summary["baseline"]
    return ("model vs baseline: within +-1 frame {:.2f} vs {:.2f}, frame error {:.2f} vs {:.2f}, "
            "offset accuracy {:.2f} vs {:.2f}").format(model["within1"], baseline["within1"], model["frame_err_mean"],
                                                       baseline["frame_err_mean"], model["offset_acc"], baseline["offset_acc"])


def run(args: argparse.Namespace) -> int:
    """Validate, evaluate, print the table and write the JSON and plots; returns the exit status."""
    if args.plots is None:
        args.plots = args.out.with_name(f"{args.out.stem}_plots")
    _check_options(args)
    read_manifest(args.data)  # a missing or malformed dataset fails here, before the checkpoint loads
    loaded = load_model(args.checkpoint, args.device)
    clips = load_eval_clips(args.data, args.cache, split=args.split, n_clips=args.clips, max_frames=args.max_frames,
                            progress=not args.quiet)
    if is_pair_model(loaded.network):
        passes = sum(len(clip) * (2 * pair_band(len(clip))[2] + 1) for clip in clips)
        print(f"{type(loaded.network).__name__} scores (mouth, audio) pairs one by one: about {passes:,} forward passes, "
              "slow on a CPU (--max-frames shortens the clips)", file=sys.stderr)
    config = DTWConfig()
    report = run_evaluation(loaded.network, make_cases(clips, seed=args.seed), config=config, baseline=not args.no_baseline,
                            plots_dir=args.plots, time_map_plots=True, batch_size=args.batch_size, progress=not args.quiet)
    results = {**loaded.describe(), "data": str(args.data), "split": args.split, "seed": args.seed,
               "max_frames": args.max_frames, "dtw": asdict(config), **report.to_dict()}
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"checkpoint {loaded.path} ({type(loaded.network).__name__}), {len(clips)} {args.split} clips")
    print(format_table(report, by_kind=True))
    comparison = _comparison(report)
    if comparison:
        print(comparison)
    print(f"wrote {args.out} and {len(report.plots)} plots in {args.plots}/")
    return 0
