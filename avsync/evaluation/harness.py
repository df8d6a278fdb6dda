"""Alignment evaluation on clips with known warps (used by `avsync eval` and `DTWEvalCallback`).

Each test clip (in sync with its reference) is warped at the feature level by a known frame map
(`avsync.evaluation.warp`: the cached mouth crops, validity and landmarks are re-indexed; no re-encoding),
then aligned against its unchanged reference:

* model: normalised cost matrix (`avsync.align.cost`) -> `align_video` -> `path_to_time_map`;
  constant offset = the median offset ``i - j`` along the DTW path; confidence = SyncNet-style
  ``median - min`` of the offset-averaged cost (`estimate_offset`).
* baseline (`avsync.evaluation.baseline`): lip opening vs speech-band energy; the same DTW and time map on
  ``1 - local correlation``; constant offset by normalised cross-correlation over the lags a warp
  can make (`pair_band`).

Per case: offset error (frames), frame error of the time map (mean, median, share within +-1
frame), offset within +-1 frame, DTW alignment cost (mean normalised cost along the path).
Clip ``k`` gets warp kind ``WARP_KINDS[k % 5]`` with seed ``seed * 1000 + k``, so the cases are
the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from torch import nn
from tqdm import tqdm

from avsync.align.cost import cost_matrix
from avsync.align.dtw import Alignment, DTWConfig, align_video, alignment_cost
from avsync.align.timemap import TimeMap, estimate_offset, path_to_time_map
from avsync.errors import AvsyncError, MediaError
from avsync.evaluation.baseline import baseline_cost, speech_band_envelope, xcorr_offset
from avsync.evaluation.metrics import frame_errors, offset_accuracy
from avsync.evaluation.warp import (
    MAX_SHIFT,
    MIN_FRAMES,
    WARP_KINDS,
    FrameMap,
    apply_frame_map,
    make_warp,
)
from avsync.features.audio import voiced_frames
from avsync.features.cache import FeatureCache, load_clip
from avsync.features.extract import VisualParams
from avsync.features.landmarks import mouth_opening
from avsync.features.manifest import read_manifest
from avsync.pipeline.plots import plot_alignment, plot_time_map

METHODS = ("model", "baseline")
MAX_CUT_FRAMES = 50
"""Longest cut a warp makes (`avsync.evaluation.warp`); with the tempo range it bounds the pair band."""
SUMMARY_FIELDS = ("frame_err_mean", "frame_err_median", "within1", "offset_acc", "offset_err", "dtw_cost")


@dataclass
class EvalClip:
    """An unwarped test clip, video and reference in sync, same length T.

    Attributes:
        id: clip id.
        mouth_crops: uint8 [T, 64, 64].
        valid: bool [T].
        landmarks: float32 [T, 68, 2], NaN where invalid.
        log_mel: float32 [80, 4T] of the reference.
    """

    id: str
    mouth_crops: np.ndarray
    valid: np.ndarray
    landmarks: np.ndarray
    log_mel: np.ndarray

    def __len__(self) -> int:
        return len(self.valid)


@dataclass
class EvalCase:
    """A clip with its known warp."""

    clip: EvalClip
    frame_map: FrameMap

    @property
    def name(self) -> str:
        """``<clip id>:<warp kind>``."""
        return f"{self.clip.id}:{self.frame_map.kind}"

    @property
    def true_path(self) -> np.ndarray:
        """int [N, 2] cells ``(i, src_index[i])``."""
        return np.stack([np.arange(len(self.frame_map)), self.frame_map.src_index], axis=1)


@dataclass
class CaseResult:
    """Scores of one method on one case (offsets in frames, positive = video late).

    Attributes:
        case, kind, method: which case and method.
        offset_true, offset_found, offset_err: constant offsets and ``|found - true|``.
        offset_acc: 1.0 when ``offset_err <= 1`` frame, else 0.0.
        confidence: of the constant offset (model: SyncNet-style z-units; baseline: correlation).
        frame_err_mean, frame_err_median, within1: frame error of the time map.
        dtw_cost: mean normalised cost along the DTW path.
    """

    case: str
    kind: str
    method: str
    offset_true: float
    offset_found: float
    offset_err: float
    offset_acc: float
    confidence: float
    frame_err_mean: float
    frame_err_median: float
    within1: float
    dtw_cost: float
    alignment: Alignment | None = field(default=None, repr=False, compare=False)
    time_map: TimeMap | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The scores (JSON-ready), without the path and map."""
        values = asdict(self)
        del values["alignment"], values["time_map"]
        return values


def load_eval_clips(data: str | Path, cache: str | Path, *, split: str = "test", n_clips: int = 10,
                    max_frames: int | None = None, visual: VisualParams = VisualParams(),
                    progress: bool = False) -> list[EvalClip]:
    """The first ``n_clips`` usable clips (by id) of a split, from the feature cache (computed on a miss).

    Args:
        data: manifest ``.jsonl`` or dataset folder (`avsync.features.manifest.read_manifest`).
        cache: feature cache folder.
        split: which split.
        n_clips: how many clips.
        max_frames: keep only the first frames of each clip (None: all; else at least ``MIN_FRAMES``).
        visual: extraction parameters (must match training's to reuse its cache).
        progress: tqdm bar over the clips (feature extraction on a cache miss is slow).

    Returns:
        The clips; unreadable clips and clips shorter than ``MIN_FRAMES`` (too short to warp) are
        left out.

    Raises:
        AvsyncError: the split has no usable clip.
    """
    if max_frames is not None and max_frames < MIN_FRAMES:
        raise ValueError(f"max_frames must be at least {MIN_FRAMES} (the shortest clip a warp takes), got {max_frames}")
    records = sorted((r for r in read_manifest(data) if r.split == split), key=lambda r: r.id)
    feature_cache = FeatureCache(cache)
    clips: list[EvalClip] = []
    bar = tqdm(total=min(n_clips, len(records)), desc="load clips", unit="clip", disable=not progress, leave=False)
    for record in records:
        if len(clips) == n_clips:
            break
        try:
            features = load_clip(record, feature_cache, params=visual)
            landmarks = feature_cache.visual(record.video, visual).landmarks
        except MediaError:
            continue
        if len(features) < MIN_FRAMES:
            continue
        frames = len(features) if max_frames is None else min(len(features), max_frames)
        clips.append(EvalClip(record.id, features.mouth_crops[:frames], features.valid[:frames], landmarks[:frames],
                              features.log_mel[:, : 4 * frames]))
        bar.update()
    bar.close()
    if not clips:
        raise AvsyncError(f"no usable clips in the {split!r} split (readable, at least {MIN_FRAMES} frames)", data)
    return clips


def make_cases(clips: Sequence[EvalClip], seed: int = 0) -> list[EvalCase]:
    """Warp clip ``k`` with kind ``WARP_KINDS[k % 5]`` and seed ``seed * 1000 + k``."""
    return [EvalCase(clip, make_warp(WARP_KINDS[k % len(WARP_KINDS)], len(clip), seed * 1000 + k)) for k, clip in enumerate(clips)]


def pair_band(n_frames: int) -> tuple[float, float, int]:
    """Band ``(offset, slope, radius)`` around the diagonal that holds every warp `avsync.evaluation.warp`
    makes of a clip of ``n_frames`` (shift, tempo drift up to 10 %, one cut)."""
    return 0.0, 1.0, MAX_SHIFT + MAX_CUT_FRAMES + math.ceil(0.1 * n_frames)


def _score(case: EvalCase, method: str, cost: np.ndarray, config: DTWConfig, *, offset_found: float | None,
           confidence: float) -> CaseResult:
    """DTW, time map and scores; ``offset_found=None`` takes the median offset along the path."""
    alignment = align_video(cost, config)
    time_map = path_to_time_map(alignment)
    errors = frame_errors(time_map, case.frame_map.src_index)
    if offset_found is None:
        offset_found = float(np.median(np.arange(len(alignment.ref_index)) - alignment.ref_index))
    offset_true = case.frame_map.true_offset_frames
    offset_err = abs(offset_found - offset_true)
    return CaseResult(
        case=case.name, kind=case.frame_map.kind, method=method, offset_true=offset_true, offset_found=float(offset_found),
        offset_err=float(offset_err), offset_acc=offset_accuracy([offset_found], [offset_true]), confidence=float(confidence),
        frame_err_mean=errors.mean, frame_err_median=errors.median, within1=errors.within1,
        dtw_cost=alignment_cost(cost, alignment.path), alignment=alignment, time_map=time_map,
    )


def is_pair_model(model: nn.Module) -> bool:
    """Whether a network scores (mouth, audio) pairs one by one (PosterCNN), not through embeddings.

    A pair model costs one forward pass per scored cell: ``N * (2 * radius + 1)`` in `pair_band`
    (about 24,000 for a 6 s clip, 210,000 for 30 s), against ``N + M`` encoder passes for a TwoTower.
    """
    return not hasattr(model, "encode_video")


def evaluate_model(model: nn.Module, case: EvalCase, config: DTWConfig = DTWConfig(), *, batch_size: int = 256,
                   progress: bool = False) -> tuple[CaseResult, np.ndarray]:
    """Align a case with the model and score it.

    A TwoTower scores every pair; a pair model (PosterCNN) only the pairs inside `pair_band`,
    and the DTW then searches only that band.

    Returns:
        The result and the normalised cost matrix float [N, M] (for plots).
    """
    clip, frame_map = case.clip, case.frame_map
    band = pair_band(len(clip)) if is_pair_model(model) else None
    cost = cost_matrix(
        model, apply_frame_map(clip.mouth_crops, frame_map), clip.log_mel,
        video_valid=apply_frame_map(clip.valid, frame_map),
        ref_active=voiced_frames(clip.log_mel),
        band=band, batch_size=batch_size, progress=progress,
    )
    if band is not None:
        config = replace(config, band_offset=band[0], band_slope=band[1], band_radius=band[2])
    return _score(case, "model", cost, config, offset_found=None, confidence=estimate_offset(cost).confidence), cost


def evaluate_baseline(case: EvalCase, config: DTWConfig = DTWConfig()) -> tuple[CaseResult, np.ndarray]:
    """Align a case with the classical baseline and score it.

    Returns:
        The result and the baseline's normalised cost matrix float [N, M].
    """
    clip, frame_map = case.clip, case.frame_map
    mouth = apply_frame_map(mouth_opening(clip.landmarks), frame_map)
    envelope = speech_band_envelope(clip.log_mel)
    active = voiced_frames(clip.log_mel)
    cost = baseline_cost(mouth, envelope, video_valid=apply_frame_map(clip.valid, frame_map), ref_active=active)
    offset = xcorr_offset(mouth, envelope, max_offset=pair_band(len(clip))[2])  # the lags a warp can make
    return _score(case, "baseline", cost, config, offset_found=offset.offset_frames, confidence=offset.confidence), cost


@dataclass
class EvalReport:
    """Results of every case and method, and the plots written.

    Attributes:
        results: one `CaseResult` per case and method.
        plots: PNG paths (cost matrix with found and true path), one per case and method.
    """

    results: list[CaseResult]
    plots: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean of each score per method: ``{"model": {"frame_err_mean": ..., ...}, ...}``."""
        out = {}
        for method in METHODS:
            rows = [r for r in self.results if r.method == method]
            if rows:
                out[method] = _means(rows)
        return out

    def summary_by_kind(self) -> dict[str, dict[str, dict[str, float]]]:
        """Mean of each score per method and warp kind: ``{"model": {"shift": {...}, ...}, ...}``."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for method in METHODS:
            for kind in WARP_KINDS:
                rows = [r for r in self.results if r.method == method and r.kind == kind]
                if rows:
                    out.setdefault(method, {})[kind] = _means(rows)
        return out

    def to_dict(self) -> dict:
        """JSON-ready: per-case results, the means per method (and per method and kind), the plot paths."""
        return {"cases": [r.to_dict() for r in self.results], "summary": self.summary(),
                "summary_by_kind": self.summary_by_kind(), "plots": [str(p) for p in self.plots]}


def _means(rows: Sequence[CaseResult]) -> dict[str, float]:
    return {name: float(np.mean([getattr(r, name) for r in rows])) for name in SUMMARY_FIELDS}


def run_evaluation(model: nn.Module | None, cases: Sequence[EvalCase], *, config: DTWConfig = DTWConfig(),
                   baseline: bool = True, plots_dir: str | Path | None = None, time_map_plots: bool = False,
                   batch_size: int = 256, progress: bool = True) -> EvalReport:
    """Evaluate the model (if given) and the baseline (if asked) on every case.

    Args:
        model: a TwoTower or PosterCNN (eval mode is set and restored), or None.
        cases: from `make_cases`.
        config: DTW constraints and penalties.
        baseline: also score the classical baseline.
        plots_dir: write ``<case>_<method>.png`` there (cost matrix, found and true path).
        time_map_plots: also write ``<case>_<method>_timemap.png`` there (offset along the video,
            found and true).
        batch_size: windows or pairs per forward pass.
        progress: tqdm bar over the cases (and over the pairs of a pair model, which are slow).

    Returns:
        The `EvalReport`.
    """
    report = EvalReport([])
    for case in tqdm(cases, desc="align", unit="case", disable=not progress, leave=False):
        runs = []
        if model is not None:
            runs.append(evaluate_model(model, case, config, batch_size=batch_size, progress=progress and is_pair_model(model)))
        if baseline:
            runs.append(evaluate_baseline(case, config))
        for result, cost in runs:
            report.results.append(result)
            if plots_dir is not None:
                title = (f"{case.name} {result.method}: frame err {result.frame_err_mean:.2f}, "
                         f"within1 {result.within1:.2f}, offset err {result.offset_err:.1f}")
                stem = Path(plots_dir) / f"{case.name.replace(':', '_')}_{result.method}"
                report.plots.append(plot_alignment(cost, result.alignment.path, case.true_path, f"{stem}.png", title=title))
                if time_map_plots:
                    report.plots.append(plot_time_map(result.time_map, f"{stem}_timemap.png",
                                                      true_ref_index=case.frame_map.src_index, title=title))
    return report


def format_table(report: EvalReport, *, by_kind: bool = False) -> str:
    """A compact text table: one row per case and method, then the means per method.

    Args:
        report: the results.
        by_kind: also the means per method and warp kind.
    """
    header = f"{'case':<22} {'method':<8} {'off.true':>8} {'off.err':>7} {'conf':>6} {'err.mean':>8} {'err.med':>7} {'within1':>7} {'dtw':>7}"
    rule = "-" * len(header)
    lines = [header, rule]
    for r in report.results:
        lines.append(f"{r.case:<22} {r.method:<8} {r.offset_true:8.1f} {r.offset_err:7.1f} {r.confidence:6.2f} "
                     f"{r.frame_err_mean:8.2f} {r.frame_err_median:7.2f} {r.within1:7.2f} {r.dtw_cost:7.2f}")
    lines.append(rule)
    lines += [_mean_line("MEAN", method, means) for method, means in report.summary().items()]
    if by_kind:
        lines.append(rule)
        lines += [_mean_line(f"MEAN {kind}", method, means)
                  for method, kinds in report.summary_by_kind().items() for kind, means in kinds.items()]
    return "\n".join(lines)


def _mean_line(label: str, method: str, means: dict[str, float]) -> str:
    return (f"{label:<22} {method:<8} {'':>8} {means['offset_err']:7.1f} {'':>6} {means['frame_err_mean']:8.2f} "
            f"{means['frame_err_median']:7.2f} {means['within1']:7.2f} {means['dtw_cost']:7.2f}   offset acc {means['offset_acc']:.2f}")
