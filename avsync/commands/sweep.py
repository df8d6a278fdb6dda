"""`avsync sweep FILE [--local] [--count N]`: a hyperparameter sweep from a W&B sweep YAML.

With a W&B API key configured (and no `--local`), the sweep is created on W&B (`wandb.sweep`)
and an agent runs its trials (`wandb.agent`). Otherwise the same YAML runs here
(`avsync.training.sweep`: grid or random search, each trial an `avsync fit` run).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.training.sweep import SWEEPS_DIR, read_sweep, run_local, summary_table
from avsync.training.wandb_setup import wandb_api_key_configured


def run(args: argparse.Namespace) -> int:
    """Run the sweep on W&B or locally; returns 0 when every local trial succeeded, else 1."""
    spec = read_sweep(args.file)
    if args.count is not None and args.count < 1:
        raise AvsyncError(f"--count must be at least 1, got {args.count}")
    if not args.local and wandb_api_key_configured():
        import wandb

        project = spec.raw.get("project", "avsync")
        sweep_id = wandb.sweep(spec.raw, project=project)
        print(f"sweep {spec.name}: W&B sweep {sweep_id} created in project {project}; starting an agent", flush=True)
        wandb.agent(sweep_id, project=project, count=args.count)
        return 0
    if not args.local:
        print(f"sweep {spec.name}: no W&B API key configured: running {spec.method} search locally", flush=True)
    if spec.method == "bayes":
        print(f"sweep {spec.name}: bayes search needs the W&B server; running random search instead", flush=True)
    results = run_local(spec, args.count, Path(args.root), shlex.split(args.extra))
    print(summary_table(spec, results))
    return 0 if all(r.returncode == 0 for r in results) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `sweep` subcommand."""
    parser = subparsers.add_parser(
        "sweep",
        help="run a hyperparameter sweep (W&B when a key is configured, else locally)",
        description="Run a W&B-format sweep YAML: on W&B (wandb.sweep + wandb.agent) when an API key is "
        "configured, else grid/random search here, each trial an `avsync fit` run with its own log folder.",
    )
    parser.add_argument("file", metavar="FILE", help="sweep YAML (W&B format), e.g. experiments/sweeps/twotower_lr.yaml")
    parser.add_argument("--local", action="store_true", help="run locally even when W&B is configured")
    parser.add_argument("--count", type=int, default=None, help="trials to run (grid: first N combinations; random: default 4)")
    parser.add_argument("--root", default=str(SWEEPS_DIR), help=f"parent folder of local trial folders (default {SWEEPS_DIR})")
    parser.add_argument("--extra", default="", help="options appended to every local trial, e.g. \"--trainer.max_epochs=2\"")
    parser.set_defaults(func=run)
