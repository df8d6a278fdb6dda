"""Issue 21 item 3, a first pass without retraining: each real clip's truth by witnesses that do not share a fault.

Rule (the issue's): a clip's offset comes from its dataset's published sync (GRID, LRS2, LRS3: 0),
or from the model-free reference (`avsync.truth`, `make check-real`) where it decides (0 when it
says "in sync", else its rounded offset) and agrees within a frame with a model trained without
that clip's speaker; otherwise the clip is
"unverified". The model witness here is the cross-validation ensemble of the fold that held the
clip's speaker out (its LipSync) beside the shipped TwoTower, so it is independent only for clips
the TwoTower never trained on (not in `experiments/realav_split.jsonl`'s train split); its offset
for a clip is read from the fold's two shift cases (audited offset + found - true: what it thinks
the clip's own offset is), so only clips of at least 4 s have one.

Reads (nothing is computed again): `results/check_real.json` (`make check-real`), the fold
results of `make eval-folds EXP=lipsync_real WITH=avsync/models/pretrained/twotower_realsynth.ckpt`
(`results/folds/lipsync_real_ensemble/fold*.json`), `experiments/real_clips.jsonl`. Prints a
Markdown table, clip by clip, against the audit's `av_offset`, and the counts.

    python experiments/probes/reaudit.py
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

DATASET_SYNCED = ("GRID", "LRS2", "LRS3")


def main(folds: str = "results/folds/lipsync_real_ensemble", check: str = "results/check_real.json",
         manifest: str = "experiments/real_clips.jsonl", seen_by: str = "experiments/realav_split.jsonl") -> int:  # fmt: skip
    """Print the table; 2 when an input is missing."""
    try:
        reference = {c["id"]: c for c in json.loads(Path(check).read_text())["clips"]}
        cases = [c for path in sorted(Path(folds).glob("fold[0-9].json")) for c in json.loads(path.read_text())["cases"]]
        clips = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
        seen = {e["id"] for e in map(json.loads, Path(seen_by).read_text().splitlines()) if e.get("split") == "train"}
    except (OSError, ValueError, KeyError) as exc:
        print(f"reaudit: error: {exc} (run make check-real and make eval-folds first)", file=sys.stderr)
        return 2
    shifts: dict[str, list[float]] = {}
    for case in cases:
        if case["method"] == "model" and case["kind"] == "shift":
            shifts.setdefault(case["clip"], []).append(case["offset_found"] - case["offset_true"])
    counts: dict[str, int] = {}
    rule: dict[str, str] = {}
    print("| clip | dataset | audit (av_offset) | reference | out-of-fold model | new truth | vs audit |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for clip in clips:
        cid, audit = clip["id"], clip.get("av_offset", 0)
        ref = reference[cid]
        dataset = ref["dataset"]
        ref_text = "undecided" if ref["offset_frames"] is None else f"{ref['offset_frames']:+.2f} ({ref['verdict']})"
        errors = shifts.get(cid, [])
        model = audit + statistics.median(errors) if errors else None
        steady = bool(errors) and max(errors) - min(errors) <= 1
        independent = cid not in seen
        model_text = "-" if model is None else f"{model:+.1f}{'' if steady else ' (cases disagree)'}{'' if independent else ' (TwoTower-seen)'}"
        if dataset in DATASET_SYNCED:
            truth, how = 0, "dataset"
        elif (ref["verdict"] in ("in sync", "off") and model is not None and steady and independent
              and abs(ref["offset_frames"] - model) <= 1.0):
            truth, how = 0 if ref["verdict"] == "in sync" else round(ref["offset_frames"]), "two witnesses"
        else:
            truth, how = None, "unverified"
        versus = "-" if truth is None else ("same" if truth == audit else f"moves {truth - audit:+d}")
        key = f"{how}, {versus}" if truth is not None else how
        counts[key] = counts.get(key, 0) + 1
        rule[cid] = how
        truth_text = "unverified" if truth is None else f"{truth:+d} ({how})"
        print(f"| {cid.split('/', 1)[-1]} | {dataset} | {audit:+d} | {ref_text} | {model_text} | {truth_text} | {versus} |")
    print()
    for key, count in sorted(counts.items()):
        print(f"{key}: {count} clips")
    print("\nThe fold ensembles' shift cases against today's truths, grouped by the new rule:")
    for subset, keep in (("clips the TwoTower never trained on", lambda c: c not in seen), ("all clips", lambda c: True)):
        for how in ("dataset", "two witnesses", "unverified"):
            mine = [c for c in cases if c["method"] == "model" and c["kind"] == "shift" and keep(c["clip"]) and rule.get(c["clip"]) == how]
            right = sum(c["offset_acc"] >= 1.0 for c in mine)
            print(f"  {subset}, {how}: {len({c['clip'] for c in mine})} clips, {right} of {len(mine)} shifts within +-1 frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
