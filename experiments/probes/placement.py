"""Probe: how a take is placed in a long song, on the takes benchmark's cases (docs/takes.md).

Measures what `avsync.align.place` rests on: the shipped model's cost of each case of
``avsync eval --protocol takes`` (the synthetic songs of ``make eval-takes``, seeds 0-1: the cases
the settings were chosen on), then the analysis with

* the placement statistic: the whole take's diagonal (what ships) or 4-s chunks each free to drift
  by 10 % of its distance from the take's centre (for tempo-drifting takes), each on the cost as it
  is or with every reference column's median over the take's rows taken off (hub columns);
* `PLACED_MIN_WARP_GAIN` among 0.2 / 0.4 / 0.6 / 1.0;
* the no-match threshold among 2.4-3.4.

Usage: python experiments/probes/placement.py [TAKES_MANIFEST] [CACHE]   (defaults: data/takes/manifest.jsonl, cache)
"""

from __future__ import annotations

import sys
from unittest import mock

import numpy as np
from scipy.ndimage import minimum_filter1d

import avsync.align.analysis as analysis
from avsync.align.cost import cost_matrix
from avsync.align.place import informative_counts, song_offset_curve
from avsync.align.tuning import MIN_INFORMATIVE_CELLS, MIN_TAKE_OVERLAP
from avsync.align.robust import retimed_fraction, scored_rows
from avsync.align.timemap import OffsetEstimate, diagonal_sums
from avsync.evaluation.metrics import frame_errors
from avsync.evaluation.takes import make_take_cases
from avsync.features.audio import voiced_frames
from avsync.features.cache import FeatureCache
from avsync.features.manifest import read_manifest
from avsync.models.checkpoints import load_model

CHUNK = 100


def chunked_curve(cost: np.ndarray, rows: np.ndarray, columns: np.ndarray, fps: float = 25.0) -> OffsetEstimate | None:
    """The song curve from 4-s chunks, each taking its best offset within 10 % of its distance from the centre."""
    n, m = cost.shape
    if n < 2 * CHUNK:
        return song_offset_curve(cost, rows, columns, fps)
    offsets = np.arange(-(m - 1), n)
    edges = np.linspace(0, n, max(1, round(n / CHUNK)) + 1).astype(int)
    sums = np.zeros(n + m - 1)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        chunk = np.zeros(n + m - 1)
        chunk[a : a + b - a + m - 1] = diagonal_sums(np.ascontiguousarray(cost[a:b]))
        radius = int(np.ceil(0.1 * abs((a + b - 1) / 2 - (n - 1) / 2))) + 1
        sums += minimum_filter1d(chunk, 2 * radius + 1, mode="nearest")
    counts = informative_counts(rows, columns)
    overlap = np.minimum(n, offsets + m) - np.maximum(0, offsets)
    keep = (overlap >= MIN_TAKE_OVERLAP * n) & (counts >= MIN_INFORMATIVE_CELLS)
    if not keep.any():
        return None
    curve, offsets = sums[keep] / np.sqrt(counts[keep]), offsets[keep]
    best = int(np.argmin(curve))
    return OffsetEstimate(int(offsets[best]), offsets[best] / fps, float(np.median(curve) - curve[best]), offsets, curve)


def centred(place):
    """`place` on the cost less each reference column's median over the take's usable rows."""
    def curve(cost, rows, columns, fps=25.0):
        medians = np.median(cost[rows], axis=0) if rows.any() else np.zeros(cost.shape[1])
        return place(np.where(rows[:, None] & columns[None, :], cost - medians[None, :], 0.0), rows, columns, fps)
    return curve


def main(manifest: str = "data/takes/manifest.jsonl", cache_dir: str = "cache") -> None:
    cache = FeatureCache(cache_dir)
    network = load_model(None, "cpu").network
    records = read_manifest(manifest)
    cases = []
    for case in make_take_cases(records, records, cache, f"{cache_dir}/cases", real=False, seeds=(0, 1)):
        features = case.features(cache)
        rows, voiced = scored_rows(features.valid), voiced_frames(features.log_mel)
        cost = cost_matrix(network, features.mouth_crops, features.log_mel, landmarks=features.landmarks, video_valid=rows,
                           ref_active=voiced)  # fmt: skip
        cases.append((case, cost, rows, voiced, features.landmarks))
        print(f"{case.name}: {cost.shape}", file=sys.stderr)
    places = {"whole take": song_offset_curve, "chunks": chunked_curve, "whole take, centred": centred(song_offset_curve),
              "chunks, centred": centred(chunked_curve)}  # fmt: skip
    for name, place in places.items():
        for gain in (0.2, 0.4, 0.6, 1.0):
            with mock.patch.object(analysis, "song_offset_curve", place), mock.patch.object(analysis, "PLACED_MIN_WARP_GAIN", gain):
                found = [(case, analysis.align_cost(cost, rows, voiced, landmarks=lm)) for case, cost, rows, voiced, lm in cases]
            placed = {kind: [abs(s.offset_frames - c.true_offset_frames) <= 1 for c, s in found if c.kind in kinds]
                      for kind, kinds in (("plain", ("plain",)), ("warped", ("tempo", "cutfreeze")), ("overhang", ("before", "past")))}
            right = [(c, s) for c, s in found if c.in_reference and abs(s.offset_frames - c.true_offset_frames) <= 1]
            kept = [retimed_fraction(s.time_map, len(c.frame_map), s.offset_frames) < 0.02 for c, s in right
                    if c.kind in ("plain", "before", "past")]
            warped = [frame_errors(s.time_map, c.true_ref_index).within1 for c, s in found if c.kind in ("tempo", "cutfreeze")]
            print(f"{name:20s} gain {gain}: placed +-1 " + ", ".join(f"{k} {np.mean(v):.2f} ({len(v)})" for k, v in placed.items())
                  + f"; unwarped placed right under 2% re-timed {np.mean(kept):.2f} ({len(kept)}); warped frames within +-1 {np.mean(warped):.2f}")
    found = [(case, analysis.align_cost(cost, rows, voiced, landmarks=lm)) for case, cost, rows, voiced, lm in cases]
    for threshold in (2.4, 2.6, 2.8, 3.0, 3.2, 3.4):
        right = [s.confidence < threshold for c, s in found
                 if c.in_reference and len(c.frame_map) >= 125 and abs(s.offset_frames - c.true_offset_frames) <= 1]
        wrong = [s.confidence < threshold for c, s in found if c.in_reference and abs(s.offset_frames - c.true_offset_frames) > 1]
        other = [s.confidence < threshold for c, s in found if not c.in_reference]
        print(f"no match below {threshold}: right takes >= 5 s {np.mean(right):.2f} ({len(right)}), misplaced {np.mean(wrong):.2f} "
              f"({len(wrong)}), other song {np.mean(other):.2f} ({len(other)})")


if __name__ == "__main__":
    main(*sys.argv[1:])
