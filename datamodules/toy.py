"""Toy clips with a known audio-visual relation, built in memory (for tests and benchmarks).

A hidden per-frame "mouth opening" drives both streams: the mouth crop shows a dark ellipse whose
height follows it, and the log-mel has a harmonic spectrum whose power follows it (silent at 0).
No media files, no face tracking: a few milliseconds per clip.
"""

from __future__ import annotations

import numpy as np

from avsync.conventions import FPS
from avsync.features.audio import LOG_OFFSET
from avsync.features.cache import ClipFeatures
from avsync.models.layers import MELS_PER_FRAME, MOUTH_SIZE, N_MELS


def face_template() -> np.ndarray:
    """A frontal 68-point face (iBUG order) of about 100 pixels, mouth closed: float `[68, 2]`."""
    points = np.zeros((68, 2))
    angles = np.linspace(np.pi, 2 * np.pi, 17)
    points[0:17] = np.stack([50 * np.cos(angles), -60 * np.sin(angles) - 10], axis=1)  # jaw, ear to ear below
    points[17:22] = np.stack([np.linspace(-40, -10, 5), np.full(5, -45.0)], axis=1)  # brows
    points[22:27] = np.stack([np.linspace(10, 40, 5), np.full(5, -45.0)], axis=1)
    points[27:31] = np.stack([np.zeros(4), np.linspace(-35, -5, 4)], axis=1)  # nose bridge
    points[31:36] = np.stack([np.linspace(-10, 10, 5), np.full(5, 0.0)], axis=1)  # nostrils
    for first, centre in ((36, -25.0), (42, 25.0)):  # eyes
        eye = np.linspace(0, 2 * np.pi, 7)[:-1]
        points[first : first + 6] = np.stack([centre - 8 * np.cos(eye), -30 + 3 * np.sin(eye)], axis=1)
    outer = np.linspace(0, 2 * np.pi, 13)[:-1]
    points[48:60] = np.stack([-20 * np.cos(outer), 20 + 6 * np.sin(outer)], axis=1)  # lips
    inner = np.linspace(0, 2 * np.pi, 9)[:-1]
    points[60:68] = np.stack([-12 * np.cos(inner), 20 + 1 * np.sin(inner)], axis=1)
    return points


def toy_landmarks(opening: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """68 landmarks per frame whose lips open with `opening`, on a head that drifts, turns and scales.

    Args:
        opening: float `[T]` in 0..1.
        rng: random generator.

    Returns:
        float32 `[T, 68, 2]` in pixels.
    """
    frames = len(opening)
    faces = np.repeat(face_template()[None], frames, axis=0)
    faces[:, 55:60, 1] += 12 * opening[:, None]
    faces[:, 65:68, 1] += 14 * opening[:, None]
    faces[:, 8, 1] += 8 * opening  # the chin follows
    drift = np.cumsum(rng.normal(0, 0.5, (frames, 3)), axis=0) * np.array([1.0, 1.0, 0.01])
    angle, scale = drift[:, 2], rng.uniform(0.8, 1.5) * (1 + 0.05 * np.sin(np.arange(frames) / 20))
    rotation = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    centre = np.array([160.0, 120.0]) + drift[:, :2]
    moved = scale[:, None, None] * np.einsum("tij,tkj->tki", rotation, faces) + centre[:, None]
    return moved.astype(np.float32)


def opening_track(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Syllables of 3-10 frames with random loudness, separated by rests of 2-8 frames.

    Args:
        frames: length T.
        rng: random generator.

    Returns:
        float `[T]` in 0..1 (0 during rests).
    """
    opening = np.zeros(frames)
    position = int(rng.integers(0, 4))
    while position < frames:
        length = int(rng.integers(3, 11))
        opening[position : position + length] = rng.uniform(0.4, 1.0)
        position += length + int(rng.integers(2, 9))
    return opening


def toy_clip(frames: int, seed: int, clip_id: str | None = None, split: str = "train") -> ClipFeatures:
    """One toy clip.

    Args:
        frames: length T in video frames.
        seed: everything is drawn from it.
        clip_id: id (default `toy<seed>`).
        split: split name.

    Returns:
        `ClipFeatures` with mouth_crops uint8 `[T, 64, 64]`, all frames valid, log_mel float32
        `[80, 4T]`, an accompaniment log-mel of the same shape, and landmarks float32 `[T, 68, 2]`
        of a moving head whose lips open with the same hidden opening.
    """
    rng = np.random.default_rng(seed)
    opening = opening_track(frames, rng)
    rows, cols = np.mgrid[0:MOUTH_SIZE, 0:MOUTH_SIZE].astype(np.float32) - (MOUTH_SIZE - 1) / 2
    background = rng.uniform(120, 200) + rng.normal(0, 8, (MOUTH_SIZE, MOUTH_SIZE))
    half_height = 1.5 + 14.0 * opening[:, None, None]
    inside = (rows[None] / half_height) ** 2 + (cols[None] / 18.0) ** 2 <= 1.0
    crops = np.where(inside, 40.0, background[None]) + rng.normal(0, 6, (frames, MOUTH_SIZE, MOUTH_SIZE))
    mouth_crops = np.clip(crops, 0, 255).astype(np.uint8)

    bands = np.arange(N_MELS)
    spectrum = np.exp(-((bands[:, None] - rng.uniform(10, 30)) ** 2) / 200.0) + 0.3 * np.exp(-bands[:, None] / 25.0)
    power = np.repeat(opening, MELS_PER_FRAME)[None, :] * spectrum * 10.0
    noise = rng.exponential(1e-4, (N_MELS, MELS_PER_FRAME * frames))
    log_mel = np.log(power + noise + LOG_OFFSET).astype(np.float32)
    accompaniment = np.log(rng.exponential(1.0, (N_MELS, MELS_PER_FRAME * frames)) + LOG_OFFSET).astype(np.float32)
    return ClipFeatures(
        id=clip_id or f"toy{seed}",
        split=split,
        mouth_crops=mouth_crops,
        valid=np.ones(frames, dtype=bool),
        log_mel=log_mel,
        accompaniment_mel=accompaniment,
        fps=FPS,
        landmarks=toy_landmarks(opening, rng),
    )
