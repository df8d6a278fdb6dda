"""``avsync eval``: DTW alignment of known warps, a checkpoint vs the classical baseline.

Clips in sync with their reference are warped by known frame maps, written once as video files
(`avsync.evaluation.harness.make_file_cases`: cached in ``--cases``, keyed by content) and aligned
back to the unchanged reference through the analysis `avsync align` runs, by the model and by the
baseline (and with ``--constant`` the perfect constant-offset aligner). ``--protocol synthetic``
(default): the first ``--clips`` clips of the split, one warp kind each in turn
(shift/tempo/cut/freeze/combo); ``--protocol real``: every clip of at least 8 s, each warped as a
shift, a tempo drift and a cut+freeze, ``--seeds`` times. Prints one row per case and method and
the means per method and per warp kind; writes the same as JSON (atomically), a Markdown table with
95 % intervals by bootstrap over speakers, and two PNGs per case and method: the cost matrix with
the found path (red) and the true path (white), and the time map as the offset along the video.
Everything cheap is checked first, so a user mistake ends at once with one line and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from avsync.align.dtw import DTWConfig
from avsync.errors import AvsyncError
from avsync.evaluation.calibration import plot_reliability, precision_threshold
from avsync.evaluation.harness import (
    PROTOCOLS,
    BaselineMethod,
    CaseResult,
    ConstantMethod,
    EvalReport,
    ModelMethod,
    format_markdown,
    format_table,
    make_file_cases,
    pair_band,
    run_evaluation,
)
from avsync.evaluation.summary import reliable_share, truth_kinds, truth_lines, write_summary
from avsync.evaluation.takes import format_takes_markdown, make_take_cases, takes_summary
from avsync.evaluation.warp import MIN_FRAMES
from avsync.features.cache import FeatureCache
from avsync.features.extract import VisualParams
from avsync.features.landmarks import BACKENDS
from avsync.features.manifest import read_manifest
from avsync.io.files import atomic_path
from avsync.models import is_pair_model
from avsync.models.runtime import load_inference_model
from avsync.pipeline.report import CONFIDENCE_RELIABLE, CONFIDENCE_UNCERTAIN

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
    parser.add_argument("--protocol", choices=PROTOCOLS, default="synthetic",
                        help="synthetic: one warp kind per clip in turn (default); real: every clip of at least 8 s "
                        "as a shift, a tempo drift and a cut+freeze, --seeds times each; takes: takes cut from long songs "
                        "(a real manifest: its clips against all its clips' audio in a row) placed in the whole song "
                        "(make eval-takes)")
    parser.add_argument("--split", default="test", help="which split's clips, or 'all' (default test)")
    parser.add_argument("--clips", type=int, help="at most this many clips (default: 10 synthetic, all real)")
    parser.add_argument("--max-frames", type=int, help=f"cut each clip to its first frames (at least {MIN_FRAMES}; default: whole clips)")
    parser.add_argument("--seed", type=int, default=0, help="warp seed (default 0)")
    parser.add_argument("--seeds", type=int, default=2, help="real and takes protocols: warps (takes) per clip and kind (default 2)")
    parser.add_argument("--cases", metavar="DIR", type=Path,
                        help="where the warped clips go, reused when present (default: CACHE/cases)")
    parser.add_argument("--out", metavar="JSON", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    parser.add_argument("--plots", metavar="DIR", type=Path, help="PNG folder (default: beside --out, <name>_plots/)")
    parser.add_argument("--no-baseline", action="store_true", help="do not score the classical baseline")
    parser.add_argument("--constant", action="store_true",
                        help="also score the perfect constant-offset aligner (the best any offset-only tool can do)")
    parser.add_argument("--pool", metavar="JSON", type=Path, nargs="+",
                        help="pool the results of earlier runs (e.g. one per cross-validation fold) into one table "
                        "with speaker-bootstrap intervals, instead of evaluating")
    parser.add_argument("--unseen-by", metavar="MANIFEST", type=Path, nargs="+",
                        help="with --pool: also the table of the cases whose clip is in no MANIFEST's train split "
                        "(e.g. the clips an ensemble's other member never trained on), written beside --out as *_unseen.json")
    parser.add_argument("--truths", metavar="MANIFEST", type=Path,
                        help="with --pool: the clips' manifest; also the model's scores per way each clip's truth was set "
                        "(dataset sync, the audit's av_offset, unverified)")
    parser.add_argument("--summary", metavar="JSON", type=Path,
                        help="with --pool: also write a small summary to commit (per run and pooled: case counts, means, "
                        "95 %% intervals, 'reliable' right k of n with a Wilson interval; the --unseen-by subset too)")
    parser.add_argument("--backend", choices=BACKENDS, default=VisualParams().backend,
                        help="landmark backend the cases' lips are read with: the one the checkpoint was trained on "
                        f"(avsync fit --data.visual.backend; default {VisualParams().backend})")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto; as in avsync align: the checkpoint's ONNX "
                        "export through onnxruntime when it has one, else torch; cuda: torch on the GPU)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=256, help="windows per forward pass (default 256)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _check_options(args: argparse.Namespace) -> None:
    if args.clips is not None and args.clips < 1:
        raise AvsyncError(f"--clips must be at least 1, got {args.clips}")
    if args.seeds < 1:
        raise AvsyncError(f"--seeds must be at least 1, got {args.seeds}")
    if args.max_frames is not None and args.max_frames < MIN_FRAMES:
        raise AvsyncError(f"--max-frames must be at least {MIN_FRAMES} (the shortest clip a warp takes), got {args.max_frames}")
    if args.batch_size < 1:
        raise AvsyncError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.out.suffix.lower() != ".json":
        raise AvsyncError("--out must end in .json", args.out)
    if args.out.is_dir():
        raise AvsyncError("--out is a folder; give a .json file", args.out)
    if args.truths is not None and not args.pool:
        raise AvsyncError("--truths needs --pool")
    if args.summary is not None:
        if not args.pool:
            raise AvsyncError("--summary needs --pool (it summarises pooled runs)")
        if args.summary.suffix.lower() != ".json" or args.summary.is_dir():
            raise AvsyncError("--summary must be a .json file", args.summary)
    for path in [args.out, *(p for p in (args.plots, args.summary) if p is not None)]:
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


RELIABILITY_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
"""Confidence bins of the reliability plot."""


def _reliability(report: EvalReport, out: Path) -> str:
    """Write the model's reliability plot beside `out`; one line on what "reliable" would need."""
    results = [r for r in report.results if r.method == "model"]
    if not results:
        return ""
    threshold = precision_threshold(results)
    png = out.with_name(f"{out.stem}_reliability.png")
    edges = sorted({*RELIABILITY_EDGES, CONFIDENCE_UNCERTAIN, CONFIDENCE_RELIABLE})
    plot_reliability(results, png, edges=edges, thresholds=[CONFIDENCE_UNCERTAIN, CONFIDENCE_RELIABLE],
                     title=f"model: offset within +-1 frame by confidence ({len(results)} cases)")  # fmt: skip
    above = [r.offset_acc for r in results if r.confidence > CONFIDENCE_RELIABLE]
    share = f"{100 * np.mean(above):.0f}% right" if above else "none"
    return (f"confidence > {CONFIDENCE_RELIABLE:g} (reliable): {len(above)} cases, {share}; 95% right needs confidence > "
            f"{threshold:.2f}; plot {png}")


def _write_results(out: Path, settings: dict, report: EvalReport, *, takes: bool = False) -> str:
    """Write the run's settings and per-case results as JSON at `out` and the tables as Markdown beside it; returns the Markdown."""
    results = {**settings, **report.to_dict(), **({"takes_summary": takes_summary(report)} if takes else {})}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    markdown = format_takes_markdown(report) if takes else format_markdown(report)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown + "\n", encoding="utf-8")
    return markdown


def pool(args: argparse.Namespace) -> int:
    """Merge the per-case results of earlier runs, print and write the pooled tables."""
    truths = truth_kinds(args.truths) if args.truths is not None else None
    runs: dict[str, list[CaseResult]] = {}
    for path in args.pool:
        try:
            runs[str(path)] = [CaseResult(**case) for case in json.loads(path.read_text(encoding="utf-8"))["cases"]]
        except FileNotFoundError as exc:
            raise AvsyncError("file not found", path) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AvsyncError(f"not an avsync eval result ({type(exc).__name__}: {exc})", path) from exc
    results = [r for rows in runs.values() for r in rows]
    takes = args.protocol == "takes"
    report = EvalReport(results)
    markdown = _write_results(args.out, {"pooled": [str(p) for p in args.pool]}, report, takes=takes)
    print(f"{len(results)} results of {len({r.case for r in results})} cases from {len(args.pool)} runs")
    print(markdown)
    print(_reliability(report, args.out))
    if not takes:
        print(reliable_share([r for r in results if r.method == "model"]).describe())
        if truths is not None:
            print("\n".join(truth_lines(results, truths)))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    unseen_clips = None
    if args.unseen_by:
        seen = _trained_on(args.unseen_by)
        unseen_clips = {r.clip for r in results} - seen
        unseen = EvalReport([r for r in results if r.clip in unseen_clips])
        out = args.out.with_name(f"{args.out.stem}_unseen.json")
        settings = {"pooled": [str(p) for p in args.pool], "unseen_by": [str(p) for p in args.unseen_by]}
        markdown = _write_results(out, settings, unseen, takes=takes)
        print(f"\n{len(unseen.results)} results of {len({r.case for r in unseen.results})} cases whose clip is in no train split of "
              f"{', '.join(str(p) for p in args.unseen_by)}:")  # fmt: skip
        print(markdown)
        if not takes:
            print(reliable_share([r for r in unseen.results if r.method == "model"]).describe())
            if truths is not None:
                print("\n".join(truth_lines(unseen.results, truths)))
        print(f"wrote {out} and {out.with_suffix('.md')}")
    if args.summary is not None:
        settings = {"pooled": [str(p) for p in args.pool], "protocol": args.protocol,
                    "unseen_by": [str(p) for p in args.unseen_by or []], "truths": None if args.truths is None else str(args.truths)}  # fmt: skip
        write_summary(args.summary, runs, settings=settings, unseen_clips=unseen_clips, truths=truths)
        print(f"wrote {args.summary}")
    return 0


def _trained_on(manifests: list[Path]) -> set[str]:
    """Ids of the clips in the train split of any of the manifests."""
    seen: set[str] = set()
    for path in manifests:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            seen |= {entry["id"] for entry in map(json.loads, filter(None, lines)) if entry.get("split") == "train"}
        except FileNotFoundError as exc:
            raise AvsyncError("file not found", path) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AvsyncError(f"not a JSONL manifest ({type(exc).__name__}: {exc})", path) from exc
    return seen


def run(args: argparse.Namespace) -> int:
    """Validate, warp the cases, evaluate, print the table and write the JSON, Markdown and plots."""
    if args.pool:
        _check_options(args)
        return pool(args)
    if args.plots is None:
        args.plots = args.out.with_name(f"{args.out.stem}_plots")
    _check_options(args)
    every_record = read_manifest(args.data)
    records = [r for r in every_record if args.split in ("all", r.split)]
    if not records:
        raise AvsyncError(f"no clips in the {args.split!r} split", args.data)
    loaded = load_inference_model(args.checkpoint, args.device)  # what avsync align runs: the ONNX export when there is one
    cache = FeatureCache(args.cache)
    synthetic = args.protocol == "synthetic"
    takes = args.protocol == "takes"
    seeds = (args.seed,) if synthetic else range(args.seed, args.seed + args.seeds)
    if takes:
        real = not all(r.truth for r in every_record)  # synthetic songs carry their truth
        songs = every_record if real else records[: args.clips]
        cases = make_take_cases(songs, records if real else songs, cache, args.cases or args.cache / "cases",
                                real=real, seeds=seeds, progress=not args.quiet)  # fmt: skip
    else:
        cases = make_file_cases(records, cache, args.cases or args.cache / "cases", protocol=args.protocol,
                                n_clips=args.clips or (10 if synthetic else None), seeds=seeds,
                                max_frames=args.max_frames if synthetic else None, progress=not args.quiet)  # fmt: skip
    if is_pair_model(loaded.network):
        passes = sum(len(c.frame_map) * (2 * pair_band(len(c.frame_map))[2] + 1) for c in cases)
        print(f"{loaded.describe()['network']} scores (mouth, audio) pairs one by one: about {passes:,} forward passes, "
              "slow on a CPU (--max-frames shortens the clips)", file=sys.stderr)
    config = DTWConfig()
    methods = [ModelMethod(loaded.network, dtw_config=config, batch_size=args.batch_size,
                           progress=not args.quiet and is_pair_model(loaded.network))]  # fmt: skip
    if not args.no_baseline and not takes:  # the baseline's cross-correlation searches only the lags a warp makes
        methods.append(BaselineMethod(dtw_config=config))
    if args.constant:
        methods.append(ConstantMethod())
    visual = VisualParams(backend=args.backend)
    report = run_evaluation(methods, cases, cache=cache, visual=visual, plots_dir=args.plots, time_map_plots=True,
                            progress=not args.quiet)  # fmt: skip
    settings = {**loaded.describe(), "data": str(args.data), "split": args.split, "protocol": args.protocol, "seed": args.seed,
                "max_frames": args.max_frames, "backend": args.backend, "dtw": asdict(config)}  # fmt: skip
    markdown = _write_results(args.out, settings, report, takes=takes)
    clips = len({c.clip_id for c in cases})
    print(f"checkpoint {loaded.path} ({loaded.describe()['network']}), {len(cases)} cases of {clips} {args.split} clips")
    print(format_table(report, by_kind=True))
    comparison = _comparison(report)
    if comparison:
        print(comparison)
    print(markdown)
    print(_reliability(report, args.out))
    print(f"wrote {args.out}, {args.out.with_suffix('.md')} and {len(report.plots)} plots in {args.plots}/")
    return 0
