"""Hyperparameter sweeps from W&B sweep YAMLs, run locally when there is no W&B server.

Grid search over every combination of the `parameters`, or random search (`count` trials,
default 4); W&B's `bayes` method needs the server and runs as random search locally. Each trial
is an ordinary `avsync fit` run (the YAML's `command`, with `${args}` expanded to `--key=value`
options) with its own log folder `runs/sweeps/<sweep>/trial-NN/`; `summary_table` lists the best
value of `metric.name` of each trial.

Supported in `parameters` (W&B's format): `value`, `values` (+ optional `probabilities`),
`distribution` with `min`/`max` for `uniform`, `int_uniform`, `log_uniform_values`,
`q_uniform`/`q_log_uniform_values` (with `q`), and `normal`/`log_normal` with `mu`/`sigma`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from avsync.errors import AvsyncError
from avsync.training.lit_module import METRICS_FILE

DEFAULT_RANDOM_TRIALS = 4
DEFAULT_COMMAND = ["${env}", "${interpreter}", "-m", "avsync", "fit", "${args}"]
SWEEPS_DIR = Path("runs") / "sweeps"
SAVE_DIR_OPTION = "--trainer.logger.init_args.save_dir"


@dataclass
class SweepSpec:
    """A parsed sweep YAML.

    Attributes:
        name: the sweep's name (`name` in the YAML, else the file stem).
        method: `grid`, `random` or `bayes`.
        metric: the metric name trials are compared by (e.g. `val/offset_acc`).
        goal: `maximize` or `minimize`.
        parameters: W&B parameter specs by option name (e.g. `model.lr`).
        command: the trial command template (W&B macros `${env}`, `${interpreter}`,
            `${program}`, `${args}`, `${args_no_hyphens}`).
        program: the YAML's `program`.
        raw: the whole YAML (what `wandb.sweep` receives).
    """

    name: str
    method: str
    metric: str
    goal: str
    parameters: dict[str, dict]
    command: list[str]
    program: str
    raw: dict


@dataclass
class TrialResult:
    """One local trial: its options, exit status, best metric value and folder."""

    number: int
    options: dict[str, object]
    returncode: int
    best: float | None
    folder: Path


def read_sweep(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and check a W&B sweep YAML.

    Raises:
        AvsyncError: unreadable file, bad YAML, or a missing/unsupported field (names the file).
    """
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AvsyncError("sweep file not found", file) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise AvsyncError(f"cannot read sweep file ({exc})", file) from exc
    except yaml.YAMLError as exc:
        raise AvsyncError(f"not valid YAML ({' '.join(str(exc).split())})", file) from exc
    if not isinstance(raw, dict):
        raise AvsyncError("a sweep file must be a YAML mapping", file)
    method = raw.get("method")
    if method not in {"grid", "random", "bayes"}:
        raise AvsyncError(f"method must be grid, random or bayes, got {method!r}", file)
    metric = raw.get("metric") or {}
    if not isinstance(metric, dict) or not metric.get("name"):
        raise AvsyncError("metric.name is required (the monitored validation metric, e.g. val/offset_acc)", file)
    goal = metric.get("goal", "minimize")
    if goal not in {"maximize", "minimize"}:
        raise AvsyncError(f"metric.goal must be maximize or minimize, got {goal!r}", file)
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters or not all(isinstance(v, dict) for v in parameters.values()):
        raise AvsyncError("parameters must map option names to W&B parameter specs", file)
    for key, spec in parameters.items():
        _check_parameter(key, spec, method, file)
    command = raw.get("command") or DEFAULT_COMMAND
    if not isinstance(command, list) or not all(isinstance(part, str) for part in command):
        raise AvsyncError("command must be a list of strings", file)
    return SweepSpec(
        name=str(raw.get("name") or file.stem),
        method=method,
        metric=str(metric["name"]),
        goal=goal,
        parameters=parameters,
        command=command,
        program=str(raw.get("program", "")),
        raw=raw,
    )


def _check_parameter(key: str, spec: dict, method: str, file: Path) -> None:
    if "value" in spec or "values" in spec:
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            raise AvsyncError(f"parameters.{key}.values must be a non-empty list", file)
        return
    if method == "grid":
        raise AvsyncError(f"parameters.{key}: grid search needs `value` or `values`", file)
    distribution = spec.get("distribution", "uniform")
    if distribution in {"normal", "log_normal"}:
        return
    if distribution not in {"uniform", "int_uniform", "log_uniform_values", "q_uniform", "q_log_uniform_values"}:
        raise AvsyncError(f"parameters.{key}: distribution {distribution!r} is not supported locally", file)
    if "min" not in spec or "max" not in spec:
        raise AvsyncError(f"parameters.{key}: distribution {distribution} needs min and max", file)


def _sample(spec: dict, rng: random.Random) -> object:
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choices(spec["values"], weights=spec.get("probabilities"))[0]
    distribution = spec.get("distribution", "uniform")
    if distribution in {"normal", "log_normal"}:
        draw = rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))
        return math.exp(draw) if distribution == "log_normal" else draw
    low, high = spec["min"], spec["max"]
    if distribution == "int_uniform":
        return rng.randint(int(low), int(high))
    if distribution in {"log_uniform_values", "q_log_uniform_values"}:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if distribution.startswith("q_"):
        value = round(value / spec.get("q", 1)) * spec.get("q", 1)
    return value


def trial_options(spec: SweepSpec, count: int | None, seed: int = 0) -> list[dict[str, object]]:
    """The options of each local trial.

    Args:
        spec: the sweep.
        count: trials to run (grid: at most this many of the combinations; random: this many,
            default `DEFAULT_RANDOM_TRIALS`).
        seed: random search seed.

    Returns:
        One `{option: value}` dict per trial, in order.
    """
    if spec.method == "grid":
        keys = list(spec.parameters)
        choices = [[p["value"]] if "value" in p else p["values"] for p in spec.parameters.values()]
        grid = [dict(zip(keys, combination)) for combination in itertools.product(*choices)]
        return grid[:count] if count else grid
    rng = random.Random(seed)
    return [{key: _sample(p, rng) for key, p in spec.parameters.items()} for _ in range(count or DEFAULT_RANDOM_TRIALS)]


def _format(value: object) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def expand_command(spec: SweepSpec, options: dict[str, object]) -> list[str]:
    """The trial's argv: W&B's macros expanded (`${args}` -> `--key=value` ...)."""
    args = [f"--{key}={_format(value)}" for key, value in options.items()]
    argv: list[str] = []
    for part in spec.command:
        if part == "${env}":
            continue
        if part == "${interpreter}":
            argv.append(sys.executable)
        elif part == "${program}":
            argv.append(spec.program)
        elif part == "${args}":
            argv.extend(args)
        elif part == "${args_no_hyphens}":
            argv.extend(arg[2:] for arg in args)
        elif part == "${args_json}":
            argv.append(json.dumps(options))
        else:
            argv.append(part)
    return argv


def best_value(folder: Path, metric: str, goal: str) -> float | None:
    """The best value of `metric` over the epochs logged under a trial folder (`metrics.jsonl`)."""
    values = []
    for file in sorted(folder.glob(f"**/{METRICS_FILE}")):
        for line in file.read_text(encoding="utf-8").splitlines():
            value = json.loads(line).get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                values.append(float(value))
    if not values:
        return None
    return max(values) if goal == "maximize" else min(values)


def run_local(spec: SweepSpec, count: int | None, root: Path = SWEEPS_DIR, extra: list[str] = ()) -> list[TrialResult]:
    """Run the trials one after another in subprocesses; each logs under `root/<sweep>/trial-NN/`.

    Args:
        spec: the sweep.
        count: see `trial_options`.
        root: parent folder of the sweep's trial folders.
        extra: options appended to every trial's command.

    Returns:
        The trial results (a failed trial has a non-zero returncode and no value).
    """
    results = []
    trials = trial_options(spec, count)
    for number, options in enumerate(trials):
        folder = root / spec.name / f"trial-{number:02d}"
        argv = expand_command(spec, options) + [f"{SAVE_DIR_OPTION}={folder}", *extra]
        print(f"sweep {spec.name}: trial {number + 1}/{len(trials)}: {shlex.join(argv)}", flush=True)
        returncode = subprocess.call(argv)
        results.append(TrialResult(number, options, returncode, best_value(folder, spec.metric, spec.goal), folder))
    return results


def summary_table(spec: SweepSpec, results: list[TrialResult]) -> str:
    """A plain-text table: trial, options, best metric value (best trial marked), folder."""
    keys = list(spec.parameters)
    header = ["trial", *keys, spec.metric, "folder"]
    scored = [r for r in results if r.best is not None]
    best = (max if spec.goal == "maximize" else min)(scored, key=lambda r: r.best) if scored else None
    rows = [
        [
            f"{r.number:02d}{' *' if r is best else ''}",
            *(_format(r.options[k]) for k in keys),
            f"{r.best:.4f}" if r.best is not None else f"failed (exit {r.returncode})" if r.returncode else "no value",
            str(r.folder),
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    goal = "highest" if spec.goal == "maximize" else "lowest"
    return "\n".join([*lines, f"* = {goal} {spec.metric}"])
