"""One analysis for every caller: a video's features against a reference's, to the time map.

`align_cost` takes a normalised cost matrix (rows = video frames, columns = reference frames,
25 fps; a model's from `avsync.align.cost.cost_matrix`, or the classical baseline's) through the
robust alignment (`avsync.align.robust`) to a `FeatureSync`: the path, the time map, the constant
offset over the reliable rows and its confidence. `sync_features` is the same from a network and
the features. `avsync align`, `avsync eval`, the per-epoch callback and the real-clip evaluation all
go through here, so the numbers the evaluations report are those of the shipped aligner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from avsync.align.cost import cost_matrix
from avsync.align.dtw import Alignment, DTWConfig, align_video
from avsync.align.place import near_candidates, needs_placement, placement_band, song_offset_curve
from avsync.align.robust import (
    lip_activity,
    offset_confidence,
    path_offset_frames,
    robust_alignment,
    scored_rows,
    silent_talk_rows,
    warp_gain,
)
from avsync.align.timemap import (
    OffsetEstimate,
    TimeMap,
    constant_time_map,
    diagonal_sums,
    estimate_offset,
    path_to_time_map,
)
from avsync.align.tuning import CAMERA_LIPS_RADIUS, COMPETITOR_RADIUS, MIN_WARP_GAIN, PLACED_MIN_WARP_GAIN
from avsync.conventions import FPS, MELS_PER_FRAME
from avsync.errors import AvsyncError
from avsync.features.audio import voiced_frames
from avsync.models import is_pair_model

REASON_NO_FACE = "no face"
REASON_NO_MATCH = "lips do not follow the vocal"


@dataclass
class FeatureSync:
    """The alignment of a video's mouth crops to a reference's log-mel (`sync_features`).

    Attributes:
        cost: float64 [N, M] normalised cost with the unreliable rows made uninformative (0).
        alignment: the DTW path over `cost`.
        time_map: the smoothed path, or the constant offset when the path gains too little over it; 25 fps.
        estimate: the offset curve (SyncNet style) over `cost`.
        offset_frames: the best constant offset in 25 fps frames (positive: video late).
        confidence: `offset_confidence` of that offset.
        scored: bool [N] rows whose window mostly shows a face (`scored_rows`).
        weak: bool [N] rows where the lips do not follow the vocal (`robust_alignment`).
        timings: seconds spent per stage (``cost``: the network's cost matrix, ``dtw``: the
            robust alignment), when `sync_features` made it.
    """

    cost: np.ndarray
    alignment: Alignment
    time_map: TimeMap
    estimate: OffsetEstimate
    offset_frames: float
    confidence: float
    scored: np.ndarray
    weak: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def unreliable(self) -> np.ndarray:
        """bool [N] rows the path bridges (no face, or lips not following the vocal)."""
        return ~self.scored | self.weak

    def reasons(self) -> list[str]:
        """Per row ``""`` or why it is unreliable (`REASON_NO_FACE`, `REASON_NO_MATCH`)."""
        return [REASON_NO_FACE if not scored else REASON_NO_MATCH if weak else ""
                for scored, weak in zip(self.scored.tolist(), self.weak.tolist(), strict=True)]  # fmt: skip


def align_cost(
    raw_cost: np.ndarray,
    scored: np.ndarray,
    ref_voiced: np.ndarray,
    *,
    landmarks: np.ndarray | None = None,
    offset_frames: float | None = None,
    fps: float = FPS,
    dtw_config: DTWConfig | None = None,
    candidates: Sequence[float] | None = None,
) -> FeatureSync:
    """Robust alignment of a normalised cost matrix to the time map, offset and confidence.

    The time map is the smoothed path only when it beats the constant offset clearly
    (`avsync.align.tuning.MIN_WARP_GAIN`); otherwise it is the constant offset. A video much
    shorter than its reference (a take somewhere in a song, `avsync.align.place.needs_placement`)
    is placed first by the whole song's offset curve and aligned inside a band there
    (`_align_placed`). When the video is too long to fit on the reference even at the slowest
    tempo the DTW allows, the reference is aligned inside the video instead
    (`_align_music_inside_video`).

    Args:
        raw_cost: float [N, M] normalised cost (low = match), 0 on uninformative rows and columns.
        scored: bool [N] rows with a usable face (`avsync.align.robust.scored_rows`).
        ref_voiced: bool [M] voiced reference frames (`avsync.features.audio.voiced_frames`).
        landmarks: float [N, 68, 2] of the video (NaN where no face); when given, stretches whose
            lips move over a voiceless reference are flagged and bridged too (`silent_talk_rows`).
        offset_frames: the constant offset when the method finds it another way (the classical
            baseline's cross-correlation); None: the median path offset over the reliable rows.
        fps: frame rate of both.
        dtw_config: DTW constraints (default `DTWConfig()`: subsequence, tempo 0.9-1.1, cuts and
            freezes allowed).
        candidates: offsets (frames) where something other than the lips puts a take (its own
            sound, `avsync.align.audio_match`): a placed take is placed near the best of them
            (`avsync.align.place.near_candidates`, `avsync.align.tuning.CAMERA_LIPS_RADIUS`);
            None or empty: by the lips alone. Clips covering their reference ignore them.
    """
    config = dtw_config or DTWConfig()
    n, m = raw_cost.shape
    if config.band_radius is None and n * config.min_rate > m:
        # even at its slowest the video cannot fit on the reference: the music lies inside the video
        return _align_music_inside_video(raw_cost, scored, offset_frames, fps, dtw_config)
    if config.band_radius is None and needs_placement(n, m):
        song = song_offset_curve(raw_cost, scored, ref_voiced, fps)
        if song is not None and candidates:
            song = near_candidates(song, candidates, CAMERA_LIPS_RADIUS, fps)
        if song is not None:  # else too little of a face to place: the path searches the whole song
            return _align_placed(raw_cost, scored, ref_voiced, landmarks, offset_frames, fps, config, song)
    return _align_path(raw_cost, scored, ref_voiced, landmarks, offset_frames, fps, config, MIN_WARP_GAIN)


def _align_path(raw_cost: np.ndarray, scored: np.ndarray, ref_voiced: np.ndarray, landmarks: np.ndarray | None,
                offset_frames: float | None, fps: float, config: DTWConfig, min_warp_gain: float) -> FeatureSync:
    """The robust DTW path over the whole cost (or the config's band), its time map, offset and confidence;
    the map replaces the constant offset only when it gains `min_warp_gain` over it (`warp_gain`)."""
    cost, alignment, weak = robust_alignment(raw_cost, scored, config)
    if landmarks is not None:
        talking = silent_talk_rows(lip_activity(landmarks), ref_voiced[alignment.ref_index], scored) & ~weak
        if talking.any():
            weak |= talking
            cost[talking] = 0.0
            alignment = align_video(cost, config)
    if offset_frames is None:
        offset_frames = path_offset_frames(alignment, scored & ~weak)
    estimate = estimate_offset(cost, fps)
    time_map = path_to_time_map(alignment, fps)
    if warp_gain(cost, time_map, offset_frames, scored & ~weak) < min_warp_gain:
        time_map = constant_time_map(offset_frames / fps, (len(cost) - 1) / fps, fps)
    return FeatureSync(
        cost=cost, alignment=alignment, time_map=time_map, estimate=estimate,
        offset_frames=offset_frames, confidence=offset_confidence(estimate, offset_frames), scored=scored, weak=weak,
    )  # fmt: skip


def _align_placed(raw_cost: np.ndarray, scored: np.ndarray, ref_voiced: np.ndarray, landmarks: np.ndarray | None,
                  offset_frames: float | None, fps: float, config: DTWConfig, song: OffsetEstimate) -> FeatureSync:
    """Place a take in a long reference by the song's offset curve, then align it inside a band there.

    The path, its time map and the bridging of `_align_path` run on the reference columns around
    the placed band (`avsync.align.place.placement_band`, widened by the competitors that
    `avsync.align.robust.match_margin` compares; columns beyond the reference's ends are
    uninformative, so a take that starts before the music or runs past it maps there). The
    offset's confidence is read off the whole song's curve: how far the placement stands out
    among every offset the song allows.
    """
    n, m = raw_cost.shape
    band_offset, slope, radius = placement_band(song.offset_frames if offset_frames is None else offset_frames, n)
    first = math.floor(band_offset - radius) - COMPETITOR_RADIUS
    last = math.ceil(band_offset + slope * (n - 1) + radius) + COMPETITOR_RADIUS
    inside = slice(max(first, 0), min(last, m - 1) + 1)  # the window's columns that are on the reference
    window = np.zeros((n, last - first + 1))
    window[:, inside.start - first : inside.stop - first] = raw_cost[:, inside]
    window_voiced = np.zeros(last - first + 1, bool)
    window_voiced[inside.start - first : inside.stop - first] = ref_voiced[inside]
    band = replace(config, band_offset=band_offset - first, band_slope=slope, band_radius=radius)
    sync = _align_path(window, scored, window_voiced, landmarks, None if offset_frames is None else offset_frames + first,
                       fps, band, PLACED_MIN_WARP_GAIN)  # fmt: skip
    cost = np.array(raw_cost, dtype=np.float64, copy=True)
    cost[:, inside] = sync.cost[:, inside.start - first : inside.stop - first]
    cost[sync.weak | ~scored] = 0.0
    ref_index = np.clip(sync.alignment.ref_index + first, 0, m - 1)
    alignment = Alignment(ref_index, sync.alignment.steps, sync.alignment.total_cost)
    time_map = TimeMap(knots=sync.time_map.knots + np.array([first / fps, 0.0]), fps=fps)
    placed = sync.offset_frames - first
    return FeatureSync(
        cost=cost, alignment=alignment, time_map=time_map, estimate=song, offset_frames=placed,
        confidence=offset_confidence(song, placed), scored=scored, weak=sync.weak,
    )  # fmt: skip


def _align_music_inside_video(raw_cost: np.ndarray, scored: np.ndarray, offset_frames: float | None, fps: float,
                              dtw_config: DTWConfig | None) -> FeatureSync:
    """Align a reference shorter than the video: each reference frame to a video frame.

    A video longer than its music cannot put every frame on the music without inventing cuts, so
    the roles swap: the DTW runs over the transposed cost (subsequence along the video), and the
    time map continues at the same speed beyond the music's ends (reference times below 0 or past
    its end: video that has no music). The bridging heuristics of `robust_alignment` look at video
    rows and are not applied here.
    """
    n, m = raw_cost.shape
    cost = np.array(raw_cost, dtype=np.float64, copy=True)
    inside = align_video(np.ascontiguousarray(cost.T), dtw_config)  # rows: reference frames
    swapped = path_to_time_map(inside, fps).knots[:, ::-1]  # (t_ref, t_video)
    first, last = swapped[0], swapped[-1]
    end = (n - 1) / fps
    knots = [np.array([first[0] - first[1], 0.0])] if first[1] > 0 else []
    knots += list(swapped)
    if last[1] < end:
        knots.append(np.array([last[0] + end - last[1], end]))
    time_map = TimeMap(knots=np.array(knots), fps=fps)
    ref_index = np.round(time_map.ref_time(np.arange(n) / fps) * fps).astype(np.int64)
    alignment = Alignment(np.clip(ref_index, 0, m - 1), np.zeros(n, np.int8), float(inside.total_cost))
    if offset_frames is None:
        offset_frames = path_offset_frames(alignment, (ref_index >= 0) & (ref_index < m) & scored)
    estimate = estimate_offset(cost, fps)
    return FeatureSync(
        cost=cost, alignment=alignment, time_map=time_map, estimate=estimate, offset_frames=offset_frames,
        confidence=offset_confidence(estimate, offset_frames), scored=scored, weak=np.zeros(n, bool),
    )  # fmt: skip


def load_kernels() -> None:
    """Load the compiled kernels `align_cost` runs (the DTW's and the offset curve's: numba's cache,
    compiled on a first run). Their first call in a process costs 0.2-0.3 s of CPU; `avsync align`
    spends it while the lips are still being read, not after them."""
    cost = np.zeros((8, 16))
    align_video(cost, DTWConfig())
    diagonal_sums(cost)


def sync_features(
    mouth_crops: np.ndarray,
    valid: np.ndarray,
    log_mel: np.ndarray,
    network: Any,
    *,
    landmarks: np.ndarray | None = None,
    fps: float = FPS,
    dtw_config: DTWConfig | None = None,
    band: tuple[float, float, int] | None = None,
    candidates: Sequence[float] | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> FeatureSync:
    """Align a video's features to a reference's with a network: its cost, then `align_cost`.

    Args:
        mouth_crops: uint8 [N, 64, 64] at `fps`.
        valid: bool [N] usable-face mask.
        log_mel: float32 [80, 4M] of the reference.
        network: the model (`avsync.models.checkpoints.LoadedModel.network`: a torch network or
            its onnxruntime counterpart, `avsync.models.runtime`).
        landmarks: float [N, 68, 2] of the video, NaN where no face (see `align_cost`); networks
            that read lip geometry (`avsync.models.video_input`) get it from them.
        fps: frame rate of both (the model's 25 fps).
        dtw_config: DTW constraints (see `align_cost`).
        band: ``(offset, slope, radius)``: score (a pair model) and search only the cells within
            `radius` of ``j = offset + slope * i``; None: every cell.
        candidates: where the take's own sound puts it (see `align_cost`).
        batch_size: windows or pairs per forward pass.
        progress: show a progress bar while scoring.

    Raises:
        AvsyncError: a pair model asked to score too many pairs.
    """
    started = time.perf_counter()
    rows = scored_rows(valid)
    if band is not None:
        dtw_config = replace(dtw_config or DTWConfig(), band_offset=band[0], band_slope=band[1], band_radius=band[2])
    ref_voiced = voiced_frames(log_mel)
    try:
        raw_cost = cost_matrix(network, mouth_crops, log_mel, landmarks=landmarks, video_valid=rows, ref_active=ref_voiced,
                               band=band, batch_size=batch_size, progress=progress)
    except ValueError as exc:  # a pair model without a band on long inputs
        if not is_pair_model(network):
            raise
        shape = f"{len(valid)}x{log_mel.shape[1] // MELS_PER_FRAME}"
        raise AvsyncError(f"{type(network).__name__} cannot align {shape} frames ({exc}); use a TwoTower checkpoint") from exc
    scored = time.perf_counter()
    sync = align_cost(raw_cost, rows, ref_voiced, landmarks=landmarks, fps=fps, dtw_config=dtw_config, candidates=candidates)
    sync.timings = {"cost": scored - started, "dtw": time.perf_counter() - scored}
    return sync
