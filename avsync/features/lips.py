"""Lip geometry from the 68 landmarks: a visual input that does not depend on the face's looks.

Pixels of a mouth carry the speaker's skin, teeth, beard, lighting and camera; a model trained on
the few real faces there are learns those and does not carry to new people. The shape of the lips
does. Per frame, the stable points (nose bridge and ridge, eye corners) are aligned by a
similarity transform onto the clip's mean stable shape at unit inter-ocular distance, which takes
out head position, roll and scale; the 20 mouth points are mapped the same way and the clip's
median mouth (the speaker's resting shape) is subtracted. Four distances (inner and outer
opening, outer and inner width) are added, then the first differences of all 44 values (lips move
before the sound they make). Frames without a face are interpolated from their neighbours, and
every column is standardised over the clip's valid frames, so the model sees each speaker's own
range of motion.
"""

from __future__ import annotations

import numpy as np

STABLE_POINTS = (27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
"""Nose bridge and ridge, outer and inner eye corners (0-based iBUG indices)."""
MOUTH_POINTS = tuple(range(48, 68))
"""Outer (48-59) and inner (60-67) lip contour."""
DISTANCES = ((14, 18), (3, 9), (0, 6), (12, 16))
"""Mouth-point pairs (indices into `MOUTH_POINTS`): inner opening 62-66, outer opening 51-57,
outer width 48-54, inner width 60-64."""
LIP_DIM = 2 * (2 * len(MOUTH_POINTS) + len(DISTANCES))
"""Values per frame: 40 coordinates and 4 distances, and their first differences (88)."""


def _similarity_to(reference: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame similarity transforms (Umeyama) mapping `points` onto `reference`.

    Args:
        reference: float [K, 2].
        points: float [T, K, 2].

    Returns:
        scale [T], rotation [T, 2, 2], translation [T, 2] with ``reference ~ scale * R @ p + t``.
    """
    source_mean = points.mean(axis=1)
    centred_source = points - source_mean[:, None]
    reference_mean = reference.mean(axis=0)
    centred_reference = reference - reference_mean
    covariance = np.einsum("kd,tke->tde", centred_reference, centred_source) / points.shape[1]
    u, sigma, vt = np.linalg.svd(covariance)
    sign = np.ones((len(points), 2))
    sign[np.linalg.det(u @ vt) < 0, 1] = -1.0
    rotation = u @ (sign[:, :, None] * vt)
    variance = (centred_source**2).sum(axis=2).mean(axis=1)
    scale = (sigma * sign).sum(axis=1) / np.maximum(variance, 1e-12)
    translation = reference_mean - scale[:, None] * np.einsum("tde,te->td", rotation, source_mean)
    return scale, rotation, translation


def _interpolate(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill the rows of `values` [T, C] where `valid` is False linearly from the valid rows."""
    index = np.arange(len(values))
    filled = values.copy()
    for column in range(values.shape[1]):
        filled[:, column] = np.interp(index, index[valid], values[valid, column])
    return filled


def lip_geometry(landmarks: np.ndarray) -> np.ndarray:
    """The standardised lip geometry of a clip (see the module docstring).

    Args:
        landmarks: float [T, 68, 2] in pixels, NaN where the frame has no face.

    Returns:
        float32 [T, `LIP_DIM`]; all zeros when fewer than two frames have a face.
    """
    points = np.asarray(landmarks, np.float64)
    n_frames = len(points)
    valid = np.isfinite(points).all(axis=(1, 2))
    if valid.sum() < 2:
        return np.zeros((n_frames, LIP_DIM), np.float32)
    seen = points[valid]
    stable = seen[:, STABLE_POINTS]
    inter_ocular = np.linalg.norm(seen[:, 36:40].mean(axis=1) - seen[:, 42:48].mean(axis=1), axis=1)
    reference = ((stable - stable.mean(axis=1, keepdims=True)) / np.maximum(inter_ocular, 1e-6)[:, None, None]).mean(axis=0)
    scale, rotation, translation = _similarity_to(reference, stable)
    mouth = scale[:, None, None] * np.einsum("tde,tke->tkd", rotation, seen[:, MOUTH_POINTS]) + translation[:, None]
    distances = np.stack([np.linalg.norm(mouth[:, a] - mouth[:, b], axis=1) for a, b in DISTANCES], axis=1)
    shape = np.concatenate([(mouth - np.median(mouth, axis=0)).reshape(len(seen), -1),
                            distances - np.median(distances, axis=0)], axis=1)  # fmt: skip
    full = np.zeros((n_frames, shape.shape[1]))
    full[valid] = shape
    full = _interpolate(full, valid)
    geometry = np.concatenate([full, np.vstack([np.zeros((1, full.shape[1])), np.diff(full, axis=0)])], axis=1)
    mean, spread = geometry[valid].mean(axis=0), geometry[valid].std(axis=0) + 1e-6
    return ((geometry - mean) / spread).astype(np.float32)
