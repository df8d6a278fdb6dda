"""Follow one face (the singer) through a video: detect now and then, place landmarks every frame.

Per frame the landmark predictor runs on the tracked box (the box derived from the previous
frame's landmarks). The detector runs

- on the whole (downscaled) frame while no face is tracked, every ``detect_every`` frames, at
  ``detect_width`` pixels and, when nothing is found there, at twice that width (small faces);
- every ``detect_every`` frames on a small region around the tracked face, to confirm it and to
  re-anchor the box (no drift; a backend whose ``reanchor`` attribute is False keeps the box its
  landmarks gave: the mesh backend, whose points shift when its crop jumps to the detector's
  box). When the face is not confirmed, the frame is invalid (the
  predictor would place a plausible face on anything, even a flat wall) and the region is
  searched again every frame; after ``max_unconfirmed`` frames without confirmation the track is
  dropped and the whole frame searched. (Up to ``detect_every - 1`` frames after the face leaves,
  before the next confirmation, can still get landmarks.)
- at once when the landmarks look wrong (the box jumps, or the landmark spread collapses or
  explodes); if they still look wrong after re-detection the frame is invalid.

Choice of the singer among several faces (`TrackerConfig.face`: the largest by default, or the
leftmost, the rightmost, or the one nearest a point): the current track is kept as long as it is confirmed
(the most persistent face); a new track starts on the face overlapping the last singer box, else
on the largest face. Frames without a usable face get landmarks None and a reason:
``"no face detected"``, ``"face too small"`` or ``"landmarks unstable"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avsync.features.face_choice import face_point
from avsync.features.landmarks import LandmarkBackend, face_size

NO_FACE = "no face detected"
FACE_TOO_SMALL = "face too small"
UNSTABLE = "landmarks unstable"

# dlib's HOG box relative to the bounding box of its 68 landmarks (median over 904 frames of the
# real clips in /work/shared/data/realav): same width as the landmarks' larger extent x 1.03,
# centred 0.10 extent above the landmarks' centre.
BOX_SIDE_PER_EXTENT = 1.03
BOX_RAISE_PER_EXTENT = 0.10
# Standard deviation of the 68 landmarks / box side is 0.20-0.30 on real faces (1st-99th percentile).
SPREAD_RANGE = (0.12, 0.45)
# Region searched to confirm a tracked face: box side x this, scaled so the face is ~100 px wide
# (dlib's HOG window is 80 px).
CONFIRM_REGION = 2.0
CONFIRM_FACE_PX = 100.0


@dataclass(frozen=True)
class TrackerConfig:
    """Face tracking parameters.

    Attributes:
        detect_every: frames between detector runs (search while lost, confirmation while tracking).
        detect_width: width in pixels of the frame the full-frame search runs on.
        min_face_size: `avsync.features.landmarks.face_size` in frame pixels below which a frame is invalid.
        max_jump: largest movement of the face box between frames, as a fraction of its side,
            before the landmarks count as unstable.
        min_iou: overlap (intersection over union) for a detection to be the tracked face.
        max_unconfirmed: frames after the last confirming detection before a track is dropped.
        face: which face to follow when several are in the picture: ``largest``, ``left``,
            ``right``, or ``X,Y`` (the face nearest that point, as fractions of the frame's width
            and height, e.g. ``0.7,0.4``).
    """

    detect_every: int = 5
    detect_width: int = 320
    min_face_size: float = 20.0
    max_jump: float = 0.3
    min_iou: float = 0.3
    max_unconfirmed: int = 10
    face: str = "largest"

    def __post_init__(self) -> None:
        face_point(self.face)  # raises ValueError on a bad choice


def choose_face(boxes: np.ndarray, face: str, frame_size: tuple[int, int]) -> int:
    """Index of the face to follow among detected boxes ``[K, 4]`` (x0, y0, x1, y1).

    Args:
        boxes: the detections.
        face: the choice (see `TrackerConfig.face`).
        frame_size: ``(width, height)`` of the frame.
    """
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    if face == "left":
        return int(np.argmin(centres[:, 0]))
    if face == "right":
        return int(np.argmax(centres[:, 0]))
    point = face_point(face)
    if point is None:
        return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    target = np.array(point) * np.array(frame_size, dtype=np.float64)
    return int(np.argmin(np.linalg.norm(centres - target, axis=1)))


@dataclass
class Track:
    """Landmarks of the followed face over a video.

    Attributes:
        landmarks: float32 ``[T, 68, 2]`` in frame pixels, NaN where invalid.
        valid: bool ``[T]``.
        invalid_reason: ``T`` strings, ``""`` where valid.
        detector_runs: how many times the detector ran (full frame or region).
    """

    landmarks: np.ndarray
    valid: np.ndarray
    invalid_reason: list[str]
    detector_runs: int


def box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """The detector-style square box of a face given its landmarks.

    Args:
        landmarks: float ``[68, 2]``.

    Returns:
        float ``[4]`` ``(x0, y0, x1, y1)``.
    """
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    extent = float((high - low).max())
    centre_x, centre_y = (low + high) / 2
    centre_y -= BOX_RAISE_PER_EXTENT * extent
    half = BOX_SIDE_PER_EXTENT * extent / 2
    return np.array([centre_x - half, centre_y - half, centre_x + half, centre_y + half])


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box with each of several.

    Args:
        box: float ``[4]``.
        boxes: float ``[K, 4]``.

    Returns:
        float ``[K]``.
    """
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2  # here, not at the top: importing the tracker need not wait 0.1 s for OpenCV

    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


class FaceTracker:
    """Online tracker of one face; feed it the frames of a video in order with `update`.

    Args:
        backend: landmark backend (detector + predictor).
        config: tracking parameters.
    """

    def __init__(self, backend: LandmarkBackend, config: TrackerConfig = TrackerConfig()) -> None:
        self.backend = backend
        self.config = config
        self.detector_runs = 0
        self._index = -1
        self._box: np.ndarray | None = None  # the tracked face, None while lost
        self._singer: np.ndarray | None = None  # last box of the singer, to find them again
        self._next_search = 0
        self._last_check = 0
        self._confirmed = 0
        self._unconfirmed = False
        self.faces_seen = 0  # most faces one full-frame search found
        self.chosen_at: tuple[float, float] | None = None  # where the followed face was, as fractions of the frame

    def update(self, frame: np.ndarray) -> tuple[np.ndarray | None, str]:
        """Landmarks of the singer in the next frame of the video.

        Args:
            frame: uint8 ``[H, W]`` gray or ``[H, W, 3]`` RGB.

        Returns:
            ``(landmarks, reason)``: float32 ``[68, 2]`` in frame pixels and ``""``, or None and
            why the frame has no usable face.
        """
        self._index += 1
        index = self._index
        if self._box is None:
            if index < self._next_search:
                return None, NO_FACE
            self._next_search = index + self.config.detect_every
            if not self._acquire(frame):
                return None, NO_FACE
        elif self._unconfirmed or index - self._last_check >= self.config.detect_every:
            self._last_check = index
            self._unconfirmed = not self._confirm(frame)
            if self._unconfirmed:
                # The detector no longer sees the face: no landmarks (the predictor would place a
                # plausible face on anything); retry every frame, give the track up after a while.
                if index - self._confirmed > self.config.max_unconfirmed:
                    self._lose()
                return None, NO_FACE
            self._confirmed = index
        landmarks = self.backend.predict(frame, self._box)
        if not self._plausible(landmarks):
            # Re-detect at once: around the face if it is still there, else in the whole frame.
            if not (self._confirm(frame, reanchor=True) or self._acquire(frame)):
                self._lose()
                return None, UNSTABLE
            landmarks = self.backend.predict(frame, self._box)
            if not self._plausible(landmarks):
                self._lose()
                return None, UNSTABLE
        self._box = box_from_landmarks(landmarks)
        self._singer = self._box
        if face_size(landmarks) < self.config.min_face_size:
            return None, FACE_TOO_SMALL
        return landmarks, ""

    def _lose(self) -> None:
        self._box = None
        self._unconfirmed = False
        self._next_search = self._index + self.config.detect_every

    def _detect(self, image: np.ndarray, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Boxes ``[K, 4]`` in frame pixels of the faces in `image` scaled by `scale`, placed at `offset`."""
        self.detector_runs += 1
        boxes, _ = self.backend.detect(_resize(image, scale))
        return boxes / scale + np.array([offset[0], offset[1], offset[0], offset[1]])

    def _acquire(self, frame: np.ndarray) -> bool:
        """Search the whole frame; start tracking the singer (or the largest face). True if found."""
        width = frame.shape[1]
        boxes = self._detect(frame, self.config.detect_width / width)
        # Small faces need the finer search too (the singer may be the small one, and every face in
        # the picture is counted); a search runs only when the track starts or was lost.
        finer = self._detect(frame, 2 * self.config.detect_width / width)
        new = [box for box in finer if not len(boxes) or iou(box, boxes).max() < self.config.min_iou]
        boxes = np.concatenate([boxes.reshape(-1, 4), np.array(new).reshape(-1, 4)]) if new else boxes
        if not len(boxes):
            return False
        overlaps = iou(self._singer, boxes) if self._singer is not None else np.zeros(len(boxes))
        if overlaps.max() >= self.config.min_iou:
            choice = int(overlaps.argmax())
        else:
            choice = choose_face(boxes, self.config.face, (frame.shape[1], frame.shape[0]))
        if len(boxes) > self.faces_seen:
            self.faces_seen = len(boxes)
            centre = (boxes[choice, :2] + boxes[choice, 2:]) / 2
            self.chosen_at = (float(centre[0] / frame.shape[1]), float(centre[1] / frame.shape[0]))
        self._box = boxes[choice]
        self._confirmed = self._last_check = self._index
        return True

    def _confirm(self, frame: np.ndarray, reanchor: bool = False) -> bool:
        """Detect in a region around the tracked box; re-anchor the box on the match. True if found.

        The box stays where the landmarks put it when the backend's ``reanchor`` is False, unless
        `reanchor` asks (the landmarks looked wrong).
        """
        if self._box is None:
            return False
        side = self._box[2] - self._box[0]
        centre = (self._box[:2] + self._box[2:]) / 2
        height, width = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(centre - CONFIRM_REGION * side / 2), 0).astype(int)
        x1 = int(min(np.ceil(centre[0] + CONFIRM_REGION * side / 2), width))
        y1 = int(min(np.ceil(centre[1] + CONFIRM_REGION * side / 2), height))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return False
        boxes = self._detect(frame[y0:y1, x0:x1], CONFIRM_FACE_PX / side, (x0, y0))
        if not len(boxes):
            return False
        overlaps = iou(self._box, boxes)
        if overlaps.max() < self.config.min_iou:
            return False
        if reanchor or getattr(self.backend, "reanchor", True):
            self._box = boxes[int(overlaps.argmax())]
        return True

    def _plausible(self, landmarks: np.ndarray) -> bool:
        """Whether landmarks placed in the tracked box look like a face that did not jump."""
        if not np.all(np.isfinite(landmarks)):
            return False
        side = self._box[2] - self._box[0]
        spread = float(landmarks.std(axis=0).mean()) / side
        if not SPREAD_RANGE[0] <= spread <= SPREAD_RANGE[1]:
            return False
        new_box = box_from_landmarks(landmarks)
        jump = math.hypot(*((new_box[:2] + new_box[2:]) / 2 - (self._box[:2] + self._box[2:]) / 2))
        return jump <= self.config.max_jump * side
