"""Probe: the shipped recipe's fold ensembles with each member reading its own backend (issue 20 item 1).

The shipped TwoTower (trained on dlib's crops) did better on unseen faces with the mesh's crops,
while LipSync did worse on the mesh's geometry (docs/real_faces.md, the mesh section). This scores
each fold's ensemble (``runs/lipsync_real_foldK/*/checkpoints/last.ckpt.ensemble``: dlib-trained
LipSync + 2 x TwoTower) on the fold's unseen cases (the same cases as ``make eval-folds``) with
the mouth crops from one backend and the lip geometry from another (``--crops mesh --lips dlib``);
a frame counts as valid where both found the face. The ensembles are exported to ONNX under
``--work`` (copies, so the runs are untouched) and run through onnxruntime as `avsync align` does.
Writes ``OUT/foldK.json`` in `avsync eval`'s format (``cases``), for `paired_folds.py`.

    python experiments/probes/hybrid_backends.py --crops mesh --lips dlib --out results/folds/hybrid_crops_mesh
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from avsync.align.dtw import DTWConfig
from avsync.evaluation.harness import EvalClip, ModelMethod, make_file_cases, score
from avsync.features.cache import FeatureCache
from avsync.features.extract import VisualParams
from avsync.features.manifest import read_manifest
from avsync.models.export import export_checkpoint
from avsync.models.runtime import load_inference_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", default="mesh", help="backend of the mouth crops (TwoTower)")
    parser.add_argument("--lips", default="dlib", help="backend of the lip geometry (LipSync)")
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--fold-data", type=Path, default=Path("experiments/real_folds"))
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    parser.add_argument("--work", type=Path, default=Path("results/hybrid_work"), help="where the ONNX copies go")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cache = FeatureCache(args.cache)
    crops_params, lips_params = VisualParams(backend=args.crops), VisualParams(backend=args.lips)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    for k in args.folds:
        source = max(Path("runs").glob(f"lipsync_real_fold{k}/*/checkpoints/last.ckpt.ensemble"), key=lambda p: p.stat().st_mtime)
        ckpt = args.work / f"ensemble_fold{k}.ckpt"
        shutil.copyfile(source, ckpt)
        export_checkpoint(ckpt)
        network = load_inference_model(ckpt).network
        records = [r for r in read_manifest(args.fold_data / f"fold{k}.jsonl") if r.split == "test"]
        cases = make_file_cases(records, cache, args.cache / "cases", protocol="real", seeds=(0, 1))
        method = ModelMethod(network, dtw_config=DTWConfig())
        results = []
        for case in cases:
            crops, lips = case.features(cache, crops_params), case.features(cache, lips_params)
            clip = EvalClip(lips.id, crops.mouth_crops, crops.valid & lips.valid, lips.landmarks, lips.log_mel, lips.speaker)
            results.append(score(case, "model", method.align(clip)).to_dict())
        out = args.out / f"fold{k}.json"
        out.write_text(json.dumps({"checkpoint": str(source), "crops": args.crops, "lips": args.lips, "cases": results}, indent=1) + "\n")
        right = sum(r["offset_acc"] for r in results if r["kind"] == "shift")
        print(f"fold {k}: {len(results)} cases, offset within +-1 on {right:.0f} of {sum(r['kind'] == 'shift' for r in results)} shifts, "
              f"frames within +-1 {sum(r['within1'] for r in results) / len(results):.3f}; wrote {out}", flush=True)


if __name__ == "__main__":
    main()
