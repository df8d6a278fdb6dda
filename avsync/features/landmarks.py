"""68-point iBUG face landmarks behind one interface, from MediaPipe's mesh (the default), dlib or FAN.

A backend finds face boxes in a frame (``detect``) and places the 68 landmarks inside a box
(``predict``). Boxes are float ``[4]`` arrays ``(x0, y0, x1, y1)`` in the pixel coordinates of
the image they were found in. Everything after the landmarks (tracking, mouth crops) is shared
by both backends.

- ``dlib``: HOG face detector and the 68-point regression-tree predictor that ships in
  ``face_recognition_models``; CPU only, nothing to download.
- ``fan``: face-alignment's 2D FAN (GPU when present). Its weights are read from
  ``$TORCH_HOME/hub/checkpoints`` and never downloaded; faces are found with dlib's HOG
  detector (``fan_detector="dlib"``) or with S3FD (``fan_detector="sfd"``, needs its weights too).
- ``mesh``: MediaPipe's BlazeFace detector and 468-point face mesh through LiteRT, the 68 points
  read off the mesh (`avsync.features.mesh`); CPU, the model files ship in the package.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import numpy as np

from avsync.errors import AvsyncError

BACKENDS = ("dlib", "fan", "mesh")
FAN_DETECTORS = ("dlib", "sfd")
NUM_LANDMARKS = 68
MOUTH = slice(48, 68)
RIGHT_EYE_OUTER = 36  # the subject's right eye, image left
LEFT_EYE_OUTER = 45
NOSE_TIP = 33
# Eye-midpoint-to-nose-tip distance / inter-ocular distance: median over 904 frames of the real
# clips in /work/shared/data/realav (5th-95th percentile 0.47-0.71).
EYE_NOSE_PER_INTEROCULAR = 0.566


class LandmarkBackend(Protocol):
    """Face detection and 68-point landmark placement on one frame."""

    name: str

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Find faces.

        Args:
            image: uint8 ``[H, W]`` gray or ``[H, W, 3]`` RGB frame.

        Returns:
            Boxes float ``[K, 4]`` ``(x0, y0, x1, y1)`` and detector scores float ``[K]``.
        """
        ...

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Place the 68 landmarks of the face in ``box``.

        Args:
            image: uint8 ``[H, W]`` gray or ``[H, W, 3]`` RGB frame.
            box: float ``[4]`` ``(x0, y0, x1, y1)``.

        Returns:
            Landmarks float32 ``[68, 2]`` ``(x, y)`` in image pixels.
        """
        ...


def dlib_predictor_path() -> Path:
    """Path of the 68-point dlib shape predictor shipped by ``face_recognition_models``.

    Found without importing the package (its ``__init__`` imports the deprecated ``pkg_resources``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise AvsyncError("the dlib landmark model is missing: install face_recognition_models")
    return Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"


FRONTAL_FACE_DETECTOR = Path(__file__).resolve().parent.parent / "assets" / "dlib_frontal_face_detector.svm"
"""dlib's frontal face detector as ``fhog_object_detector.save`` writes it (see the NOTICE beside it)."""
FRONTAL_FACE_DETECTOR_DLIB = "20.0.1"
"""The dlib version `FRONTAL_FACE_DETECTOR` was written from; with any other, dlib builds its own."""


def frontal_face_detector():  # noqa: ANN201 (dlib.fhog_object_detector, imported lazily)
    """dlib's HOG frontal face detector (``dlib.get_frontal_face_detector``).

    Read from the copy in the package (about 1 ms) when the installed dlib is the version it was
    written from; dlib itself builds it from a compressed string in about 0.25 s of one core, at
    every start of the lips reader. The same detector either way (a test compares them).
    """
    import dlib

    if dlib.__version__ == FRONTAL_FACE_DETECTOR_DLIB and FRONTAL_FACE_DETECTOR.is_file():
        return dlib.fhog_object_detector(str(FRONTAL_FACE_DETECTOR))
    return dlib.get_frontal_face_detector()


def _to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return image
    return np.repeat(image[:, :, None], 3, axis=2)


class HogDetector:
    """dlib's HOG + linear SVM frontal face detector (finds faces from about 80 px wide).

    Args:
        upsample: how many times dlib doubles the image before detecting (0 = as given).
    """

    def __init__(self, upsample: int = 0) -> None:
        self._detector = frontal_face_detector()
        self.upsample = upsample

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes float ``[K, 4]`` and scores ``[K]`` of the faces in a uint8 gray or RGB frame."""
        rects, scores, _ = self._detector.run(np.ascontiguousarray(_to_gray(image)), self.upsample, 0.0)
        boxes = np.array([(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects], dtype=np.float64)
        return boxes.reshape(-1, 4), np.asarray(scores, dtype=np.float64)


PREDICT_MARGIN = 1.0
"""Face sizes of picture kept around a face's box for dlib's shape predictor."""


class DlibLandmarks:
    """dlib HOG face detector plus the 68-point regression-tree shape predictor (CPU)."""

    name = "dlib"

    def __init__(self, upsample: int = 0) -> None:
        import dlib

        self._dlib = dlib
        self.detect = HogDetector(upsample)
        self._predictor = dlib.shape_predictor(str(dlib_predictor_path()))

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Landmarks float32 ``[68, 2]`` of the face in ``box`` (see `LandmarkBackend.predict`).

        Only the face and a margin of `PREDICT_MARGIN` face sizes around it are converted to gray
        and handed to dlib (not the whole frame: 4x fewer pixels copied for a face a third of a
        720p frame's height); the regression trees read pixels near the face only, so the
        landmarks are the same.
        """
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        margin = int(PREDICT_MARGIN * max(x1 - x0, y1 - y0))
        left, top = max(0, x0 - margin), max(0, y0 - margin)
        patch = _to_gray(image[top : max(top + 1, y1 + margin), left : max(left + 1, x1 + margin)])
        shape = self._predictor(np.ascontiguousarray(patch), self._dlib.rectangle(x0 - left, y0 - top, x1 - 1 - left, y1 - 1 - top))
        return np.array([(p.x + left, p.y + top) for p in shape.parts()], dtype=np.float32)


def fan_checkpoint_dir() -> Path:
    """The folder FAN weights are read from: ``$TORCH_HOME/hub/checkpoints`` (torch's hub cache)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def fan_weight_files(detector: str) -> list[Path]:
    """The weight files the FAN backend needs, as face-alignment names them.

    Args:
        detector: ``"dlib"`` (only the 2D-FAN landmark network) or ``"sfd"`` (plus S3FD).

    Returns:
        Full paths under `fan_checkpoint_dir`.
    """
    from face_alignment.api import models_urls as fan_urls
    from face_alignment.detection.sfd.sfd_detector import models_urls as sfd_urls

    urls = [fan_urls["2DFAN-4"]] + ([sfd_urls["s3fd"]] if detector == "sfd" else [])
    folder = fan_checkpoint_dir()
    return [folder / os.path.basename(urlparse(url).path) for url in urls]


def check_fan_weights(detector: str) -> list[Path]:
    """Return the FAN weight files, or raise if any is missing (nothing is ever downloaded).

    Args:
        detector: ``"dlib"`` or ``"sfd"``.

    Raises:
        AvsyncError: naming the missing files and the folder they are expected in.
    """
    files = fan_weight_files(detector)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise AvsyncError(
            f"FAN weights missing: {', '.join(missing)} not found in {files[0].parent} "
            "(copy them there or set TORCH_HOME; avsync never downloads weights)"
        )
    return files


class FanLandmarks:
    """face-alignment's 2D-FAN landmark network; built on first use, GPU when available.

    Args:
        device: ``"cuda"``, ``"cpu"``, ...; None picks CUDA when present.
        detector: ``"dlib"`` (HOG boxes, as the dlib backend) or ``"sfd"`` (S3FD network).
        upsample: HOG upsampling when ``detector="dlib"``.

    Raises:
        AvsyncError: when the detector name is unknown or, at first use, weights are missing.
    """

    name = "fan"

    def __init__(self, device: str | None = None, detector: str = "dlib", upsample: int = 0) -> None:
        if detector not in FAN_DETECTORS:
            raise AvsyncError(f"unknown FAN face detector {detector!r}; choose one of {', '.join(FAN_DETECTORS)}")
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.detector = detector
        self._hog = HogDetector(upsample) if detector == "dlib" else None
        self._model = None

    def _fan(self):  # noqa: ANN202 (face_alignment.FaceAlignment, imported lazily)
        if self._model is None:
            files = check_fan_weights(self.detector)
            from face_alignment import FaceAlignment, LandmarksType

            kwargs = {"face_detector": "folder"}  # boxes always come from us, never from a file
            if self.detector == "sfd":
                kwargs = {"face_detector": "sfd", "face_detector_kwargs": {"path_to_detector": str(files[1])}}
            self._model = FaceAlignment(
                LandmarksType.TWO_D, device=self.device, flip_input=False, compile=self.device != "cpu", **kwargs
            )
        return self._model

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes float ``[K, 4]`` and scores ``[K]`` (see `LandmarkBackend.detect`)."""
        if self._hog is not None:
            return self._hog(image)
        found = np.asarray(self._fan().face_detector.detect_from_image(_to_rgb(image)), dtype=np.float64).reshape(-1, 5)
        return found[:, :4], found[:, 4]

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Landmarks float32 ``[68, 2]`` of the face in ``box`` (see `LandmarkBackend.predict`)."""
        found = self._fan().get_landmarks_from_image(_to_rgb(image), detected_faces=[np.asarray(box, dtype=np.float64)])
        return np.asarray(found[0], dtype=np.float32)


def make_backend(name: str, *, device: str | None = None, fan_detector: str = "dlib", upsample: int = 0) -> LandmarkBackend:
    """The landmark backend called ``name``, built once per process (loading models takes seconds).

    Args:
        name: ``"dlib"``, ``"fan"`` or ``"mesh"``.
        device: torch device for FAN (ignored by dlib and mesh).
        fan_detector: FAN's face detector, ``"dlib"`` or ``"sfd"``.
        upsample: HOG detector upsampling.

    Raises:
        AvsyncError: for an unknown backend name.
    """
    if name in ("dlib", "mesh"):
        return _built_backend(name, None, "dlib", upsample if name == "dlib" else 0)
    if name == "fan":
        return _built_backend(name, device, fan_detector, upsample)
    raise AvsyncError(f"unknown landmark backend {name!r}; choose one of {', '.join(BACKENDS)}")


@functools.lru_cache(maxsize=4)
def _built_backend(name: str, device: str | None, fan_detector: str, upsample: int) -> LandmarkBackend:
    if name == "dlib":
        return DlibLandmarks(upsample)
    if name == "mesh":
        from avsync.features.mesh import MeshLandmarks

        return MeshLandmarks()
    return FanLandmarks(device, fan_detector, upsample)


def interocular(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (36, 45), the face-size unit.

    Args:
        landmarks: float ``[..., 68, 2]``.

    Returns:
        float ``[...]``.
    """
    return np.linalg.norm(landmarks[..., LEFT_EYE_OUTER, :] - landmarks[..., RIGHT_EYE_OUTER, :], axis=-1)


def roll_angle(landmarks: np.ndarray) -> np.ndarray:
    """In-plane head rotation (radians) of the line from landmark 36 to 45; 0 for an upright face.

    Args:
        landmarks: float ``[..., 68, 2]``.

    Returns:
        float ``[...]``.
    """
    eye_line = landmarks[..., LEFT_EYE_OUTER, :] - landmarks[..., RIGHT_EYE_OUTER, :]
    return np.arctan2(eye_line[..., 1], eye_line[..., 0])


def mouth_centre(landmarks: np.ndarray) -> np.ndarray:
    """Mean of the 20 lip landmarks 48-67.

    Args:
        landmarks: float ``[..., 68, 2]``.

    Returns:
        float ``[..., 2]``.
    """
    return landmarks[..., MOUTH, :].mean(axis=-2)


def face_size(landmarks: np.ndarray) -> np.ndarray:
    """Face scale in pixels that ignores the mouth and bends little with head turns.

    The quadratic mean of the inter-ocular distance (shrinks when the head turns left/right) and
    the eye-to-nose-tip distance scaled to match it on a frontal face (shrinks when the head
    nods); equal to the inter-ocular distance on a frontal face.

    Args:
        landmarks: float ``[..., 68, 2]``.

    Returns:
        float ``[...]``.
    """
    eyes = (landmarks[..., LEFT_EYE_OUTER, :] + landmarks[..., RIGHT_EYE_OUTER, :]) / 2
    eye_nose = np.linalg.norm(landmarks[..., NOSE_TIP, :] - eyes, axis=-1) / EYE_NOSE_PER_INTEROCULAR
    return np.sqrt((interocular(landmarks) ** 2 + eye_nose**2) / 2)


UPPER_INNER_LIP, LOWER_INNER_LIP = 62, 66
"""0-based iBUG indices of the middle of the upper and lower inner lip."""
JAW_LEFT, JAW_RIGHT = 0, 16
"""The ends of the jaw line (face width)."""


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip opening relative to face width.

    Args:
        landmarks: float [T, 68, 2], NaN where the frame has no face.

    Returns:
        float [T], NaN where invalid.
    """
    lips = np.linalg.norm(landmarks[:, UPPER_INNER_LIP] - landmarks[:, LOWER_INNER_LIP], axis=1)
    width = np.linalg.norm(landmarks[:, JAW_RIGHT] - landmarks[:, JAW_LEFT], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        opening = lips / width
    opening[~np.isfinite(opening)] = np.nan
    return opening
