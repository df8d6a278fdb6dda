"""Lip closures and their releases from the 68-point landmarks, timed between frames.

A closure is a short run of frames whose inner-lip gap is near the clip's smallest (the lips
pressed together), with the mouth open shortly before and after it: a bilabial /p b m/ inside
speech, not the mouth at rest. Its release time is where the opening signal crosses
`RELEASE_LEVEL` of its rise from the last closed frame to the following peak, interpolated
linearly between frames (the landmarks move in whole pixels; the interpolation gives a
sub-frame time, whose constant lag behind the physical release is a calibrated bias).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsync.features.landmarks import face_size

REFERENCE_BACKEND = "dlib"
"""The landmarks the reference reads (`avsync.features.landmarks`), whatever the models read: every
threshold here and the bias were set on dlib's 68 points; with them the face mesh's points decided
2 of the 22 dataset-synced clips, dlib's 6 (docs/sync_truth.md)."""
UPPER_INNER, LOWER_INNER = (61, 62, 63), (67, 66, 65)
"""0-based iBUG indices of the inner lips, upper and lower, paired top to bottom."""
CLOSED_LEVEL = 0.25
"""A frame is closed when its gap is below this share of the clip's range (5th to 90th percentile)."""
OPEN_LEVEL = 0.45
"""A frame is open when its gap is above this share of the clip's range."""
RELEASE_LEVEL = 0.5
"""The release is timed where the opening crosses this share of its rise after the closure."""
MIN_CLOSED_FRAMES = 2
"""Shortest closure (frames at 25 fps): a bilabial holds its closure 50-150 ms; one closed frame is
mostly landmark noise."""
MAX_CLOSED_FRAMES = 7
"""Longest closure: longer is the mouth at rest (a pause), not a consonant."""
CONTEXT_FRAMES = 6
"""The mouth must be open within this many frames before the closure (speech, not rest)."""
RISE_FRAMES = 4
"""The mouth must open within this many frames after the closure."""
MAX_TURN = 0.35
"""Largest `head_turn` at which a frame's lips are used: further turned, dlib's inner-lip points and
the seam they outline are foreshortened and slip: on the LRS2 clips, 25 % of the paired events were
more than 2 frames off their clip's median without this gate, 7 % with it (two turned faces gave
consistent 3-frame errors); 0.3-0.45 were measured (docs/sync_truth.md)."""
NOSE_TIP, JAW_LEFT_END, JAW_RIGHT_END = 30, 0, 16
"""0-based iBUG indices `head_turn` reads."""
SEAM_COLUMNS = slice(18, 46)
SEAM_ROWS = slice(20, 44)
"""The part of a 64x64 gray mouth crop (`avsync.features.mouth`) the lip seam crosses."""


@dataclass(frozen=True)
class LipRelease:
    """One release of a lip closure.

    Attributes:
        time_frames: when the opening crosses `RELEASE_LEVEL` of its rise, in (fractional) frames.
        closure_start: the first closed frame.
        closure_frames: how many frames the lips stayed closed.
    """

    time_frames: float
    closure_start: int
    closure_frames: int


def lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap per frame, relative to the face size.

    Args:
        landmarks: float ``[T, 68, 2]``, NaN where the frame has no face.

    Returns:
        float64 ``[T]``, NaN where invalid.
    """
    points = landmarks.astype(np.float64)
    gap = np.linalg.norm(points[:, UPPER_INNER] - points[:, LOWER_INNER], axis=-1).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gap / face_size(points)


def head_turn(landmarks: np.ndarray) -> np.ndarray:
    """How far the head is turned left or right, from the nose's place between the jaw's ends.

    Args:
        landmarks: float ``[T, 68, 2]``, NaN where the frame has no face.

    Returns:
        float64 ``[T]``: 0 for a frontal face, towards 1 in profile (NaN where invalid):
        ``|(nose - left end) - (right end - nose)| / (right end - left end)`` along x.
    """
    points = landmarks.astype(np.float64)
    nose, left, right = points[:, NOSE_TIP, 0], points[:, JAW_LEFT_END, 0], points[:, JAW_RIGHT_END, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs((nose - left) - (right - nose)) / np.abs(right - left)


def seam_darkness(mouth_crops: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """How much darker than usual the lip seam's area is per frame (the mouth cavity showing).

    A pixel-intensity opening signal: it sums many pixels, so it changes smoothly where the
    landmarks move in whole pixels. Measured against the landmark gap in `docs/sync_truth.md`.

    Args:
        mouth_crops: uint8 ``[T, 64, 64]`` (gray, `avsync.features.mouth`).
        valid: bool ``[T]``.

    Returns:
        float64 ``[T]``: the summed darkness below each pixel's median over the valid frames; NaN
        where invalid.
    """
    region = mouth_crops[:, SEAM_ROWS, SEAM_COLUMNS].astype(np.float64)
    darkness = np.full(len(region), np.nan)
    if valid.any():
        usual = np.median(region[valid], axis=0)
        darkness[valid] = np.clip(usual[None] - region[valid], 0, None).sum(axis=(1, 2))
    return darkness


def normalised(signal: np.ndarray) -> np.ndarray:
    """A signal on its clip's scale: 0 at its 5th percentile, 1 at its 90th (NaN kept).

    Args:
        signal: float ``[T]``.

    Returns:
        float64 ``[T]``.
    """
    finite = signal[np.isfinite(signal)]
    if len(finite) == 0:
        return np.full(len(signal), np.nan)
    low, high = np.percentile(finite, [5, 90])
    return (signal - low) / max(high - low, 1e-9)


def _crossing(opening: np.ndarray, last_closed: int) -> float | None:
    """Fractional frame where the opening crosses `RELEASE_LEVEL` of its rise after `last_closed`."""
    after = opening[last_closed + 1 : last_closed + 1 + RISE_FRAMES]
    peak = last_closed + 1 + int(np.argmax(after))
    start, top = opening[last_closed], opening[peak]
    if not top > start:
        return None
    level = start + RELEASE_LEVEL * (top - start)
    frame = last_closed
    while frame < peak and opening[frame + 1] < level:
        frame += 1
    step = opening[frame + 1] - opening[frame]
    return float(frame + (level - opening[frame]) / step) if step > 0 else float(frame)


def find_releases(gap: np.ndarray, opening: np.ndarray | None = None, usable: np.ndarray | None = None) -> list[LipRelease]:
    """The releases of the clip's bilabial closures.

    Args:
        gap: float ``[T]``, the inner-lip gap (`lip_gap`); closures are found on it.
        opening: float ``[T]``, the signal the release is timed on (default: the gap itself,
            normalised; e.g. `seam_darkness`, normalised).
        usable: bool ``[T]``, frames whose lips can be trusted (e.g. ``head_turn <= MAX_TURN``);
            a release needs them from the frame before its closure to the end of its rise.
            None: every frame.

    Returns:
        The releases in time order.
    """
    level = normalised(gap)
    timing = level if opening is None else opening
    closed, open_ = level <= CLOSED_LEVEL, level >= OPEN_LEVEL
    count = len(level)
    releases, frame = [], 0
    while frame < count:
        if not closed[frame]:
            frame += 1
            continue
        start = frame
        while frame < count and closed[frame]:
            frame += 1
        last = frame - 1
        length = last - start + 1
        if start == 0 or last + RISE_FRAMES >= count or not MIN_CLOSED_FRAMES <= length <= MAX_CLOSED_FRAMES:
            continue
        if not open_[max(0, start - CONTEXT_FRAMES) : start].any() or not open_[last + 1 : last + 1 + RISE_FRAMES].any():
            continue
        if not np.isfinite(timing[last : last + 1 + RISE_FRAMES]).all():
            continue
        if usable is not None and not usable[start - 1 : last + 1 + RISE_FRAMES].all():
            continue
        time = _crossing(timing, last)
        if time is not None:
            releases.append(LipRelease(time, start, length))
    return releases
