"""How good is the model-free reference? Measured on clips whose datasets keep them in sync.

GRID, LRS2 and LRS3 publish their clips with picture and sound in sync, so their truth is 0
frames without any model's say. For every clip of a manifest the reference's raw lags are found
once; the bias removed from a clip is the median raw offset of the other decided clips of its
dataset (of all dataset-synced clips when its dataset has fewer than `MIN_BIAS_CLIPS` others),
so no clip is scored with a bias fitted on itself. Clips of other sources are scored for how
often the reference decides, and compared with their audited `av_offset` (a model-assisted
label, shown for information only).

`make check-real` (`avsync.evaluation.sync_truth`) prints the table per dataset and writes every
clip's result as JSON, with the model's answer beside it when asked.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsync.conventions import SAMPLE_RATE
from avsync.features.cache import FeatureCache
from avsync.features.extract import VisualParams
from avsync.features.manifest import ClipRecord, read_manifest
from avsync.io.media import read_audio
from avsync.truth.estimate import estimate_offset
from avsync.truth.lips import REFERENCE_BACKEND
from avsync.truth.reference import clip_events, window_estimates

DATASET_SYNCED = ("GRID", "LRS2", "LRS3")
"""Datasets whose clips are published in sync (their truth is 0 frames)."""
MIN_BIAS_CLIPS = 3
"""Fewest other decided clips of a dataset that calibrate its own bias."""
GROSS_FRAMES = 2.0


@dataclass
class ClipCheck:
    """One clip's result.

    Attributes:
        id: the manifest id.
        dataset: its origin dataset (`clips.csv`), e.g. ``GRID``.
        truth_frames: 0 for dataset-synced clips, else the audited `av_offset` (None: unverified).
        synced_by_dataset: whether the truth is the dataset's own sync.
        lags_frames: each paired event's raw lag.
        bias_frames: the bias removed (calibrated on other clips).
        offset_frames, interval_frames, verdict: the reference's answer.
        error_frames: offset - truth (None when undecided or without a truth).
        model_offset_frames, model_confidence: the model's answer on the same clip, when asked
            (`avsync.evaluation.sync_truth`).
        window_offsets: window length (s, as text) -> each whole window's raw offset (None where
            undecided), when asked.
    """

    id: str
    dataset: str
    truth_frames: float | None
    synced_by_dataset: bool
    lags_frames: list[float]
    bias_frames: float = 0.0
    offset_frames: float | None = None
    interval_frames: list[float] | None = None
    verdict: str = "undecided"
    error_frames: float | None = None
    model_offset_frames: float | None = None
    model_confidence: float | None = None
    window_offsets: dict[str, list[float | None]] = field(default_factory=dict)


_origins: dict[Path, dict[str, str]] = {}


def origin_dataset(video: Path) -> str:
    """The dataset a clip comes from, by the ``clips.csv`` of the folder it lies in (or above).

    Args:
        video: the clip's file.

    Returns:
        The ``origin_dataset`` column's first word (``"LRS2 (BBC)"`` -> ``"LRS2"``), or ``"unknown"``.
    """
    video = Path(os.path.abspath(video))  # ".." resolved, links not followed: a clip belongs where it is listed
    for folder in video.parents:
        table = folder / "clips.csv"
        if table.is_file():
            if folder not in _origins:
                with table.open(encoding="utf-8") as handle:
                    _origins[folder] = {row["path"]: row.get("origin_dataset", "") for row in csv.DictReader(handle)}
            name = _origins[folder].get(video.relative_to(folder).as_posix(), "")
            return name.split(" (")[0].strip() or "unknown"
    return "unknown"


def synced_by_dataset(record: ClipRecord) -> bool:
    """Whether a clip's truth is its dataset's published sync: a GRID, LRS2 or LRS3 clip with its own audio."""
    return record.audio is None and origin_dataset(record.video) in DATASET_SYNCED


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion.

    Args:
        successes: count.
        trials: count (0: the whole range).

    Returns:
        ``(low, high)``.
    """
    if trials == 0:
        return 0.0, 1.0
    z, share = 1.96, successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def raw_checks(records: list[ClipRecord], cache: FeatureCache, signal: str, progress: bool = True,
               windows_s: tuple[float, ...] = (), backend: str = REFERENCE_BACKEND) -> list[ClipCheck]:  # fmt: skip
    """Every clip's paired events (no bias yet).

    Args:
        records: the clips.
        cache: the feature cache (features are computed on a miss).
        signal: what releases are timed on (`avsync.truth.reference.SIGNALS`).
        progress: print one line per clip.
        windows_s: also the raw offsets of consecutive windows of these lengths (`window_table`).
        backend: the landmark backend the lips are read with (`avsync.features.extract.VisualParams`).
    """
    checks = []
    for record in records:
        dataset = origin_dataset(record.video)
        synced = synced_by_dataset(record)
        visual = cache.visual(record.video, VisualParams(backend=backend))
        samples = read_audio(record.reference_audio, sample_rate=SAMPLE_RATE)
        events = clip_events(visual, samples, SAMPLE_RATE, signal)
        truth = 0.0 if synced else float(record.av_offset)
        check = ClipCheck(record.id, dataset, truth, synced, [round(e.lag_s * visual.fps, 3) for e in events])
        for window_s in windows_s:
            found = window_estimates(visual, samples, SAMPLE_RATE, window_s, signal)
            check.window_offsets[f"{window_s:g}"] = [round(e.offset_frames, 3) if e.decided else None for e in found]
        checks.append(check)
        if progress:
            print(f"{record.id}: {dataset}, {len(events)} events", file=sys.stderr)
    return checks


def _raw_offset(check: ClipCheck) -> float | None:
    estimate = estimate_offset(check.lags_frames, 0.0)
    return estimate.offset_frames if estimate.decided else None


def calibrate_and_score(checks: list[ClipCheck]) -> None:
    """Give each clip the bias of the other clips (leave-one-out) and its answer, in place.

    Args:
        checks: from `raw_checks`.
    """
    raw = {id(check): _raw_offset(check) for check in checks}
    for check in checks:
        others = [c for c in checks if c is not check and c.synced_by_dataset and raw[id(c)] is not None]
        same = [c for c in others if c.dataset == check.dataset]
        pool = same if len(same) >= MIN_BIAS_CLIPS else others
        check.bias_frames = round(float(np.median([raw[id(c)] for c in pool])), 3) if pool else 0.0
        estimate = estimate_offset(check.lags_frames, check.bias_frames)
        check.verdict = estimate.verdict
        if estimate.offset_frames is not None:
            check.offset_frames = round(estimate.offset_frames, 3)
            check.interval_frames = [round(value, 3) for value in estimate.interval_frames or ()]
        if estimate.decided and check.truth_frames is not None:
            check.error_frames = round(estimate.offset_frames - check.truth_frames, 3)


def _share(count: int, total: int) -> str:
    low, high = wilson(count, total)
    return f"{count}/{total} ({100 * count / max(total, 1):.0f}% [{100 * low:.0f}-{100 * high:.0f}])"


def summarise(checks: list[ClipCheck]) -> list[dict]:
    """Per dataset (and pooled): decided share, bias, errors within +-0.5 / +-1 frame, gross errors.

    Args:
        checks: scored clips.

    Returns:
        One row per group: ``group``, ``clips``, ``decided``, ``bias_frames`` (median), and for
        dataset-synced groups ``within_half``, ``within_one``, ``gross`` (counts of the decided),
        ``median_error_frames``; for the others ``agree_with_audit`` (within 1 frame of `av_offset`);
        with the model's answers, ``agree_with_model`` (decided clips within 1 frame of the model).
    """
    groups: dict[str, list[ClipCheck]] = {}
    for check in checks:
        groups.setdefault(check.dataset, []).append(check)
    synced = [c for c in checks if c.synced_by_dataset]
    others = [c for c in checks if not c.synced_by_dataset]
    ordered = sorted(groups.items(), key=lambda item: (not item[1][0].synced_by_dataset, item[0]))
    rows = []
    for name, members in [*ordered, ("dataset-synced (all)", synced), ("other sources (all)", others)]:
        if not members:
            continue
        decided = [c for c in members if c.verdict != "undecided"]
        row: dict = {"group": name, "clips": len(members), "decided": len(decided),
                     "bias_frames": round(float(np.median([c.bias_frames for c in members])), 3)}  # fmt: skip
        if members[0].synced_by_dataset:
            errors = np.array([c.error_frames for c in decided], dtype=np.float64)
            row |= {"within_half": int((np.abs(errors) <= 0.5).sum()), "within_one": int((np.abs(errors) <= 1.0).sum()),
                    "gross": int((np.abs(errors) > GROSS_FRAMES).sum()),
                    "median_error_frames": round(float(np.median(errors)), 3) if len(errors) else None}  # fmt: skip
        else:
            row["agree_with_audit"] = sum(abs(c.error_frames) <= 1.0 for c in decided if c.error_frames is not None)
        if any(c.model_offset_frames is not None for c in members):
            row["agree_with_model"] = sum(c.model_offset_frames is not None and abs(c.offset_frames - c.model_offset_frames) <= 1.0
                                          for c in decided)  # fmt: skip
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """The summary as a Markdown table (shares with 95 % Wilson intervals)."""
    with_model = any("agree_with_model" in row for row in rows)
    lines = ["| group | clips | decided | bias (frames) | median error | within +-0.5 | within +-1 | gross (> 2) |"
             + (" decided agreeing with the model (+-1) |" if with_model else ""),
             "| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if with_model else "")]  # fmt: skip
    for row in rows:
        decided = row["decided"]
        if "within_one" in row:
            cells = [f"{row['median_error_frames']:+.2f}" if row["median_error_frames"] is not None else "-",
                     _share(row["within_half"], decided), _share(row["within_one"], decided), _share(row["gross"], decided)]  # fmt: skip
        else:
            cells = ["-", "-", f"{row['agree_with_audit']}/{decided} agree with the audit", "-"]
        if with_model:
            cells.append(_share(row.get("agree_with_model", 0), decided))
        lines.append(f"| {row['group']} | {row['clips']} | {_share(decided, row['clips'])} | {row['bias_frames']:+.2f} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


MIN_WHOLE_EVENTS = 10
"""Windows are compared with their clip's own estimate only where it rests on this many events."""


def window_table(checks: list[ClipCheck]) -> str:
    """How often a window of a long clip decides, and how close it comes to the whole clip's answer.

    Only clips whose whole-clip raw estimate is decided from at least `MIN_WHOLE_EVENTS` events
    take part: their own estimate stands in for the truth (precision, not bias, is measured).

    Args:
        checks: clips with `ClipCheck.window_offsets`.

    Returns:
        A Markdown table, one row per window length.
    """
    lines = ["| window | clips | windows | decided | within +-0.5 of the clip | within +-1 | more than 2 off |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    lengths = sorted({length for check in checks for length in check.window_offsets}, key=float)
    for length in lengths:
        clips, offsets = 0, []
        for check in checks:
            whole = estimate_offset(check.lags_frames, 0.0)
            if length not in check.window_offsets or not whole.decided or whole.n_events < MIN_WHOLE_EVENTS:
                continue
            clips += 1
            offsets += [None if value is None else value - whole.offset_frames for value in check.window_offsets[length]]
        decided = np.array([value for value in offsets if value is not None])
        lines.append(f"| {length} s | {clips} | {len(offsets)} | {_share(len(decided), len(offsets))} | "
                     f"{_share(int((np.abs(decided) <= 0.5).sum()), len(decided))} | {_share(int((np.abs(decided) <= 1).sum()), len(decided))} | "
                     f"{_share(int((np.abs(decided) > 2).sum()), len(decided))} |")  # fmt: skip
    return "\n".join(lines)
