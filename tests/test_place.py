"""Placing a take inside a long reference before aligning it (`avsync.align.place`, `align_cost`)."""

from __future__ import annotations

import numpy as np
import pytest

from avsync.align.analysis import align_cost
from avsync.align.place import needs_placement, placement_radius, song_offset_curve
from avsync.align.robust import retimed_fraction


def window_model_cost(n: int, m: int, seed: int, *, take_start: int | None, strength: float = 1.2) -> np.ndarray:
    """A normalised cost like a window model's: noise correlated along diagonals (chance valleys
    as long as a window), and a valley along the take's true diagonal ``j = i + take_start``."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n + 16, m + 16))
    smoothed = sum(noise[k : k + n, k : k + m] for k in range(16)) / 4.0  # unit spread, 16-frame diagonal streaks
    cost = smoothed
    if take_start is not None:
        rows = np.arange(n)
        for width, depth in ((0, strength), (1, 0.6 * strength), (2, 0.3 * strength)):
            for sign in {-1, 1}:
                columns = rows + take_start + sign * width
                inside = (columns >= 0) & (columns < m)
                cost[rows[inside], columns[inside]] -= depth
    return cost


@pytest.mark.parametrize("seed", range(4))
def test_a_take_inside_a_long_song_is_placed_and_not_retimed(seed: int) -> None:
    n, m, start = 250, 3000, 1234 + 97 * seed
    cost = window_model_cost(n, m, seed, take_start=start)
    sync = align_cost(cost, np.ones(n, bool), np.ones(m, bool))
    assert abs(sync.offset_frames + start) <= 1
    assert retimed_fraction(sync.time_map, n, sync.offset_frames) < 0.02
    span = sync.time_map.knots[[0, -1], 0] * 25
    assert abs(span[0] - start) <= 2 and abs(span[1] - (start + n - 1)) <= 2  # no frame held over music the take lacks
    assert sync.alignment.ref_index.min() >= start - placement_radius(n)


def test_song_curve_normalises_by_informative_cells() -> None:
    n, m, start = 200, 2000, 700
    cost = window_model_cost(n, m, 0, take_start=start)
    voiced = np.ones(m, bool)
    voiced[start : start + 120] = False  # most of the take's music is unvoiced: few informative cells there
    cost[:, ~voiced] = 0.0
    curve = song_offset_curve(cost, np.ones(n, bool), voiced)
    assert curve.offset_frames == -start
    assert curve.offsets.min() == -(m - n // 2) and curve.offsets.max() == n // 2  # half the take on the music, at least


def test_a_take_that_starts_before_the_music_maps_outside_it() -> None:
    n, m, start = 250, 3000, -60  # the first 60 frames have no music
    cost = window_model_cost(n, m, 5, take_start=start)
    sync = align_cost(cost, np.ones(n, bool), np.ones(m, bool))
    assert abs(sync.offset_frames + start) <= 1
    assert sync.time_map.knots[0, 0] * 25 == pytest.approx(start, abs=2)
    assert (sync.alignment.ref_index >= 0).all()


def test_a_clip_covering_its_reference_is_not_placed() -> None:
    assert not needs_placement(750, 760)
    assert not needs_placement(250, 250 + 2 * placement_radius(250))
    assert needs_placement(250, 3000)


def test_a_take_too_short_to_place_is_searched_over_the_whole_song() -> None:
    n, m = 20, 3000  # fewer rows than a placement needs informative cells
    cost = window_model_cost(n, m, 1, take_start=900)
    assert song_offset_curve(cost, np.ones(n, bool), np.ones(m, bool)) is None
    sync = align_cost(cost, np.ones(n, bool), np.ones(m, bool))
    assert len(sync.time_map.knots) >= 2 and sync.estimate.offsets.min() < -(m // 2)  # the clip's own curve, not a song's
