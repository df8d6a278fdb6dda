"""Stable 64x64 mouth crops from per-frame landmarks.

The crop of frame ``t`` is a square centred on the mean of the lip landmarks 48-67, with side
``scale * face_size`` (`avsync.features.landmarks.face_size`, which ignores the mouth, so the crop does
not zoom when the mouth opens) and turned with the eye line (upright mouth when the head tilts).
Centre, side and angle are averaged over the valid frames of a centred window of
``smooth_window`` frames, which removes the landmark jitter (about 1 px per frame) while a head
moving at constant speed is followed without lag. Crops are resampled bilinearly (after an
area-filtered shrink when the crop is much larger than its output) with edge pixels repeated
outside the frame. Frames without landmarks get an all-zero crop; their validity lives in the
mask that goes with the crops.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from avsync.conventions import MOUTH_SIZE
from avsync.features.landmarks import face_size, mouth_centre, roll_angle

# Above this many source pixels per output pixel, shrink with an area filter before warping.
MAX_BILINEAR_STEP = 1.25


@dataclass(frozen=True)
class CropConfig:
    """Mouth crop parameters.

    Attributes:
        size: output side in pixels.
        rgb: RGB crops ``[size, size, 3]`` instead of gray ``[size, size]``.
        scale: crop side as a multiple of `avsync.features.landmarks.face_size` (about the inter-ocular
            distance; the mouth is ~0.6 of it wide, so 1.1 leaves a margin of ~0.8 mouth width).
        smooth_window: frames in the centred averaging window of centre, side and angle.
    """

    size: int = MOUTH_SIZE
    rgb: bool = False
    scale: float = 1.1
    smooth_window: int = 9


def mouth_geometry(landmarks: np.ndarray, scale: float) -> np.ndarray:
    """Unsmoothed crop geometry per frame.

    Args:
        landmarks: float ``[T, 68, 2]``, NaN for frames without a face.
        scale: crop side per face size.

    Returns:
        float64 ``[T, 4]``: centre x, centre y, side, angle (radians); NaN rows where invalid.
    """
    points = landmarks.astype(np.float64)
    return np.column_stack([mouth_centre(points), scale * face_size(points), roll_angle(points)])


def window_mean(rows: np.ndarray) -> np.ndarray:
    """Mean of the valid (all-finite) rows of a window of crop geometry.

    Args:
        rows: float ``[N, 4]`` geometry of the frames in a window.

    Returns:
        float ``[4]``; NaN when no row is valid.
    """
    valid = rows[np.isfinite(rows).all(axis=1)]
    return valid.mean(axis=0) if len(valid) else np.full(rows.shape[1], np.nan)


def crop_mouth(frame: np.ndarray, geometry: np.ndarray, size: int = MOUTH_SIZE) -> np.ndarray:
    """Resample one square, rotated crop of a frame.

    Args:
        frame: uint8 ``[H, W]`` or ``[H, W, 3]``.
        geometry: float ``[4]``: centre x, centre y, side (frame pixels), angle (radians).
        size: output side in pixels.

    Returns:
        uint8 ``[size, size]`` (or ``[size, size, 3]``).
    """
    centre_x, centre_y, side, angle = (float(v) for v in geometry)
    step = side / size
    if step > MAX_BILINEAR_STEP:
        # Shrink the neighbourhood of the crop with an area filter so bilinear sampling does not alias.
        reach = side * 0.75  # half of the crop's diagonal, rounded up
        height, width = frame.shape[:2]
        x0, y0 = max(int(centre_x - reach), 0), max(int(centre_y - reach), 0)
        x1, y1 = min(int(centre_x + reach) + 2, width), min(int(centre_y + reach) + 2, height)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            shrink = 1.0 / step
            region = frame[y0:y1, x0:x1]
            out_size = (max(1, round((x1 - x0) * shrink)), max(1, round((y1 - y0) * shrink)))
            frame = cv2.resize(region, out_size, interpolation=cv2.INTER_AREA)
            factor_x, factor_y = out_size[0] / (x1 - x0), out_size[1] / (y1 - y0)
            centre_x = (centre_x - x0 + 0.5) * factor_x - 0.5
            centre_y = (centre_y - y0 + 0.5) * factor_y - 0.5
            step *= (factor_x + factor_y) / 2
    cos, sin = step * np.cos(angle), step * np.sin(angle)
    half = (size - 1) / 2
    # Output pixel (u, v) samples the frame at centre + R(angle) * step * (u - half, v - half).
    to_frame = np.array(
        [[cos, -sin, centre_x - (cos - sin) * half], [sin, cos, centre_y - (sin + cos) * half]], dtype=np.float64
    )
    return cv2.warpAffine(
        frame, to_frame, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


class MouthCropper:
    """Streaming mouth cropper: push frames with their landmarks, get smoothed crops back.

    A crop is ready once ``smooth_window // 2`` later frames are known, so only that many frames
    are held in memory.

    Args:
        config: crop parameters.
    """

    def __init__(self, config: CropConfig = CropConfig()) -> None:
        self.config = config
        self._half = config.smooth_window // 2
        self._geometry: list[np.ndarray] = []
        self._pending: deque[tuple[int, np.ndarray]] = deque()

    def _empty(self) -> np.ndarray:
        shape = (self.config.size, self.config.size) + ((3,) if self.config.rgb else ())
        return np.zeros(shape, dtype=np.uint8)

    def _crop(self, index: int, frame: np.ndarray) -> np.ndarray:
        if not np.isfinite(self._geometry[index]).all():
            return self._empty()
        window = np.array(self._geometry[max(0, index - self._half) : index + self._half + 1])
        return crop_mouth(frame, window_mean(window), self.config.size)

    def push(self, frame: np.ndarray, landmarks: np.ndarray | None) -> list[np.ndarray]:
        """Add the next frame.

        Args:
            frame: uint8 ``[H, W]`` (gray crops) or ``[H, W, 3]`` (RGB crops).
            landmarks: float ``[68, 2]`` in frame pixels, or None for a frame without a face.

        Returns:
            The crops (uint8 ``[size, size]`` or ``[size, size, 3]``) that became ready, in order.
        """
        if landmarks is None:
            self._geometry.append(np.full(4, np.nan))
        else:
            self._geometry.append(mouth_geometry(landmarks[None], self.config.scale)[0])
        self._pending.append((len(self._geometry) - 1, frame))
        ready = []
        while self._pending and self._pending[0][0] + self._half < len(self._geometry):
            ready.append(self._crop(*self._pending.popleft()))
        return ready

    def flush(self) -> list[np.ndarray]:
        """The crops of the frames still waiting for later frames (call once, at the end)."""
        ready = [self._crop(index, frame) for index, frame in self._pending]
        self._pending.clear()
        return ready
