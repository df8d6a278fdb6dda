"""Paired comparison of two `avsync eval` runs on the same cases (e.g. dlib vs mesh landmarks, issue 20 item 1).

Each run is a list of per-fold results files (``results/folds/EXP/fold*.json`` of `make eval-folds`);
the model's result on every case both scored is paired, and the difference B - A of each score is
given with a 95 % interval by bootstrap over speakers (`avsync.evaluation.harness.speaker_interval`
on the per-case differences, so the pairing is kept): offset within +-1 frame on the shift cases,
frames within +-1 (all cases and per warp kind), mean frame error. Per fold too (no intervals), and
with ``--unseen-by MANIFEST`` also the cases whose clip is in no MANIFEST's train split.

    python experiments/probes/paired_folds.py --a results/folds/lipsync_real/fold*.json \\
        --b results/folds/lipsync_real_mesh/fold*.json --names dlib mesh [--unseen-by experiments/realav_split.jsonl] \\
        [--out experiments/results/paired_dlib_mesh_lipsync.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from avsync.evaluation.harness import speaker_interval

SCORES = (("offset_acc", "shift"), ("within1", None), ("within1", "shift"), ("within1", "tempo"),
          ("within1", "cutfreeze"), ("frame_err_mean", None))


def load(paths: list[Path], method: str) -> dict[str, dict]:
    """Case name -> the method's result, with the fold it came from."""
    cases = {}
    for path in paths:
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            if case["method"] == method:
                cases[case["case"]] = {**case, "fold": path.stem}
    return cases


def compare(a: dict[str, dict], b: dict[str, dict], keep: set[str] | None = None) -> dict:
    """Means of A and B and the paired difference B - A with its speaker-bootstrap interval, per score."""
    names = sorted(n for n in set(a) & set(b) if keep is None or a[n]["clip"] in keep)
    out = {"cases": len(names), "clips": len({a[n]["clip"] for n in names}),
           "speakers": len({a[n]["speaker"] or a[n]["clip"] for n in names})}
    for value, kind in SCORES:
        chosen = [n for n in names if kind is None or a[n]["kind"] == kind]
        if not chosen:
            continue
        diffs = [SimpleNamespace(kind=a[n]["kind"], speaker=a[n]["speaker"], clip=a[n]["clip"],
                                 d=float(b[n][value]) - float(a[n][value])) for n in chosen]
        low, high = speaker_interval(diffs, "d")
        key = f"{value}_{kind or 'all'}"
        out[key] = {"n": len(chosen), "a": float(np.mean([a[n][value] for n in chosen])),
                    "b": float(np.mean([b[n][value] for n in chosen])),
                    "diff": float(np.mean([x.d for x in diffs])), "diff_95": [low, high]}
        if value == "offset_acc":
            out[key]["a_right"] = int(sum(a[n][value] for n in chosen))
            out[key]["b_right"] = int(sum(b[n][value] for n in chosen))
    return out


def describe(name: str, block: dict, names: tuple[str, str]) -> str:
    lines = [f"{name}: {block['cases']} cases, {block['clips']} clips, {block['speakers']} speakers"]
    for key, row in block.items():
        if isinstance(row, dict):
            right = f" ({row['a_right']} vs {row['b_right']} of {row['n']})" if "a_right" in row else f" (n {row['n']})"
            lines.append(f"  {key:22s} {names[0]} {row['a']:.3f}  {names[1]} {row['b']:.3f}  "
                         f"diff {row['diff']:+.3f} [{row['diff_95'][0]:+.3f}, {row['diff_95'][1]:+.3f}]{right}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, nargs="+", required=True, help="results files of run A")
    parser.add_argument("--b", type=Path, nargs="+", required=True, help="results files of run B")
    parser.add_argument("--names", nargs=2, default=("A", "B"))
    parser.add_argument("--method", default="model")
    parser.add_argument("--unseen-by", type=Path, nargs="+", help="also the clips in no train split of these manifests")
    parser.add_argument("--out", type=Path, help="write the comparison as JSON")
    args = parser.parse_args()
    a, b = load(args.a, args.method), load(args.b, args.method)
    names = tuple(args.names)
    record = {"a": [str(p) for p in args.a], "b": [str(p) for p in args.b], "names": names, "method": args.method,
              "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a)), "all": compare(a, b)}
    print(describe("all", record["all"], names))
    print(f"  cases only in {names[0]}: {record['only_in_a']}, only in {names[1]}: {record['only_in_b']}")
    folds = sorted({c["fold"] for c in a.values()})
    record["folds"] = {}
    for fold in folds:
        keep = {c["clip"] for c in a.values() if c["fold"] == fold}
        record["folds"][fold] = block = compare(a, b, keep)
        print(f"{fold}: {block['cases']} cases; offset acc (shift) {block['offset_acc_shift']['a']:.2f} vs "
              f"{block['offset_acc_shift']['b']:.2f}; within 1 (all) {block['within1_all']['a']:.2f} vs {block['within1_all']['b']:.2f}")
    if args.unseen_by:
        seen = set()
        for path in args.unseen_by:
            seen |= {e["id"] for e in map(json.loads, filter(None, path.read_text().splitlines())) if e.get("split") == "train"}
        keep = {c["clip"] for c in a.values()} - seen
        record["unseen_by"] = [str(p) for p in args.unseen_by]
        record["unseen"] = compare(a, b, keep)
        print(describe("unseen", record["unseen"], names))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
