"""Alignment that bridges what the lips cannot tell: faceless stretches, lips that do not follow
the vocal, talking over a voiceless reference.

A plain DTW path follows the cost everywhere, even where the cost carries no information, and a
trained model's cost has chance matches strong enough to lure the path off the true offset.
`robust_alignment` aligns, finds the rows whose match is no better than its shifted alternatives
(`weak_match_rows`) and the path's detours (`path_detours`), makes them uninformative and aligns
again; `silent_talk_rows` finds lips moving over a voiceless reference from the landmarks. Their
thresholds, with the cases each was chosen on, are in `avsync.align.tuning`.
"""

from __future__ import annotations

import numpy as np

from avsync.align.dtw import STEP_CUT, STEP_FREEZE, Alignment, DTWConfig, align_video
from avsync.align.timemap import OffsetEstimate, TimeMap
from avsync.align.tuning import (
    COMPETITOR_EXCLUSION,
    COMPETITOR_RADIUS,
    DETOUR_TOLERANCE,
    LIP_ACTIVITY_WINDOW,
    MATCH_WINDOW,
    MAX_DETOUR,
    MAX_SILENT_VOICED_SHARE,
    MAX_UNRELIABLE_SHARE,
    MIN_SPAN_FRAMES,
    MIN_TALK_FRAMES,
    MIN_TYPICAL_MATCH,
    MIN_WINDOW_FACE_SHARE,
    RETIMED_TOLERANCE,
    SPAN_MERGE_GAP,
    TALK_ACTIVITY_FRACTION,
    WEAK_MATCH_FRACTION,
)
from avsync.conventions import WINDOW_FRAMES
from avsync.features.landmarks import mouth_opening
from avsync.smoothing import dilate, moving_average


def scored_rows(valid: np.ndarray) -> np.ndarray:
    """Video frames whose centred 16-frame window mostly shows a usable face.

    Args:
        valid: bool [N] usable-face mask.

    Returns:
        bool [N].
    """
    share = moving_average(valid.astype(np.float64), WINDOW_FRAMES, mode="nearest")  # window i-8 .. i+7
    return valid & (share >= MIN_WINDOW_FACE_SHARE - 1e-9)


def mask_runs(mask: np.ndarray, merge_gap: int = 0, min_length: int = 1) -> list[tuple[int, int]]:
    """Runs of True as ``(start, end)`` (end exclusive), runs closer than `merge_gap` merged.

    Args:
        mask: bool [N].
        merge_gap: runs separated by fewer False frames than this become one run.
        min_length: shorter runs (after merging) are dropped.

    Returns:
        The runs, in order.
    """
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    runs: list[tuple[int, int]] = []
    for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        if runs and start - runs[-1][1] < merge_gap:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return [(start, end) for start, end in runs if end - start >= min_length]


def window_mean(values: np.ndarray, weights: np.ndarray, window: int = MATCH_WINDOW) -> np.ndarray:
    """Weighted moving mean over `window` rows (rows of weight 0 are left out).

    Args:
        values: float [N].
        weights: float or bool [N].
        window: rows averaged, centred.

    Returns:
        float64 [N]; 0 where the window holds no weight.
    """
    weights = np.asarray(weights, np.float64)
    total = moving_average(weights, window, mode="constant")
    summed = moving_average(weights * values, window, mode="constant")
    return np.where(total > 1e-9, summed / np.maximum(total, 1e-9), 0.0)


def match_margin(cost: np.ndarray, ref_index: np.ndarray, informative: np.ndarray) -> np.ndarray:
    """How clearly the path's match beats the best alternative match of the same video frames.

    The path's cost is averaged over `MATCH_WINDOW` rows; so are copies of the path shifted by
    ``COMPETITOR_EXCLUSION < |d| <= COMPETITOR_RADIUS`` reference frames (cells outside the matrix
    count 0, uninformative). The margin is the best (lowest) shifted mean minus the path's mean.
    Where the lips follow the vocal, the path sits in a valley the shifted copies miss (margin
    about the match strength); where they do not (fake talk, a static mouth), the path only found
    the luckiest noise and its shifted copies find noise about as lucky (margin near 0). A window
    model's cost is correlated along diagonals, so such noise has long spurious valleys that a
    cell-wise contrast would take for matches.

    Args:
        cost: float [N, M] normalised cost (low = match).
        ref_index: int [N] path column of each row.
        informative: bool [N] rows that carry information (others get weight 0).

    Returns:
        float64 [N], in the cost's z-units; 0 where the window has no informative row.
    """
    n, m = cost.shape
    rows = np.arange(n)
    path_mean = window_mean(cost[rows, ref_index], informative)
    best_shifted = np.full(n, np.inf)
    for shift in range(-COMPETITOR_RADIUS, COMPETITOR_RADIUS + 1):
        if abs(shift) <= COMPETITOR_EXCLUSION:
            continue
        columns = ref_index + shift
        inside = (columns >= 0) & (columns < m)
        shifted = np.where(inside, cost[rows, np.clip(columns, 0, m - 1)], 0.0)
        best_shifted = np.minimum(best_shifted, window_mean(shifted, informative))
    return np.where(window_mean(np.ones(n), informative) > 0, best_shifted - path_mean, 0.0)


def weak_match_rows(cost: np.ndarray, ref_index: np.ndarray, informative: np.ndarray) -> np.ndarray:
    """Rows where the path's match is much less distinct than the clip's typical match.

    The clip's typical margin is the median `match_margin` over informative rows. Rows whose
    margin is below `WEAK_MATCH_FRACTION` of it are flagged, unless the clip has no clear match
    at all (typical margin under `MIN_TYPICAL_MATCH`) or more than `MAX_UNRELIABLE_SHARE` of it
    would be flagged (then the whole clip is uncertain, which the confidence says).

    Args:
        cost: float [N, M] normalised cost.
        ref_index: int [N] path columns.
        informative: bool [N] rows that carry information (others are ignored).

    Returns:
        bool [N] (always False where not informative).
    """
    if informative.sum() < MATCH_WINDOW:
        return np.zeros(len(informative), bool)
    margin = match_margin(cost, ref_index, informative)
    typical = float(np.median(margin[informative]))
    if typical < MIN_TYPICAL_MATCH:
        return np.zeros(len(informative), bool)
    weak = informative & (margin < WEAK_MATCH_FRACTION * typical)
    if weak.sum() > MAX_UNRELIABLE_SHARE * informative.sum():
        return np.zeros(len(informative), bool)
    return weak


def path_detours(alignment: Alignment) -> list[tuple[int, int]]:
    """Stretches where the path leaves the offset it held and comes back to it.

    A detour starts at a cut or freeze step and ends at the first row, within `MAX_DETOUR`
    rows, whose offset ``ref_index[i] - i`` is back within `DETOUR_TOLERANCE` of the offset just
    before it (after having left it by more). An edit of the video hardly ever does that (a cut
    skips music for good, a freeze holds a frame for good; a cut and a freeze of the same length
    within 4 s would), a path does when a stretch whose lips do not follow the vocal (fake talk,
    a closed mouth between lines) matches some other part of the music by chance.

    Args:
        alignment: the path.

    Returns:
        ``(start, end)`` row ranges, end exclusive, in order.
    """
    steps = alignment.steps
    offsets = alignment.ref_index - np.arange(len(steps))
    event = np.isin(steps, (STEP_CUT, STEP_FREEZE))
    starts = np.flatnonzero(event & ~np.concatenate([[False], event[:-1]]))
    detours: list[tuple[int, int]] = []
    for start in starts.tolist():
        if start == 0 or (detours and start < detours[-1][1]):
            continue
        ahead = offsets[start : start + MAX_DETOUR + 1]
        away = np.abs(ahead - offsets[start - 1]) > DETOUR_TOLERANCE
        if not away.any():
            continue
        left = int(np.argmax(away))
        back = np.flatnonzero(~away[left:])
        if back.size:
            detours.append((start, start + left + int(back[0])))
    return detours


def lip_activity(landmarks: np.ndarray) -> np.ndarray:
    """How much the lips move: the standard deviation of the inner-lip opening over a short window.

    Args:
        landmarks: float [N, 68, 2], NaN where the frame has no face.

    Returns:
        float64 [N] (opening relative to face width, `avsync.features.landmarks.mouth_opening`) over the
        `LIP_ACTIVITY_WINDOW` frames centred on each row; 0 where the window has no face.
    """
    opening = mouth_opening(landmarks)
    seen = np.isfinite(opening)
    values = np.where(seen, opening, 0.0)
    mean = window_mean(values, seen, LIP_ACTIVITY_WINDOW)
    return np.sqrt(np.maximum(window_mean(values**2, seen, LIP_ACTIVITY_WINDOW) - mean**2, 0.0))


def silent_talk_rows(activity: np.ndarray, path_voiced: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Rows where the lips move while the reference the path aligns them to has no voice.

    Talking between lines, or miming over an instrumental break: nothing in the reference can
    match such lips, so the model's cost has nothing to say there (the reference's voiceless
    frames are uninformative), and with a weak model the margin test of `weak_match_rows` may not
    single them out either. A row is flagged when the second of reference around its aligned
    frame is voiceless (at most `MAX_SILENT_VOICED_SHARE` voiced) and its `lip_activity` reaches
    `TALK_ACTIVITY_FRACTION` of the median activity over the rows aligned to voiced reference
    frames; stretches shorter than `MIN_TALK_FRAMES` are dropped. A full mix whose accompaniment
    goes on under the talking is not voiceless by power, so there this rule does not fire.

    Args:
        activity: float [N] `lip_activity`.
        path_voiced: bool [N] whether the reference frame each row is aligned to is voiced.
        scored: bool [N] rows with a usable face (`scored_rows`).

    Returns:
        bool [N].
    """
    singing = scored & path_voiced
    flagged = np.zeros(len(scored), bool)
    if singing.sum() < MATCH_WINDOW:
        return flagged
    typical = float(np.median(activity[singing]))
    voiced_share = moving_average(path_voiced.astype(np.float64), MATCH_WINDOW, mode="nearest")
    talking = scored & (voiced_share <= MAX_SILENT_VOICED_SHARE + 1e-9) & (activity >= TALK_ACTIVITY_FRACTION * typical)
    for start, end in mask_runs(talking, SPAN_MERGE_GAP, MIN_TALK_FRAMES):
        flagged[start:end] = True
    return flagged & scored


def robust_alignment(cost: np.ndarray, informative: np.ndarray, config: DTWConfig | None = None, passes: int = 2) -> tuple[np.ndarray, Alignment, np.ndarray]:
    """DTW that bridges the stretches where the lips do not follow the vocal.

    Each pass aligns, flags the rows `weak_match_rows` finds and the path's detours
    (`path_detours`: a trained model's cost has spurious matches strong enough to lure the path
    off through a cut and back through a freeze, measured on synthetic songs), widened by half a
    `MATCH_WINDOW` on each side (the one-second average blurs a stretch's edges, and unflagged
    fringe rows of false lip motion would still lure the path off through the free bridge), makes
    them uninformative (0) and aligns again; flags accumulate over the passes. When they end up
    covering more than `MAX_UNRELIABLE_SHARE` of the informative rows, nothing is flagged and the
    first alignment stands (a clean synthetic song whose typical margin was just above
    `MIN_TYPICAL_MATCH` had 34% weak rows, 61% after widening).

    Args:
        cost: float [N, M] normalised cost, 0 on uninformative rows.
        informative: bool [N] rows that carry information.
        config: DTW constraints.
        passes: detection passes.

    Returns:
        The cleaned cost (float64 [N, M]), its alignment, and bool [N] the rows flagged as not
        following the vocal.
    """
    cleaned = np.array(cost, dtype=np.float64, copy=True)
    alignment = first_alignment = align_video(cleaned, config)
    flagged = np.zeros(len(cleaned), bool)
    for _ in range(passes):
        unflagged = informative & ~flagged
        weak = weak_match_rows(cleaned, alignment.ref_index, unflagged)
        for start, end in path_detours(alignment):
            weak[start:end] |= unflagged[start:end]
        if not weak.any():
            break
        weak = dilate(weak, MATCH_WINDOW // 2) & informative & ~flagged
        flagged |= weak
        cleaned[weak] = 0.0
        alignment = align_video(cleaned, config)
    if flagged.sum() > MAX_UNRELIABLE_SHARE * informative.sum():
        # Widening and later passes grew the flags past the share that can be singled out: the
        # clip as a whole is uncertain (its confidence says so), so nothing is singled out.
        return np.array(cost, dtype=np.float64, copy=True), first_alignment, np.zeros(len(cleaned), bool)
    return cleaned, alignment, flagged


def path_offset_frames(alignment: Alignment, reliable: np.ndarray) -> float:
    """Best constant offset of a path in frames: the median of ``i - ref_index[i]`` over reliable rows.

    Args:
        alignment: the path.
        reliable: bool [N]; all rows are used when none is reliable.
    """
    offsets = np.arange(len(alignment.ref_index)) - alignment.ref_index
    return float(np.median(offsets[reliable] if reliable.any() else offsets))


def offset_confidence(estimate: OffsetEstimate, offset_frames: float) -> float:
    """How far the chosen offset stands out among all offsets: the median of the offset curve minus
    its value there, in units of the curve's robust spread (1.4826 x its median absolute deviation);
    0 when the offset scores worse than the median offset.

    SyncNet's median-minus-minimum, measured against how much the curve varies anyway: on real
    faces this separated right from wrong offsets better (area under the ROC 0.74 against 0.69 on
    114 unseen warped cases; the 20 most confident cases 95% right against 80%).

    Args:
        estimate: the curve from `avsync.align.timemap.estimate_offset`.
        offset_frames: the chosen offset (frames); the curve's nearest candidate is used.
    """
    nearest = int(np.argmin(np.abs(estimate.offsets - offset_frames)))
    curve = estimate.curve
    spread = 1.4826 * float(np.median(np.abs(curve - np.median(curve))))
    return max(0.0, float(np.median(curve) - curve[nearest]) / max(spread, 1e-9))


def retimed_fraction(time_map: TimeMap, n_frames: int, offset_frames: float) -> float:
    """Share of video frames the map puts more than `RETIMED_TOLERANCE` frames off the constant offset.

    Args:
        time_map: the map (25 fps).
        n_frames: video frames N.
        offset_frames: the constant offset in frames.
    """
    constant = np.arange(n_frames) - offset_frames
    return float((np.abs(time_map.ref_frames(n_frames) - constant) > RETIMED_TOLERANCE + 1e-9).mean())


def unreliable_spans(reasons: list[str], fps: float) -> list[list[float | str]]:
    """``[[t_video_start, t_video_end, reason], ...]`` from per-frame reasons.

    Args:
        reasons: per video frame ``""`` or a reason.
        fps: frame rate of the frames.
    """
    spans: list[list[float | str]] = []
    labels = np.array(reasons, dtype=object)
    for reason in sorted({r for r in reasons if r}):
        for start, end in mask_runs(labels == reason, SPAN_MERGE_GAP, MIN_SPAN_FRAMES):
            spans.append([round(start / fps, 3), round(end / fps, 3), reason])
    return sorted(spans, key=lambda span: span[0])


def warp_gain(cost: np.ndarray, time_map: TimeMap, offset_frames: float, informative: np.ndarray) -> float:
    """How much cheaper the time map is than the constant offset, per informative frame.

    Args:
        cost: float [N, M] normalised cost.
        time_map: the smoothed path (`avsync.align.timemap.path_to_time_map`), at the cost's rate.
        offset_frames: the constant offset (frames, positive: video late).
        informative: bool [N] rows that carry information.

    Returns:
        The mean cost along the constant-offset line minus the mean cost along the map, over the
        informative rows that the line keeps inside the reference (inf when none: the constant
        offset leaves the music, only a warp can cover the video).
    """
    n, m = cost.shape
    rows = np.arange(n)
    columns = np.round(rows - offset_frames).astype(np.int64)
    used = informative & (columns >= 0) & (columns < m)
    if not used.any():
        return float("inf")
    mapped = np.clip(np.round(time_map.ref_frames(n)).astype(np.int64), 0, m - 1)
    return float(cost[rows[used], columns[used]].mean() - cost[rows[used], mapped[used]].mean())
