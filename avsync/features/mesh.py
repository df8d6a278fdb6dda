"""MediaPipe's BlazeFace detector and 468-point face mesh through LiteRT, as 68 iBUG landmarks.

The ``mesh`` landmark backend (`avsync.features.landmarks.make_backend`). Both networks are the
Apache-2.0 TFLite files of Google's MediaPipe (``avsync/assets/mediapipe``, with their licence and
attribution) run by ``ai_edge_litert`` (LiteRT, the TensorFlow Lite runtime without TensorFlow),
one thread each:

- ``detect``: BlazeFace short-range (128x128 input, 896 anchors): the frame is letterboxed to a
  square, faces scoring over `DETECT_SCORE` are merged by weighted non-maximum suppression, and
  their boxes are converted to dlib's HOG box convention (`BLAZE_TO_HOG`) so that the tracker
  treats boxes of either backend the same.
- ``predict``: the face mesh (192x192 input, 468 points) on a square of `MESH_ROI_SCALE` box sides
  around the box, turned upright by the eye line when the head is tilted (a second pass when the
  first one finds the eyes more than `REALIGN_DEGREES` off level). The 68 iBUG points are read off
  the mesh (`MESH_TO_IBUG`), so lip geometry, mouth crops and tracking are the same code as dlib's.
  When the mesh's own face-presence score is under `PRESENCE_SCORE` the landmarks are NaN, which
  the tracker treats as unstable (it re-detects).

Nothing is downloaded: the model files ship in the package.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from avsync.errors import AvsyncError

MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "mediapipe"
DETECTOR_FILE = "face_detection_short_range.tflite"
MESH_FILE = "face_landmark.tflite"
DETECT_SIZE = 128
MESH_SIZE = 192
NUM_MESH_POINTS = 468
DETECT_SCORE = 0.5
"""BlazeFace score (after the sigmoid) a face needs (MediaPipe's default)."""
NMS_IOU = 0.3
"""Overlap above which BlazeFace detections are merged (MediaPipe's weighted NMS)."""
PRESENCE_SCORE = 0.5
"""The mesh's face-presence score (after the sigmoid) under which its points are not used."""
MESH_ROI_SCALE = 1.60
"""Side of the square the mesh sees, in HOG-convention box sides: MediaPipe's 1.5 BlazeFace boxes."""
MESH_ROI_SHIFT = (0.015, 0.072)
"""Centre of the square the mesh sees from the box's centre, in box sides along the eye line and
across it (down): MediaPipe's crop is centred on BlazeFace's box, which sits lower than dlib's."""
REALIGN_DEGREES = 8.0
"""Eye-line tilt past which the mesh runs again on a crop turned upright."""

# (x0, y0, x1, y1) of the HOG-convention box = BlazeFace box centre + its side * these: the box
# around the mesh's 68 iBUG points (the tracker's `box_from_landmarks`) on MediaPipe's crop is
# centred (-0.014, -0.067) BlazeFace sides off its centre and 0.938 of its side wide (medians over
# 2,522 frames, every 5th, of the 55 real clips; side 0.88-1.02 5th-95th percentile;
# ``experiments/probes/mesh_landmarks.py --calibrate``). `MESH_ROI_SCALE` and `MESH_ROI_SHIFT`
# follow from the same numbers.
BLAZE_TO_HOG = np.array([-0.483, -0.536, 0.454, 0.402])

# The mesh vertex read as each of the 68 iBUG points: the vertex nearest dlib's point (median
# distance over 2,484 frames, every 5th of the 55 real clips where dlib finds a face:
# ``experiments/probes/mesh_landmarks.py --fit-mapping``), 0.047 inter-ocular distances on average
# (0.031 on the lips 48-67; 0.066 for a mapping picked by hand from the mesh's topology). The
# subject's right is image left for both.
MESH_TO_IBUG = np.array(
    [
        127, 234, 177, 215, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 361, 454, 356,  # jaw
        46, 63, 52, 65, 55,  # right brow, outer to inner
        285, 295, 282, 293, 300,  # left brow, inner to outer
        168, 197, 5, 4,  # nose bridge to tip
        75, 97, 2, 326, 305,  # nostrils
        163, 159, 157, 112, 153, 144,  # right eye
        382, 385, 386, 249, 373, 380,  # left eye
        146, 80, 72, 11, 302, 310, 291, 405, 314, 17, 84, 181,  # outer lips
        96, 82, 13, 312, 307, 316, 15, 86,  # inner lips
    ]
)  # fmt: skip
RIGHT_EYE_CORNERS, LEFT_EYE_CORNERS = (33, 133), (362, 263)


def _fill_input(tensor: np.ndarray, image: np.ndarray, divisor: float, shift: float = 0.0) -> None:
    """Write ``image / divisor - shift`` (float32) into the top-left corner of a network input.

    Args:
        tensor: float32 ``[1, S, S, 3]``, the network's input buffer.
        image: uint8 ``[H, W]`` gray (the same value in all three channels) or ``[H, W, 3]`` RGB,
            ``H, W <= S``.
        divisor: the pixel values are divided by it.
        shift: subtracted after dividing.
    """
    height, width = image.shape[:2]
    corner = tensor[0, :height, :width]
    if image.ndim == 2:  # divided once per pixel, then copied to the channels by OpenCV (6x faster than numpy's broadcast)
        values = np.divide(image, np.float32(divisor), dtype=np.float32)
        if shift:
            values -= np.float32(shift)
        cv2.cvtColor(values, cv2.COLOR_GRAY2RGB, dst=corner)
    else:
        np.divide(image, np.float32(divisor), out=corner, dtype=np.float32)
        if shift:
            corner -= np.float32(shift)


def blazeface_anchors() -> np.ndarray:
    """Anchor centres of BlazeFace short-range (MediaPipe's SSD anchors: strides 8, 16, 16, 16).

    Returns:
        float32 ``[896, 2]`` ``(x, y)`` as fractions of the input side.
    """
    anchors = []
    for stride, repeats in ((8, 2), (16, 6)):
        cells = DETECT_SIZE // stride
        y, x = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(x.ravel() + 0.5) / cells, (y.ravel() + 0.5) / cells], axis=1)
        anchors.append(np.repeat(centres, repeats, axis=0))
    return np.concatenate(anchors).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: overlapping boxes are averaged by score.

    Args:
        boxes: float ``[K, 4]`` ``(x0, y0, x1, y1)``.
        scores: float ``[K]``.
        threshold: overlap (intersection over union) above which boxes are one face.

    Returns:
        Merged boxes float ``[M, 4]`` and the best score of each ``[M]``, best first.
    """
    from avsync.features.tracking import iou

    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    left = np.ones(len(boxes), bool)
    merged, best = [], []
    for index in range(len(boxes)):
        if not left[index]:
            continue
        group = left & (iou(boxes[index], boxes) > threshold)
        group[index] = True
        left &= ~group
        weights = scores[group]
        merged.append((boxes[group] * weights[:, None]).sum(axis=0) / weights.sum())
        best.append(scores[index])
    return np.array(merged, np.float64).reshape(-1, 4), np.array(best, np.float64)


def _interpreter(path: Path):  # noqa: ANN202 (ai_edge_litert.interpreter.Interpreter, imported lazily)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise AvsyncError("the mesh landmark backend needs ai-edge-litert: pip install ai-edge-litert") from None
    if not path.is_file():
        raise AvsyncError(f"face model missing: {path} (reinstall avsync; nothing is downloaded)")
    with _native_stderr_silenced():  # LiteRT logs "INFO: Created TensorFlow Lite XNNPACK delegate" there
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null for the block."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class MeshLandmarks:
    """BlazeFace short-range and the 468-point face mesh through LiteRT (see the module docstring).

    Args:
        model_dir: folder holding `DETECTOR_FILE` and `MESH_FILE` (default: the shipped ones).

    Raises:
        AvsyncError: ai-edge-litert is not installed or a model file is missing.
    """

    name = "mesh"
    reanchor = False
    """The tracker keeps the box from the mesh's own points when BlazeFace confirms the face: moving
    the crop to the detector's box every few frames shook the lips (quiet-frame lip jitter 0.028 ->
    0.006 inter-ocular on LipNet/lbax4n; experiments/probes/mesh_landmarks.py)."""

    def __init__(self, model_dir: Path | None = None) -> None:
        folder = Path(model_dir) if model_dir is not None else MODEL_DIR
        self._detector = _interpreter(folder / DETECTOR_FILE)
        self._mesh = _interpreter(folder / MESH_FILE)
        self._anchors = blazeface_anchors()
        detector_out = {d["name"]: d["index"] for d in self._detector.get_output_details()}
        self._regressors, self._classificators = detector_out["regressors"], detector_out["classificators"]
        mesh_out = sorted(self._mesh.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
        self._points_out, self._presence_out = mesh_out[0]["index"], mesh_out[1]["index"]
        self._detector_in = self._detector.get_input_details()[0]["index"]
        self._mesh_in = self._mesh.get_input_details()[0]["index"]
        self._detector_input = np.zeros((1, DETECT_SIZE, DETECT_SIZE, 3), np.float32)
        self._mesh_input = np.zeros((1, MESH_SIZE, MESH_SIZE, 3), np.float32)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in a frame, as HOG-convention boxes (see `LandmarkBackend.detect`).

        Args:
            image: uint8 ``[H, W]`` gray or ``[H, W, 3]`` RGB.

        Returns:
            Boxes float ``[K, 4]`` ``(x0, y0, x1, y1)`` in image pixels and scores ``[K]`` in 0..1.
        """
        height, width = image.shape[:2]
        side = max(height, width)
        scale = DETECT_SIZE / side
        resized = cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )  # fmt: skip
        tensor = self._detector_input
        tensor.fill(0.0)  # letterbox: padded with 0 (mid-gray)
        _fill_input(tensor, resized, 127.5, 1.0)
        self._detector.set_tensor(self._detector_in, tensor)
        self._detector.invoke()
        raw = self._detector.get_tensor(self._regressors)[0]
        logits = np.clip(self._detector.get_tensor(self._classificators)[0, :, 0], -80.0, 80.0)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores > DETECT_SCORE
        if not keep.any():
            return np.zeros((0, 4)), np.zeros(0)
        centre = raw[keep, :2] / DETECT_SIZE + self._anchors[keep]
        size = raw[keep, 2:4] / DETECT_SIZE
        boxes, best = weighted_nms(np.concatenate([centre - size / 2, centre + size / 2], axis=1), scores[keep])
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        face_side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        hog = np.tile(centre, 2) + face_side[:, None] * BLAZE_TO_HOG
        return hog * side, best

    def mesh(self, image: np.ndarray, box: np.ndarray, angle: float = 0.0) -> tuple[np.ndarray, float]:
        """The 468 mesh points of the face in `box`, read on a crop turned by `angle`.

        Args:
            image: uint8 ``[H, W]`` gray or ``[H, W, 3]`` RGB.
            box: float ``[4]`` HOG-convention ``(x0, y0, x1, y1)``.
            angle: roll of the face (radians, the eye line's angle in the image).

        Returns:
            Points float32 ``[468, 2]`` ``(x, y)`` in image pixels and the face-presence score in 0..1.
        """
        side = max(box[2] - box[0], box[3] - box[1])
        along, down = MESH_ROI_SHIFT[0] * side, MESH_ROI_SHIFT[1] * side
        centre_x = (box[0] + box[2]) / 2 + along * math.cos(angle) - down * math.sin(angle)
        centre_y = (box[1] + box[3]) / 2 + along * math.sin(angle) + down * math.cos(angle)
        step = MESH_ROI_SCALE * side / MESH_SIZE
        cos, sin = step * math.cos(angle), step * math.sin(angle)
        half = MESH_SIZE / 2
        # Crop pixel (u, v) (centres at u + 0.5) samples the image at centre + R(angle) * step * (u + 0.5 - half, ...).
        to_image = np.array(
            [[cos, -sin, centre_x - 0.5 + (cos - sin) * (0.5 - half)], [sin, cos, centre_y - 0.5 + (sin + cos) * (0.5 - half)]]
        )
        crop = cv2.warpAffine(
            image, to_image, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        _fill_input(self._mesh_input, crop, 255.0)
        self._mesh.set_tensor(self._mesh_in, self._mesh_input)
        self._mesh.invoke()
        points = self._mesh.get_tensor(self._points_out).reshape(NUM_MESH_POINTS, 3)[:, :2] - 0.5
        presence = float(1.0 / (1.0 + math.exp(-float(np.clip(self._mesh.get_tensor(self._presence_out).ravel()[0], -80, 80)))))
        return (points @ to_image[:, :2].T + to_image[:, 2]).astype(np.float32), presence

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The 68 iBUG landmarks read off the mesh (see `LandmarkBackend.predict`).

        Args:
            image: uint8 ``[H, W]`` gray or ``[H, W, 3]`` RGB.
            box: float ``[4]`` HOG-convention ``(x0, y0, x1, y1)``.

        Returns:
            float32 ``[68, 2]`` in image pixels; all NaN when the mesh finds no face there.
        """
        points, presence = self.mesh(image, box)
        roll = eye_roll(points)
        if abs(math.degrees(roll)) > REALIGN_DEGREES:
            points, presence = self.mesh(image, box, roll)
        if presence < PRESENCE_SCORE:
            return np.full((len(MESH_TO_IBUG), 2), np.nan, np.float32)
        return points[MESH_TO_IBUG]


def eye_roll(points: np.ndarray) -> float:
    """Angle (radians) of the line from the right eye's centre to the left eye's in mesh points ``[468, 2]``."""
    line = points[list(LEFT_EYE_CORNERS)].mean(axis=0) - points[list(RIGHT_EYE_CORNERS)].mean(axis=0)
    return math.atan2(float(line[1]), float(line[0]))
