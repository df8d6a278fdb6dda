"""`make check-real`: the model-free sync reference measured on real clips, the model beside it.

``python -m avsync.evaluation.sync_truth [--manifest M] [--cache DIR] [--out R.json] [--model] [--windows S ...]``
runs `avsync.truth.validate` over a manifest's clips (per dataset: decided share, the
leave-one-out bias, errors within +-0.5 / +-1 frame and gross errors on the dataset-synced clips)
and, with ``--model``, the shipped model's offset of each clip against its own audio through the
analysis `avsync align` runs, to count where the two witnesses agree. Prints the Markdown table and
writes every clip's result as JSON (atomic).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from avsync.errors import AvsyncError
from avsync.features.cache import FeatureCache
from avsync.features.manifest import ClipRecord, read_manifest
from avsync.io.files import atomic_path
from avsync.truth.lips import REFERENCE_BACKEND
from avsync.truth.reference import SIGNALS
from avsync.truth.validate import ClipCheck, calibrate_and_score, raw_checks, summarise, table, window_table


def own_audio_offset(record: ClipRecord, model: Any, cache_dir: Path, backend: str | None = None) -> tuple[float, float] | None:
    """A model's offset (frames) and confidence for a clip against its reference audio, through the
    analysis `avsync align` runs; None where the model cannot take the clip (e.g. under its 1 s).

    Args:
        record: the clip.
        model: from `avsync.models.checkpoints.load_model`.
        cache_dir: the feature cache.
        backend: the landmarks the model was trained on (None: `VisualParams`'s default).
    """
    from avsync.features.extract import VisualParams
    from avsync.pipeline.checks import check_inputs
    from avsync.pipeline.sync import analyse

    params = VisualParams() if backend is None else VisualParams(backend=backend)
    try:
        analysis = analyse(check_inputs(record.video, record.reference_audio), model, cache_dir=cache_dir, visual_params=params,
                           progress=False)  # fmt: skip
    except AvsyncError as exc:
        print(f"{record.id}: no model answer: {exc}", file=sys.stderr)
        return None
    return round(float(analysis.sync.offset_frames), 3), round(float(analysis.sync.confidence), 3)


def add_model_answers(checks: list[ClipCheck], records: list[ClipRecord], cache_dir: Path, checkpoint: str | None,
                      progress: bool = True) -> None:  # fmt: skip
    """Each clip's offset and confidence by the model against its reference audio, in place.

    Args:
        checks: the clips' results, in the order of `records` (a clip the model cannot take, e.g.
            shorter than 1 s, keeps None).
        records: the clips.
        cache_dir: the feature cache.
        checkpoint: the model (None: the shipped one).
        progress: print one line per clip.
    """
    from avsync.models.checkpoints import load_model

    model = load_model(checkpoint, "auto")
    for check, record in zip(checks, records, strict=True):
        answer = own_audio_offset(record, model, cache_dir)
        if answer is None:
            continue
        check.model_offset_frames, check.model_confidence = answer
        if progress:
            print(f"{record.id}: model {check.model_offset_frames:+.2f} frames ({check.model_confidence:.2f})", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the reference on a manifest's clips; print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m avsync.evaluation.sync_truth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=Path("experiments/real_clips.jsonl"))
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    parser.add_argument("--out", type=Path, default=Path("results/check_real.json"))
    parser.add_argument("--signal", choices=SIGNALS, default="gap", help="what lip releases are timed on (default gap)")
    parser.add_argument("--backend", choices=("dlib", "mesh"), default=REFERENCE_BACKEND,
                        help=f"landmarks the lip releases are read from (default {REFERENCE_BACKEND}: its thresholds were set on it)")
    parser.add_argument("--model", action="store_true", help="also the model's offset per clip (the shipped model unless --checkpoint)")
    parser.add_argument("--checkpoint", default=None, help="the model with --model (default: shipped)")
    parser.add_argument("--windows", type=float, nargs="*", default=[], metavar="SECONDS",
                        help="also cut the clips into windows of these lengths and say how often and how closely a window "
                        "decides, against its clip's own estimate (clips with at least 10 events)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        records = read_manifest(args.manifest)
        checks = raw_checks(records, FeatureCache(args.cache), args.signal, progress=not args.quiet, windows_s=tuple(args.windows),
                            backend=args.backend)  # fmt: skip
        if args.model:
            add_model_answers(checks, records, args.cache, args.checkpoint, progress=not args.quiet)
    except AvsyncError as exc:
        print(f"avsync: error: {exc}", file=sys.stderr)
        return exc.exit_code
    calibrate_and_score(checks)
    rows = summarise(checks)
    print(table(rows))
    if args.windows:
        print()
        print(window_table(checks))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as temporary:
        temporary.write_text(json.dumps({"manifest": str(args.manifest), "signal": args.signal, "backend": args.backend, "summary": rows,
                                         "clips": [asdict(check) for check in checks]}, indent=1), encoding="utf-8")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
