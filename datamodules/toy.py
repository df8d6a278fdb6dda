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
        `[80, 4T]` and an accompaniment log-mel of the same shape.
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
    )
