"""Alignment evaluation: cases x methods x one scorer (`avsync eval`, `make eval-real`, the callback).

Cases: clips in sync with their reference are re-timed by a known frame map
(`avsync.evaluation.warp`) and aligned back against the unchanged reference.

* `make_file_cases` (``avsync eval``): a manifest split (the synthetic songs, or any folder or
  manifest of real clips) is warped into H.264 files in a case folder, named by the source's
  content hash and the map, so a case is encoded once and its result never moves with the
  encoder; the features of the warped file are what `avsync align` would extract from it.
* `make_cases` (the per-epoch callback, tests): clips already in memory (`EvalClip`, e.g. from
  the training cache by `load_eval_clips`) are warped at the feature level (no encoding).

Two protocols:

* ``synthetic``: clip ``k`` (by id) gets kind ``WARP_KINDS[k % 5]`` (shift, tempo, cut, freeze,
  combo) with seed ``seed * 1000 + k``; optionally only its first ``max_frames`` frames.
* ``real``: every clip of at least `MIN_CLIP_FRAMES` frames gets each of `REAL_KINDS` (a shift;
  a tempo drift then a shift; a cut and a freeze then a shift) for each seed.

Methods, each aligning a case's features through the analysis `avsync align` runs
(`avsync.align.analysis`), to the same `FeatureSync`:

* ``model`` (`ModelMethod`): a network's cost through `sync_features`;
* ``baseline`` (`BaselineMethod`): the classical cue, lip opening vs speech-band energy
  (`avsync.evaluation.baseline`), its cost through the same `align_cost`; constant offset from
  cross-correlation;
* ``constant`` (`ConstantMethod`): the perfect constant-offset aligner (the true best constant
  offset applied to every frame: what an offset-only tool reaches at best).

Scores (`CaseResult`, one type for all): offset error and accuracy (within +-1 frame), the time
map's frame error (mean, median, share within +-1 frame), confidence and its level, DTW cost.
`EvalReport` gives the means per method and per kind, and 95 % intervals by bootstrap over
speakers (`speaker_interval`).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from avsync.align.analysis import FeatureSync, align_cost, sync_features
from avsync.align.dtw import DTWConfig, alignment_cost
from avsync.align.place import is_match
from avsync.align.plots import plot_alignment, plot_time_map
from avsync.align.robust import retimed_fraction, scored_rows
from avsync.align.timemap import TimeMap, constant_time_map
from avsync.conventions import FPS
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
    warp_video_file,
)
from avsync.features.audio import voiced_frames
from avsync.features.cache import FeatureCache, file_hash, load_clip
from avsync.features.extract import VisualParams
from avsync.features.landmarks import mouth_opening
from avsync.features.manifest import ClipRecord, read_manifest
from avsync.models import is_pair_model
from avsync.pipeline.report import confidence_level

PROTOCOLS = ("synthetic", "real", "takes")
REAL_KINDS = ("shift", "tempo", "cutfreeze")
MIN_CLIP_FRAMES = 100
"""Shortest clip the real protocol warps (4 s): after a 50-frame cut and a shift, 35 frames are left."""
MAX_CUT_FRAMES = 50
"""Longest cut a warp makes (`avsync.evaluation.warp`); with the tempo range it bounds the pair band."""
SUMMARY_FIELDS = ("frame_err_mean", "frame_err_median", "within1", "offset_acc", "offset_err", "dtw_cost")
TARGETS = {"offset_acc_shift": 0.95, "within1_all": 0.85, "within1_tempo": 0.75, "within1_cutfreeze": 0.75}
"""The real-face targets (issue 14): unseen speakers, pooled."""
BOOTSTRAP_SAMPLES = 2000
PLACED_TOLERANCE_S = 0.5
"""An offset within this many seconds counts as placed (`CaseResult.placed`)."""
NOT_RETIMED_SHARE = 0.02
"""A video that was not re-timed should have a map with fewer than this share of frames re-timed."""
SPAN_TOLERANCE = 2
"""Frames by which a map's reference span may miss the truth's (`CaseResult.span_ok`)."""


@dataclass
class EvalClip:
    """A clip's features, video and reference in sync (or a warped video against its reference).

    Attributes:
        id: clip id.
        mouth_crops: uint8 [T, 64, 64].
        valid: bool [T].
        landmarks: float32 [T, 68, 2], NaN where invalid.
        log_mel: float32 [80, 4M] of the reference.
        speaker: who is on it (None when unknown).
    """

    id: str
    mouth_crops: np.ndarray
    valid: np.ndarray
    landmarks: np.ndarray
    log_mel: np.ndarray
    speaker: str | None = None

    def __len__(self) -> int:
        return len(self.valid)


@dataclass(frozen=True)
class Case:
    """A warped clip and its truth: in memory (`clip`) or as a warped file (`video`).

    Attributes:
        name: ``<clip id>:<kind>`` (synthetic protocol) or ``<clip id>:<kind>:<seed>`` (real).
        kind: the warp kind.
        clip_id, speaker: the source clip and who is on it (None when unknown).
        frame_map: warped frame ``i`` shows source (= reference) frame ``src_index[i]``.
        clip: the unwarped features (in-memory cases), or None.
        video: the warped video, no audio (file cases), or None.
        reference: the audio the source clip is in sync with (file cases), or None.
        av_offset: the source clip's own audited offset (`ClipRecord.av_offset`), in the truth.
        ref_origin: the reference frame at which the source's frame 0 belongs (a take's source
            placed in a longer reference, `avsync.evaluation.takes`; negative when the reference
            starts later than the source).
        in_reference: False for a take of something the reference does not hold (it should
            come out "no match"; its frame scores mean nothing).
    """

    name: str
    kind: str
    clip_id: str
    speaker: str | None
    frame_map: FrameMap
    clip: EvalClip | None = field(default=None, repr=False)
    video: Path | None = None
    reference: Path | None = None
    av_offset: int = 0
    ref_origin: int = 0
    in_reference: bool = True

    @property
    def true_ref_index(self) -> np.ndarray:
        """int [N]: the reference frame each warped frame belongs at (``src_index + ref_origin - av_offset``)."""
        return self.frame_map.src_index + self.ref_origin - self.av_offset

    @property
    def true_offset_frames(self) -> float:
        """The best constant offset of the truth (positive: video late)."""
        return self.frame_map.true_offset_frames - self.ref_origin + self.av_offset

    @property
    def true_path(self) -> np.ndarray:
        """int [N, 2] cells ``(i, true_ref_index[i])``."""
        return np.stack([np.arange(len(self.frame_map)), self.true_ref_index], axis=1)

    def features(self, cache: FeatureCache | None, visual: VisualParams = VisualParams()) -> EvalClip:
        """The warped video's features and the reference's log-mel, as `avsync align` would see them.

        Args:
            cache: the feature cache of file cases (their warped file's features are computed
                once, then reused); unused for in-memory cases.
            visual: how a file case's lips are read (e.g. the landmark backend); unused for in-memory cases.
        """
        if self.clip is not None:
            clip, fmap = self.clip, self.frame_map
            return EvalClip(clip.id, apply_frame_map(clip.mouth_crops, fmap), apply_frame_map(clip.valid, fmap),
                            apply_frame_map(clip.landmarks, fmap), clip.log_mel, clip.speaker)  # fmt: skip
        if cache is None:
            raise ValueError(f"{self.name}: a file case needs a feature cache")
        visual, audio = cache.visual(self.video, visual), cache.audio(self.reference)
        return EvalClip(self.clip_id, visual.mouth_crops, visual.valid, visual.landmarks, audio.log_mel, self.speaker)


@dataclass
class CaseResult:
    """One method on one case (offsets in 25 fps frames, positive = video late).

    Attributes:
        case, kind, method, clip, speaker: which.
        offset_true, offset_found, offset_err: constant offsets and ``|found - true|``.
        offset_acc: 1.0 when ``offset_err <= 1`` frame, else 0.0.
        confidence, confidence_level: of the constant offset, as `avsync align` reports it.
        frame_err_mean, frame_err_median, within1: frame error of the time map.
        dtw_cost: mean normalised cost along the path (0 for the constant method).
        frames: video frames of the case.
        in_reference: whether the reference holds what the video shows (`Case.in_reference`).
        placed: 1.0 when the offset is within `PLACED_TOLERANCE_S`.
        retimed: share of frames the time map moves off the constant offset (`retimed_fraction`).
        not_retimed: 1.0 when `retimed` is under `NOT_RETIMED_SHARE`.
        span_err: frames between the map's reference span and the truth's (the worse end).
        span_ok: 1.0 when `span_err` is at most `SPAN_TOLERANCE` frames.
        no_match: 1.0 when the analysis calls the video "no match" (`avsync.align.place.is_match`).
        runtime_s: seconds the method's alignment took (features excluded).
    """

    case: str
    kind: str
    method: str
    clip: str
    speaker: str | None
    offset_true: float
    offset_found: float
    offset_err: float
    offset_acc: float
    confidence: float
    confidence_level: str
    frame_err_mean: float
    frame_err_median: float
    within1: float
    dtw_cost: float
    frames: int = 0
    in_reference: bool = True
    placed: float = math.nan
    retimed: float = math.nan
    not_retimed: float = math.nan
    span_err: float = math.nan
    span_ok: float = math.nan
    no_match: float = math.nan
    runtime_s: float = 0.0
    sync: FeatureSync | None = field(default=None, repr=False, compare=False)
    time_map: TimeMap | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The scores (JSON-ready), without the alignment and map."""
        values = asdict(self)
        del values["sync"], values["time_map"]
        return values


def compose(first: FrameMap, second: FrameMap, kind: str) -> FrameMap:
    """Apply warp `second` (drawn over ``len(first)`` frames) to the output of warp `first`.

    Args:
        first: warp of the original clip.
        second: warp of `first`'s output (``second.n_source == len(first)``).
        kind: the name of the composed warp.
    """
    if second.n_source != len(first):
        raise ValueError(f"second warp expects {second.n_source} frames, the first gives {len(first)}")
    return FrameMap(first.src_index[second.src_index], first.n_source, kind, {**first.params, **second.params})


def draw_warp(kind: str, n_frames: int, seed: int) -> FrameMap:
    """A warp of one of `REAL_KINDS`, deterministic from `seed`.

    Args:
        kind: ``shift``, ``tempo`` (drift then shift) or ``cutfreeze`` (cut, freeze, then shift).
        n_frames: frames of the clip (at least `MIN_CLIP_FRAMES`).
        seed: the random seed.
    """
    if kind not in REAL_KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(REAL_KINDS)}")
    rng = np.random.default_rng(seed)
    if kind == "shift":
        return make_warp("shift", n_frames, rng, min_frames=MIN_CLIP_FRAMES)
    if kind == "tempo":
        base = make_warp("tempo", n_frames, rng, min_frames=MIN_CLIP_FRAMES)
    else:
        cut = make_warp("cut", n_frames, rng, min_frames=MIN_CLIP_FRAMES)
        base = compose(cut, make_warp("freeze", len(cut), rng, min_frames=0), kind)
    return compose(base, make_warp("shift", len(base), rng, min_frames=0), kind)


def case_file(folder: Path, record: ClipRecord, frame_map: FrameMap, kind: str, seed: int) -> Path:
    """The case's video: named by the source's content and the map, so it is written once."""
    digest = hashlib.blake2b(digest_size=6)
    digest.update(file_hash(record.video).encode())
    digest.update(np.ascontiguousarray(frame_map.src_index, np.int64).tobytes())
    return folder / f"{record.id.replace('/', '_')}_{kind}_{seed}_{digest.hexdigest()}.mp4"


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
        except MediaError:
            continue
        if len(features) < MIN_FRAMES:
            continue
        frames = len(features) if max_frames is None else min(len(features), max_frames)
        clips.append(EvalClip(record.id, features.mouth_crops[:frames], features.valid[:frames], features.landmarks[:frames],
                              features.log_mel[:, : 4 * frames], record.speaker))  # fmt: skip
        bar.update()
    bar.close()
    if not clips:
        raise AvsyncError(f"no usable clips in the {split!r} split (readable, at least {MIN_FRAMES} frames)", data)
    return clips


def make_cases(clips: Sequence[EvalClip], seed: int = 0) -> list[Case]:
    """In-memory cases, synthetic protocol: clip ``k`` gets ``WARP_KINDS[k % 5]`` with seed ``seed * 1000 + k``."""
    cases = []
    for k, clip in enumerate(clips):
        kind = WARP_KINDS[k % len(WARP_KINDS)]
        cases.append(Case(f"{clip.id}:{kind}", kind, clip.id, clip.speaker, make_warp(kind, len(clip), seed * 1000 + k), clip=clip))
    return cases


def make_file_cases(records: Sequence[ClipRecord], cache: FeatureCache, case_dir: str | os.PathLike[str], *,
               protocol: str = "synthetic", n_clips: int | None = None, seeds: Sequence[int] = (0,),
               max_frames: int | None = None, progress: bool = False) -> list[Case]:
    """Warp clips into `case_dir` (each case encoded once, then reused) and return the cases.

    Args:
        records: clips in sync with their reference; taken in id order.
        cache: feature cache (a clip's frame count comes from its cached visual features).
        case_dir: where the warped videos go.
        protocol: ``synthetic`` (one kind per clip, in turn) or ``real`` (every `REAL_KINDS` kind
            and seed per clip of at least `MIN_CLIP_FRAMES`), see the module docstring.
        n_clips: at most this many usable clips (None: all).
        seeds: warp seeds (synthetic: the first is the base seed).
        max_frames: warp only the first frames of each clip (synthetic; None: whole clips).
        progress: tqdm bars.

    Raises:
        AvsyncError: an unknown protocol, or no usable clip.
    """
    if protocol not in PROTOCOLS:
        raise AvsyncError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    folder = Path(case_dir)
    folder.mkdir(parents=True, exist_ok=True)
    shortest = MIN_FRAMES if protocol == "synthetic" else MIN_CLIP_FRAMES
    planned: list[tuple[Case, ClipRecord]] = []
    used = 0
    for record in sorted(records, key=lambda r: r.id):
        if n_clips is not None and used == n_clips:
            break
        try:
            n_frames = len(cache.visual(record.video))
        except MediaError:
            continue
        if max_frames is not None:
            n_frames = min(n_frames, max_frames)
        if n_frames < shortest:
            continue
        if protocol == "synthetic":
            kind, seed = WARP_KINDS[used % len(WARP_KINDS)], seeds[0] * 1000 + used
            draws = [(kind, seed, make_warp(kind, n_frames, seed))]
        else:
            clip_seed = int.from_bytes(record.id.encode(), "little") % 100_000 * 100
            draws = [(kind, seed, draw_warp(kind, n_frames, clip_seed + seed)) for kind in REAL_KINDS for seed in seeds]
        for kind, seed, frame_map in draws:
            video = case_file(folder, record, frame_map, kind, seed)
            name = f"{record.id}:{kind}" if protocol == "synthetic" else f"{record.id}:{kind}:{seed}"
            planned.append((Case(name, kind, record.id, record.speaker, frame_map, video=video,
                                 reference=record.reference_audio, av_offset=record.av_offset), record))  # fmt: skip
        used += 1
    if not planned:
        raise AvsyncError(f"no usable clip (readable, at least {shortest} frames)")
    for case, record in tqdm(planned, desc="warp cases", unit="case", disable=not progress, leave=False):
        if not case.video.is_file():
            warp_video_file(record.video, case.video, case.frame_map, fps=FPS)
    return [case for case, _ in planned]


class Method(Protocol):
    """An aligner under evaluation."""

    name: str

    def align(self, features: EvalClip) -> FeatureSync | None:
        """The alignment of a warped video's features to its reference (None: the perfect constant offset)."""
        ...


@dataclass
class ModelMethod:
    """A network, through `avsync.align.analysis.sync_features` (what `avsync align` runs).

    A pair model (PosterCNN) scores only the pairs inside `pair_band`, and the DTW searches only there.
    """

    network: Any  # a torch network, or its onnxruntime counterpart (`avsync.models.runtime`)
    name: str = "model"
    dtw_config: DTWConfig | None = None
    batch_size: int = 256
    progress: bool = False

    def align(self, features: EvalClip) -> FeatureSync:
        band = pair_band(len(features)) if is_pair_model(self.network) else None
        return sync_features(features.mouth_crops, features.valid, features.log_mel, self.network,
                             landmarks=features.landmarks, dtw_config=self.dtw_config, band=band,
                             batch_size=self.batch_size, progress=self.progress)  # fmt: skip


@dataclass
class BaselineMethod:
    """Lip opening vs speech-band energy: its cost through the same `align_cost`."""

    name: str = "baseline"
    dtw_config: DTWConfig | None = None

    def align(self, features: EvalClip) -> FeatureSync:
        rows = scored_rows(features.valid)
        voiced = voiced_frames(features.log_mel)
        opening, envelope = mouth_opening(features.landmarks), speech_band_envelope(features.log_mel)
        cost = baseline_cost(opening, envelope, video_valid=rows, ref_active=voiced)
        offset = xcorr_offset(opening, envelope, max_offset=pair_band(len(rows))[2]).offset_frames  # the lags a warp can make
        return align_cost(cost, rows, voiced, landmarks=features.landmarks, offset_frames=offset, dtw_config=self.dtw_config)


@dataclass
class ConstantMethod:
    """The perfect constant-offset aligner (knows the true best constant offset)."""

    name: str = "constant"

    def align(self, features: EvalClip) -> None:
        return None


def pair_band(n_frames: int) -> tuple[float, float, int]:
    """Band ``(offset, slope, radius)`` around the diagonal that holds every warp `avsync.evaluation.warp`
    makes of a clip of ``n_frames`` (shift, tempo drift up to 10 %, one cut)."""
    return 0.0, 1.0, MAX_SHIFT + MAX_CUT_FRAMES + math.ceil(0.1 * n_frames)


def score(case: Case, method: str, sync: FeatureSync | None, runtime_s: float = 0.0) -> CaseResult:
    """Score an alignment against the case's truth (``sync=None``: the perfect constant offset)."""
    offset_true, truth, n = case.true_offset_frames, case.true_ref_index, len(case.frame_map)
    if sync is None:
        time_map = constant_time_map(offset_true / FPS, (n - 1) / FPS, FPS)
        offset_found, confidence, dtw_cost = offset_true, 0.0, 0.0
    else:
        time_map, offset_found, confidence = sync.time_map, sync.offset_frames, sync.confidence
        dtw_cost = alignment_cost(sync.cost, sync.alignment.path)
    errors = frame_errors(time_map, truth)
    offset_err = abs(offset_found - offset_true)
    retimed = retimed_fraction(time_map, n, offset_found)
    span = time_map.knots[[0, -1], 0] * FPS
    span_err = float(max(abs(span[0] - truth[0]), abs(span[1] - truth[-1])))
    return CaseResult(
        case=case.name, kind=case.kind, method=method, clip=case.clip_id, speaker=case.speaker, offset_true=offset_true,
        offset_found=float(offset_found), offset_err=float(offset_err), offset_acc=offset_accuracy([offset_found], [offset_true]),
        confidence=float(confidence), confidence_level="-" if sync is None else confidence_level(confidence), frame_err_mean=errors.mean,
        frame_err_median=errors.median, within1=errors.within1, dtw_cost=float(dtw_cost), frames=n, in_reference=case.in_reference,
        placed=float(offset_err <= PLACED_TOLERANCE_S * FPS + 1e-9), retimed=retimed, not_retimed=float(retimed < NOT_RETIMED_SHARE),
        span_err=span_err, span_ok=float(span_err <= SPAN_TOLERANCE + 1e-9),
        no_match=0.0 if sync is None else float(not is_match(confidence)), runtime_s=runtime_s, sync=sync, time_map=time_map,
    )  # fmt: skip


@dataclass
class EvalReport:
    """Results of every case and method, and the plots written.

    Attributes:
        results: one `CaseResult` per case and method.
        plots: PNG paths (cost matrix with found and true path; time map), per case and method.
    """

    results: list[CaseResult]
    plots: list[Path] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        """Method names in first-seen order."""
        return list(dict.fromkeys(r.method for r in self.results))

    def summary(self) -> dict[str, dict[str, float]]:
        """Means per method: `SUMMARY_FIELDS`, ``cases``, and ``offset_acc_shift``/``within1_<kind>``/``within1_all``."""
        out = {}
        for method in self.methods:
            rows = [r for r in self.results if r.method == method]
            entry = _means(rows)
            entry["cases"] = float(len(rows))
            entry["within1_all"] = entry["within1"]
            shift = [r.offset_acc for r in rows if r.kind == "shift"]
            entry["offset_acc_shift"] = float(np.mean(shift)) if shift else float("nan")
            for kind in dict.fromkeys(r.kind for r in rows):
                entry[f"within1_{kind}"] = float(np.mean([r.within1 for r in rows if r.kind == kind]))
            out[method] = entry
        return out

    def summary_by_kind(self) -> dict[str, dict[str, dict[str, float]]]:
        """Means of `SUMMARY_FIELDS` per method and warp kind."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for method in self.methods:
            for kind in dict.fromkeys(r.kind for r in self.results):
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


def speaker_interval(results: Sequence[CaseResult], value: str, *, kind: str | None = None, level: float = 0.95,
                     samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of a mean score, resampling whole speakers (clips when the speaker is unknown).

    Args:
        results: one method's results.
        value: a `CaseResult` field (e.g. ``offset_acc``, ``within1``).
        kind: only cases of this kind (None: all).
        level: coverage of the interval.
        samples: bootstrap resamples.
        seed: random seed.

    Returns:
        ``(low, high)``; NaN when there is no case.
    """
    groups: dict[str, list[float]] = {}
    for r in results:
        if kind is None or r.kind == kind:
            groups.setdefault(r.speaker or r.clip, []).append(float(getattr(r, value)))
    if not groups:
        return float("nan"), float("nan")
    sums = np.array([sum(v) for v in groups.values()])
    counts = np.array([len(v) for v in groups.values()])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), (samples, len(groups)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, 1 - (1 - level) / 2))


def run_evaluation(methods: Sequence[Method], cases: Sequence[Case], *, cache: FeatureCache | None = None,
                   visual: VisualParams = VisualParams(), plots_dir: str | Path | None = None,
                   time_map_plots: bool = False, progress: bool = True) -> EvalReport:
    """Align every case with every method and score it.

    Args:
        methods: the aligners (`ModelMethod`, `BaselineMethod`, `ConstantMethod`).
        cases: from `make_cases` or `make_file_cases`.
        cache: the feature cache (file cases).
        visual: how the file cases' lips are read (`VisualParams`: the landmark backend the model was trained on).
        plots_dir: write ``<case>_<method>.png`` there (cost matrix, found and true path).
        time_map_plots: also ``<case>_<method>_timemap.png`` (offset along the video, found and true).
        progress: tqdm bar over the cases.
    """
    report = EvalReport([])
    for case in tqdm(cases, desc="align", unit="case", disable=not progress, leave=False):
        features = case.features(cache, visual)
        for method in methods:
            started = time.perf_counter()
            sync = method.align(features)
            result = score(case, method.name, sync, time.perf_counter() - started)
            report.results.append(result)
            if plots_dir is None or result.sync is None:
                continue
            title = (f"{case.name} {result.method}: frame err {result.frame_err_mean:.2f}, "
                     f"within1 {result.within1:.2f}, offset err {result.offset_err:.1f}")
            stem = Path(plots_dir) / f"{case.name.replace(':', '_').replace('/', '_')}_{result.method}"
            report.plots.append(plot_alignment(result.sync.cost, result.sync.alignment.path, case.true_path, f"{stem}.png", title=title))
            if time_map_plots:
                report.plots.append(plot_time_map(result.time_map, f"{stem}_timemap.png",
                                                  true_ref_index=case.true_ref_index, title=title))
    return report


def format_table(report: EvalReport, *, by_kind: bool = False) -> str:
    """A compact text table: one row per case and method, then the means per method.

    Args:
        report: the results.
        by_kind: also the means per method and warp kind.
    """
    header = f"{'case':<30} {'method':<10} {'off.true':>8} {'off.err':>7} {'conf':>6} {'err.mean':>8} {'err.med':>7} {'within1':>7} {'dtw':>7}"
    rule = "-" * len(header)
    lines = [header, rule]
    for r in report.results:
        lines.append(f"{r.case:<30} {r.method:<10} {r.offset_true:8.1f} {r.offset_err:7.1f} {r.confidence:6.2f} "
                     f"{r.frame_err_mean:8.2f} {r.frame_err_median:7.2f} {r.within1:7.2f} {r.dtw_cost:7.2f}")
    lines.append(rule)
    lines += [_mean_line("MEAN", method, means) for method, means in report.summary().items()]
    if by_kind:
        lines.append(rule)
        lines += [_mean_line(f"MEAN {kind}", method, means)
                  for method, kinds in report.summary_by_kind().items() for kind, means in kinds.items()]
    return "\n".join(lines)


def _mean_line(label: str, method: str, means: dict[str, float]) -> str:
    return (f"{label:<30} {method:<10} {'':>8} {means['offset_err']:7.1f} {'':>6} {means['frame_err_mean']:8.2f} "
            f"{means['frame_err_median']:7.2f} {means['within1']:7.2f} {means['dtw_cost']:7.2f}   offset acc {means['offset_acc']:.2f}")


MARKDOWN_COLUMNS = (("offset_acc_shift", "offset acc (shift)"), ("within1_shift", "within 1 (shift)"),
                    ("within1_tempo", "within 1 (tempo)"), ("within1_cutfreeze", "within 1 (cut+freeze)"),
                    ("within1_all", "within 1 (all)"), ("frame_err_mean", "mean frame err"))


def format_markdown(report: EvalReport) -> str:
    """The real-protocol summary as a Markdown table: percentages with 95 % speaker-bootstrap intervals."""
    summary = report.summary()
    lines = ["| method | cases | " + " | ".join(title for _, title in MARKDOWN_COLUMNS) + " |",
             "|---" * (len(MARKDOWN_COLUMNS) + 2) + "|"]
    for method, entry in summary.items():
        rows = [r for r in report.results if r.method == method]
        cells = []
        for key, _ in MARKDOWN_COLUMNS:
            if key == "frame_err_mean":
                cells.append(f"{entry[key]:.2f}")
                continue
            if key not in entry or math.isnan(entry[key]):
                cells.append("")
                continue
            field_name, kind = ("offset_acc", "shift") if key == "offset_acc_shift" else ("within1", key.removeprefix("within1_"))
            low, high = speaker_interval(rows, field_name, kind=None if kind == "all" else kind)
            cells.append(f"{100 * entry[key]:.0f}% ({100 * low:.0f}-{100 * high:.0f})")
        lines.append(f"| {method} | {int(entry['cases'])} | " + " | ".join(cells) + " |")
    targets = [f">= {100 * TARGETS[key]:.0f}%" if key in TARGETS else "" for key, _ in MARKDOWN_COLUMNS]
    lines.append("| target | | " + " | ".join(targets) + " |")
    return "\n".join(lines)
