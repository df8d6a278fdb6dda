"""`make reaudit`: each real clip's truth set by witnesses that do not share a fault.

A clip's own audio-video offset (`av_offset`) comes from its dataset's published sync (GRID,
LRS2, LRS3: 0 frames), or from the model-free reference (`avsync.truth`, `make check-real`)
where it decides and a model trained without the clip's speaker agrees with it within a frame;
otherwise the clip is "unverified": it keeps its audited offset for training and is scored apart.

The model witness is the LipSync of the cross-validation fold that held the clip's speaker out
(`make eval-folds EXP=lipsync_real`; LipSync alone, so no member of it ever trained on the clip),
run on the clip against its own audio through the analysis `avsync align` runs.

``python -m avsync.evaluation.reaudit [--check results/check_real.json] [--apply]`` prints the
table clip by clip against today's `av_offset`, writes every clip's evidence as JSON and, with
``--apply``, writes each clip's ``truth_by`` (and its offset where the witnesses move it) into
every manifest under ``experiments/`` that lists the clip.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.features.landmarks import BACKENDS
from avsync.features.manifest import TRUTH_BY, ClipRecord, base_id, read_manifest
from avsync.io.files import atomic_path

AGREE_FRAMES = 1.0
"""Largest difference between the reference's answer and the model witness that counts as agreeing."""
MIN_WITNESS_CONFIDENCE = 0.8
"""Below this confidence the model witness does not count. Chosen on the 20 open dataset-synced clips
it answers for (their truth is their dataset's, not this rule's; the locked LRS3 clip left out):
at 0.82 and above it was within a frame of 0 on all 15; at 0.73 and below on 1 of 5 (the others
3, 3, -10 and -33 frames off)."""


@dataclass
class Reaudit:
    """One clip's witnesses and the truth they give.

    Attributes:
        id: the manifest id.
        dataset: its origin dataset.
        audit: the offset the manifest had (frames).
        reference_verdict: the model-free reference's verdict (``in sync``, ``off``, ``undecided``).
        reference_frames: its offset (frames, bias removed), None when it found too few events.
        witness_frames: the out-of-fold LipSync's offset against the clip's own audio (None: the
            clip is too short for the model).
        witness_confidence: that model's confidence.
        witness_checkpoint: the fold run it came from.
        truth_by: one of `TRUTH_BY`.
        av_offset: the offset the clip gets (the audit's where unverified).
    """

    id: str
    dataset: str
    audit: int
    reference_verdict: str
    reference_frames: float | None
    witness_frames: float | None
    witness_confidence: float | None
    witness_checkpoint: str | None
    truth_by: str
    av_offset: int


def decide(synced_by_dataset: bool, audit: int, verdict: str, reference_frames: float | None,
           witness_frames: float | None, witness_confidence: float | None) -> tuple[str, int]:  # fmt: skip
    """The issue's rule for one clip.

    Args:
        synced_by_dataset: the clip comes from GRID, LRS2 or LRS3 with its own audio.
        audit: its offset today (frames).
        verdict: the reference's verdict.
        reference_frames: the reference's offset (frames).
        witness_frames: the out-of-fold model's offset (frames).
        witness_confidence: its confidence.

    Returns:
        ``(truth_by, av_offset)``: the reference's answer (0 when it says "in sync", else its
        offset rounded to a frame) where the model, at `MIN_WITNESS_CONFIDENCE` or more, agrees
        with that answer within `AGREE_FRAMES`; the audit's offset, "unverified", otherwise.
    """
    if synced_by_dataset:
        return "dataset", 0
    witness = witness_frames is not None and witness_confidence is not None and witness_confidence >= MIN_WITNESS_CONFIDENCE
    if verdict in ("in sync", "off") and reference_frames is not None and witness:
        answer = 0 if verdict == "in sync" else round(reference_frames)
        if abs(answer - witness_frames) <= AGREE_FRAMES:
            return "two witnesses", answer
    return "unverified", audit


def out_of_fold_checkpoints(records: list[ClipRecord], folds: list[list[str]], runs: str) -> dict[str, Path]:
    """Clip id -> the newest ``last.ckpt`` of the fold run that held the clip's speaker out.

    Args:
        records: the clips (each with a speaker).
        folds: the held-out speakers of each fold (``experiments/real_folds/folds.json``).
        runs: the fold runs' folder with ``{k}`` for the fold, e.g. ``runs/lipsync_real_fold{k}``.

    Raises:
        AvsyncError: a speaker in no fold, or a fold without a run.
    """
    fold_of = {speaker: k for k, speakers in enumerate(folds) for speaker in speakers}
    newest: dict[int, Path] = {}
    found = {}
    for record in records:
        if record.speaker not in fold_of:
            raise AvsyncError(f"clip {record.id}: its speaker {record.speaker!r} is in no fold")
        k = fold_of[record.speaker]
        if k not in newest:
            candidates = sorted(Path(runs.format(k=k)).glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise AvsyncError(f"no {runs.format(k=k)}/*/checkpoints/last.ckpt: run make eval-folds EXP=lipsync_real first")
            newest[k] = candidates[-1]
        found[record.id] = newest[k]
    return found


def witness_offsets(records: list[ClipRecord], checkpoints: dict[str, Path], cache_dir: Path, backend: str | None = None,
                    progress: bool = True) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Clip id -> (offset frames, confidence) of its out-of-fold model against its own audio.

    Args:
        records: the clips.
        checkpoints: clip id -> the model that never saw its speaker (`out_of_fold_checkpoints`).
        cache_dir: the feature cache.
        backend: the landmarks the fold runs were trained on (None: `VisualParams`'s default).
        progress: print one line per clip.

    Returns:
        Only the clips the model can take (a clip shorter than the model's window has none).
    """
    from avsync.evaluation.sync_truth import own_audio_offset
    from avsync.models.checkpoints import load_model

    answers = {}
    for checkpoint in sorted(set(checkpoints.values())):
        model = load_model(str(checkpoint), "auto")
        for record in (r for r in records if checkpoints[r.id] == checkpoint):
            answer = own_audio_offset(record, model, cache_dir, backend)
            if answer is None:
                continue
            answers[record.id] = answer
            if progress:
                print(f"{record.id}: out-of-fold model {answer[0]:+.2f} frames ({answer[1]:.2f})", file=sys.stderr)
    return answers


def reaudit(records: list[ClipRecord], reference: dict[str, dict], checkpoints: dict[str, Path],
            witnesses: dict[str, tuple[float, float]]) -> list[Reaudit]:  # fmt: skip
    """Every clip's truth by the rule (`decide`).

    Args:
        records: the clips.
        reference: clip id -> its `avsync.truth.validate.ClipCheck` as a dict (``make check-real``'s JSON).
        checkpoints: clip id -> its witness model.
        witnesses: clip id -> (offset, confidence) from `witness_offsets`.
    """
    rows = []
    for record in records:
        if record.id not in reference:
            raise AvsyncError(f"clip {record.id} is not in the reference's results: run make check-real on the same manifest")
        check = reference[record.id]
        offset, confidence = witnesses.get(record.id, (None, None))
        truth_by, av_offset = decide(check["synced_by_dataset"], record.av_offset, check["verdict"], check["offset_frames"], offset,
                                     confidence)  # fmt: skip
        rows.append(Reaudit(record.id, check["dataset"], record.av_offset, check["verdict"], check["offset_frames"], offset,
                            confidence, str(checkpoints.get(record.id)), truth_by, av_offset))  # fmt: skip
    return rows


def table(rows: list[Reaudit]) -> str:
    """Markdown: the clips not synced by their dataset, then the counts per way the truth was set."""
    lines = ["| clip | dataset | audit | reference | out-of-fold LipSync | truth | vs audit |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        if row.truth_by == "dataset":
            continue
        reference = "undecided" if row.reference_frames is None else f"{row.reference_frames:+.2f} ({row.reference_verdict})"
        witness = "-" if row.witness_frames is None else f"{row.witness_frames:+.0f} ({row.witness_confidence:.1f})"
        truth = "unverified" if row.truth_by == "unverified" else f"{row.av_offset:+d} (two witnesses)"
        versus = "-" if row.truth_by == "unverified" else "same" if row.av_offset == row.audit else f"moves {row.av_offset - row.audit:+d}"
        lines.append(f"| {row.id.split('/', 1)[-1]} | {row.dataset} | {row.audit:+d} | {reference} | {witness} | {truth} | {versus} |")
    lines.append("")
    for how in TRUTH_BY:
        mine = [row for row in rows if row.truth_by == how]
        moved = sum(row.av_offset != row.audit for row in mine)
        lines.append(f"{how}: {len(mine)} clips" + (f", {moved} moved from the audit" if moved else ""))
    audited = [row for row in rows if row.audit]
    lines.append(f"clips the audit had moved: {len(audited)}; confirmed by two witnesses: "
                 f"{sum(row.truth_by == 'two witnesses' and row.av_offset == row.audit for row in audited)}")  # fmt: skip
    return "\n".join(lines)


def apply_truths(rows: list[Reaudit], folder: Path) -> list[Path]:
    """Write ``truth_by`` and the offset into every manifest under `folder` that lists the clips.

    Lines of other clips are left as they are; a clip whose offset moves gets a note saying why.

    Args:
        rows: from `reaudit`.
        folder: searched recursively for ``*.jsonl``.

    Returns:
        The manifests changed.
    """
    truths = {row.id: row for row in rows}
    changed = []
    for manifest in sorted(folder.rglob("*.jsonl")):
        lines = manifest.read_text(encoding="utf-8").splitlines()
        out = []
        for line in lines:
            entry = json.loads(line) if line.strip() and not line.lstrip().startswith("#") else None
            row = truths.get(base_id(str(entry.get("id")))) if isinstance(entry, dict) else None
            if row is not None:
                note = entry.pop("note", None)
                entry.pop("av_offset", None)
                entry.pop("truth_by", None)
                if row.av_offset:
                    entry["av_offset"] = row.av_offset
                if note:
                    entry["note"] = note
                if row.av_offset != row.audit:
                    entry["note"] = (f"two witnesses: the model-free reference ({row.reference_frames:+.2f} frames, "
                                     f"{row.reference_verdict}) and the out-of-fold LipSync ({row.witness_frames:+.0f}) "
                                     f"agree; the audit had {row.audit:+d}")  # fmt: skip
                entry["truth_by"] = row.truth_by
                line = json.dumps(entry)
            out.append(line)
        if out != lines:
            with atomic_path(manifest) as temporary:
                temporary.write_text("".join(line + "\n" for line in out), encoding="utf-8")
            changed.append(manifest)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Re-audit the manifest's clips; print the table, write the JSON, apply when asked."""
    parser = argparse.ArgumentParser(prog="python -m avsync.evaluation.reaudit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=Path("experiments/real_clips.jsonl"))
    parser.add_argument("--check", type=Path, default=Path("results/check_real.json"), help="make check-real's JSON")
    parser.add_argument("--folds", type=Path, default=Path("experiments/real_folds/folds.json"))
    parser.add_argument("--runs", default="runs/lipsync_real_fold{k}", help="the fold runs, {k} for the fold")
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="the landmarks the fold runs were trained on (default: avsync.features.extract.VisualParams's)")
    parser.add_argument("--out", type=Path, default=Path("results/reaudit.json"))
    parser.add_argument("--apply", type=Path, nargs="?", const=Path("experiments"), default=None, metavar="FOLDER",
                        help="write the truths into every manifest under FOLDER (default experiments)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        records = read_manifest(args.manifest)
        try:
            reference = {clip["id"]: clip for clip in json.loads(args.check.read_text(encoding="utf-8"))["clips"]}
            folds = json.loads(args.folds.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            raise AvsyncError(f"cannot read {args.check} or {args.folds} ({exc}): run make check-real first") from exc
        checkpoints = out_of_fold_checkpoints(records, folds, args.runs)
        witnesses = witness_offsets(records, checkpoints, args.cache, args.backend, progress=not args.quiet)
        rows = reaudit(records, reference, checkpoints, witnesses)
    except AvsyncError as exc:
        print(f"avsync: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as temporary:
        temporary.write_text(json.dumps({"manifest": str(args.manifest), "check": str(args.check), "clips": [asdict(r) for r in rows]},
                                        indent=1), encoding="utf-8")  # fmt: skip
    if args.apply is not None:
        for manifest in apply_truths(rows, args.apply):
            print(f"wrote {manifest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
