"""Small, committable summaries of pooled evaluations (`avsync eval --pool --summary`, `make eval-folds`).

The per-case results of `avsync eval` (``results/``) are large and stay out of the repository;
the README's numbers come from this summary instead: per run (fold) and pooled, each method's case
count, means and 95 % speaker-bootstrap intervals, and how often "reliable" (confidence above
`avsync.pipeline.report.CONFIDENCE_RELIABLE`) was right, as a count with a 95 % Wilson interval;
with the clips' manifest, the same per way the clip's truth was set (`truth_kind`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from avsync.evaluation.harness import MARKDOWN_COLUMNS, CaseResult, EvalReport, speaker_interval
from avsync.evaluation.metrics import wilson_interval
from avsync.features.manifest import TRUTH_BY, read_manifest
from avsync.io.files import atomic_path
from avsync.pipeline.report import CONFIDENCE_RELIABLE


@dataclass(frozen=True)
class ReliableShare:
    """How often a "reliable" offset was right.

    Attributes:
        cases: the method's cases.
        reliable: cases whose confidence is above the threshold.
        right: of those, the cases whose offset is within +-1 frame.
        threshold: the confidence a "reliable" verdict needs.
        low, high: 95 % Wilson interval of ``right / reliable``.
    """

    cases: int
    reliable: int
    right: int
    threshold: float
    low: float
    high: float

    @property
    def share(self) -> float:
        """``right / reliable`` (NaN when no case is reliable)."""
        return self.right / self.reliable if self.reliable else float("nan")

    def describe(self) -> str:
        """One line: counts, share and interval."""
        head = f'"reliable" (confidence > {self.threshold:g}): {self.reliable} of {self.cases} cases'
        if not self.reliable:
            return head + ", none"
        return (f"{head} ({100 * self.reliable / self.cases:.0f}%), offset within +-1 frame on {self.right} of them "
                f"({100 * self.share:.0f}%, 95% Wilson interval {100 * self.low:.0f}-{100 * self.high:.0f}%)")


def reliable_share(results: Sequence[CaseResult], threshold: float = CONFIDENCE_RELIABLE) -> ReliableShare:
    """Count the cases called "reliable" and the right ones among them.

    Args:
        results: one method's results (all warp kinds: each has a constant offset and a confidence).
        threshold: the confidence above which a result is "reliable".
    """
    above = [r for r in results if r.confidence > threshold]
    right = sum(1 for r in above if r.offset_acc >= 1.0)
    low, high = wilson_interval(right, len(above))
    return ReliableShare(len(results), len(above), right, threshold, low, high)


def truth_kinds(manifest: str | os.PathLike[str]) -> dict[str, str]:
    """Clip id -> how its truth was set (`avsync.features.manifest.TRUTH_BY`): the manifest's
    ``truth_by`` (`make reaudit`), else the dataset's sync for GRID/LRS2/LRS3 clips (by the
    ``clips.csv`` beside them) and "unverified" for the rest."""
    from avsync.truth.validate import synced_by_dataset

    kinds = {}
    for record in read_manifest(manifest):
        if record.truth_by:
            kinds[record.id] = record.truth_by
        else:
            kinds[record.id] = "dataset" if synced_by_dataset(record) else "unverified"
    return kinds


def truth_lines(results: Sequence[CaseResult], kinds: dict[str, str]) -> list[str]:
    """One line per way the truth was set: the model's cases, offset accuracy on shifts (k of n) and frames within +-1."""
    lines = []
    rows = [r for r in results if r.method == "model"]
    for kind in TRUTH_BY:
        mine = [r for r in rows if kinds.get(r.clip) == kind]
        if not mine:
            continue
        shifts = [r for r in mine if r.kind == "shift"]
        right = sum(1 for r in shifts if r.offset_acc >= 1.0)
        low, high = wilson_interval(right, len(shifts))
        within = sum(r.within1 for r in mine) / len(mine)
        lines.append(f"  truth by {kind}: {len({r.clip for r in mine})} clips, {len(mine)} cases; offset within +-1 frame on "
                     f"{right} of {len(shifts)} shifts ({100 * right / max(1, len(shifts)):.0f}%, Wilson {100 * low:.0f}-{100 * high:.0f}%), "
                     f"frames within +-1 {100 * within:.0f}%")  # fmt: skip
    return lines


def summarise_report(report: EvalReport, *, intervals: bool = True) -> dict:
    """Per method: case count, the Markdown table's means (and their speaker-bootstrap intervals).

    Args:
        report: the results.
        intervals: also the 95 % intervals (bootstrap over speakers; slower).

    Returns:
        ``{method: {"cases": n, "clips": n, "speakers": n, KEY: mean, KEY_interval: [low, high], ...}}``
        with the keys of `MARKDOWN_COLUMNS`; the model's entry has ``reliable`` (`ReliableShare` fields).
    """
    out: dict[str, dict] = {}
    for method, entry in report.summary().items():
        rows = [r for r in report.results if r.method == method]
        record: dict = {"cases": len(rows), "clips": len({r.clip for r in rows}),
                        "speakers": len({r.speaker or r.clip for r in rows})}  # fmt: skip
        for key, _ in MARKDOWN_COLUMNS:
            value = entry.get(key, float("nan"))
            record[key] = None if math.isnan(value) else round(value, 4)
            if intervals and key != "frame_err_mean" and record[key] is not None:
                field_name, kind = ("offset_acc", "shift") if key == "offset_acc_shift" else ("within1", key.removeprefix("within1_"))
                low, high = speaker_interval(rows, field_name, kind=None if kind == "all" else kind)
                record[f"{key}_interval"] = [round(low, 4), round(high, 4)]
        if method == "model":
            share = reliable_share(rows)
            record["reliable"] = {**asdict(share), "low": round(share.low, 4), "high": round(share.high, 4)}
        out[method] = record
    return out


def write_summary(out: str | os.PathLike[str], runs: dict[str, Sequence[CaseResult]], *, settings: dict,
                  unseen_clips: set[str] | None = None, truths: dict[str, str] | None = None) -> dict:
    """Write the pooled summary (and each run's) as small JSON, atomically.

    Args:
        out: the ``.json`` to write.
        runs: each pooled run's name (e.g. its results file) and its per-case results.
        settings: what was pooled and how (written as they are).
        unseen_clips: when given, the same summaries restricted to these clips (``unseen``).
        truths: clip id -> how its truth was set (`truth_kinds`); when given, ``by_truth`` summaries too
            (clips it does not list are in none).

    Returns:
        What was written.
    """
    def block(keep: Callable[[CaseResult], bool]) -> dict:
        per_run = {name: summarise_report(EvalReport([r for r in rows if keep(r)]), intervals=False)
                   for name, rows in runs.items()}  # fmt: skip
        kept = [r for rows in runs.values() for r in rows if keep(r)]
        out = {"pooled": summarise_report(EvalReport(kept)), "runs": per_run}
        if truths is not None:
            out["by_truth"] = {kind: summarise_report(EvalReport([r for r in kept if truths.get(r.clip) == kind]))
                               for kind in TRUTH_BY if any(truths.get(r.clip) == kind for r in kept)}  # fmt: skip
        return out

    record = {**settings, "all": block(lambda r: True)}
    if unseen_clips is not None:
        record["unseen"] = block(lambda r: r.clip in unseen_clips)
        record["unseen"]["clips"] = sorted(unseen_clips & {r.clip for rows in runs.values() for r in rows})
    with atomic_path(Path(out)) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record
