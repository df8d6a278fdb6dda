"""Where a take sits in a long reference, found before any warp.

A take (a few seconds of a singer miming) may lie anywhere in a song 5-50 times its length. A DTW
path over the whole song has thousands of columns to wander through: with cuts allowed it
collects chance matches of a weak cost far from the take's place and holds the first and last
frames over music the take never shows. So the take is placed first, by the offset curve over
the whole song (every constant offset that keeps at least half the take on the music), and the
path is then searched only in a band around the placed line (`placement_band`).

The curve scores a diagonal by the sum of its informative cells divided by the square root of
their number: on a normalised cost (`avsync.align.cost`: median 0, spread 1, uninformative cells
0) this is the same statistic for a diagonal of 40 voiced frames and one of 600, so partial
overlaps and instrumental stretches neither win nor lose by their length. The chosen offset's
confidence is then how far it stands out from the curve's own distribution
(`avsync.align.robust.offset_confidence`), over every offset the song allows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from avsync.align.timemap import OffsetEstimate, diagonal_sums
from avsync.align.tuning import BAND_EDIT_FRAMES, BAND_TEMPO, MIN_INFORMATIVE_CELLS, MIN_TAKE_OVERLAP, NO_MATCH_CONFIDENCE
from avsync.conventions import FPS


def placement_radius(n_frames: int) -> int:
    """Half-width (reference frames) of the band around a placed take of ``n_frames`` video frames."""
    return BAND_EDIT_FRAMES + math.ceil(BAND_TEMPO * n_frames)


def needs_placement(n_frames: int, n_ref: int) -> bool:
    """Whether the reference is long enough around the take that placing it first narrows the search.

    Args:
        n_frames: video frames N.
        n_ref: reference frames M.
    """
    return n_ref > n_frames + 2 * placement_radius(n_frames)


def informative_counts(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Informative cells on every diagonal ``d = i - j``.

    Args:
        rows: bool [N] informative video frames.
        columns: bool [M] informative reference frames.

    Returns:
        float64 [N + M - 1], the count for ``d`` at index ``d + M - 1``.
    """
    return np.correlate(rows.astype(np.float64), columns.astype(np.float64), mode="full")


def song_offset_curve(cost: np.ndarray, rows: np.ndarray, columns: np.ndarray, fps: float = FPS) -> OffsetEstimate | None:
    """The offset curve of a take over the whole reference, lower = better.

    Args:
        cost: float [N, M] normalised cost, 0 on uninformative cells.
        rows: bool [N] informative video frames (a usable face).
        columns: bool [M] informative reference frames (voiced).
        fps: frame rate of both.

    Returns:
        The `OffsetEstimate` over every offset ``d = i - j`` that keeps `MIN_TAKE_OVERLAP` of the
        take on the reference with `MIN_INFORMATIVE_CELLS`: ``curve[d] = sum / sqrt(count)`` of the
        diagonal's informative cells; ``confidence`` as `estimate_offset`'s, on this curve. None
        when no offset has that many informative cells (a take too short, or hardly a face in it).
    """
    n, m = cost.shape
    offsets = np.arange(-(m - 1), n)
    sums = diagonal_sums(np.ascontiguousarray(cost, dtype=np.float64))
    counts = informative_counts(rows, columns)
    overlap = np.minimum(n, offsets + m) - np.maximum(0, offsets)
    keep = (overlap >= MIN_TAKE_OVERLAP * n) & (counts >= MIN_INFORMATIVE_CELLS)
    if not keep.any():
        return None
    curve = sums[keep] / np.sqrt(counts[keep])
    offsets = offsets[keep].astype(np.int64)
    best = int(np.argmin(curve))
    return OffsetEstimate(offset_frames=int(offsets[best]), offset_s=float(offsets[best] / fps),
                          confidence=float(np.median(curve) - curve[best]), offsets=offsets, curve=curve)  # fmt: skip


def near_candidates(song: OffsetEstimate, candidates: Sequence[float], radius: int, fps: float = FPS) -> OffsetEstimate:
    """The song curve's best offset within `radius` frames of one of `candidates`; the curve itself unchanged.

    The candidates are where the take's own sound puts it (`avsync.align.audio_match`); the lips then
    choose the performance's own offset near one of them, and their confidence is still read off
    every offset the song allows (`avsync.align.robust.offset_confidence` on the returned curve).

    Args:
        song: from `song_offset_curve`.
        candidates: offsets ``i - j`` (frames, positive: video late).
        radius: frames either side of a candidate.
        fps: frame rate of the offsets.

    Returns:
        `song` with its best offset chosen among those near a candidate (unchanged when the curve
        has none near any).
    """
    near = np.zeros(len(song.offsets), dtype=bool)
    for candidate in candidates:
        near |= np.abs(song.offsets - candidate) <= radius
    if not near.any():
        return song
    best = int(np.flatnonzero(near)[np.argmin(song.curve[near])])
    offset = int(song.offsets[best])
    return replace(song, offset_frames=offset, offset_s=offset / fps, confidence=float(np.median(song.curve) - song.curve[best]))


def placement_band(offset_frames: float, n_frames: int) -> tuple[float, float, int]:
    """The DTW band ``(band_offset, slope, radius)`` around a take placed at ``offset_frames``.

    Args:
        offset_frames: the placed constant offset ``i - j`` (frames, positive: video late).
        n_frames: video frames N.
    """
    return -float(offset_frames), 1.0, placement_radius(n_frames)


def is_match(confidence: float) -> bool:
    """Whether an alignment's best offset stands out enough to place the video (`NO_MATCH_CONFIDENCE`)."""
    return confidence >= NO_MATCH_CONFIDENCE
