"""Landmark backends (dlib, FAN selection and weight checks) and face tracking on real face images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
from conftest import track_faces

from avsync.errors import AvsyncError
from avsync.features.landmarks import (
    FRONTAL_FACE_DETECTOR,
    FRONTAL_FACE_DETECTOR_DLIB,
    DlibLandmarks,
    FanLandmarks,
    check_fan_weights,
    face_size,
    fan_weight_files,
    frontal_face_detector,
    interocular,
    make_backend,
    mouth_centre,
    roll_angle,
)
from avsync.features.tracking import (
    FACE_TOO_SMALL,
    NO_FACE,
    UNSTABLE,
    FaceTracker,
    TrackerConfig,
    box_from_landmarks,
    iou,
)
from benchmarks.bench_prepare import face_frames

# Hand-annotated on skimage.data.astronaut() (512x512): the mouth corners and the middle of the
# lips (read off a gridded plot of the photograph, not from any landmark detector).
ASTRONAUT_MOUTH_CORNERS = np.array([[203.0, 141.0], [247.0, 140.0]])
ASTRONAUT_MOUTH_CENTRE = np.array([225.0, 147.0])
ASTRONAUT_FACE_BOX = np.array([175.0, 76.0, 265.0, 166.0])  # dlib's box, per the synth notes


@pytest.fixture(scope="module")
def astronaut_gray() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)


def paste_face(canvas: np.ndarray, face: np.ndarray, width: int, at: tuple[int, int]) -> None:
    """Paste the astronaut photograph scaled to `width` px with its top-left corner at `at` (x, y)."""
    scaled = cv2.resize(face, (width, width), interpolation=cv2.INTER_AREA)
    x, y = at
    canvas[y : y + width, x : x + width] = scaled


def test_dlib_finds_the_astronaut_and_puts_the_lips_on_her_mouth(astronaut_gray: np.ndarray) -> None:
    backend = make_backend("dlib")
    boxes, scores = backend.detect(astronaut_gray)
    assert len(boxes) >= 1
    face = boxes[np.argmax(scores)]
    assert iou(ASTRONAUT_FACE_BOX, face[None])[0] > 0.7
    landmarks = backend.predict(astronaut_gray, face)
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    assert np.linalg.norm(mouth_centre(landmarks) - ASTRONAUT_MOUTH_CENTRE) < 5.0
    assert np.abs(landmarks[[48, 54]] - ASTRONAUT_MOUTH_CORNERS).max() < 5.0
    # RGB input gives the same landmarks as gray.
    rgb_landmarks = backend.predict(skimage.data.astronaut(), face)
    assert np.abs(rgb_landmarks - landmarks).max() <= 1.0


def test_the_shipped_face_detector_is_dlib_s_own(tmp_path, astronaut_gray: np.ndarray) -> None:
    """The copy of dlib's frontal face detector in the package (it loads 0.25 s sooner) is the
    installed dlib's, byte for byte, and finds the same faces with the same scores."""
    import dlib

    assert dlib.__version__ == FRONTAL_FACE_DETECTOR_DLIB  # pinned: a new dlib needs a new copy (or none)
    own = dlib.get_frontal_face_detector()
    own.save(str(tmp_path / "own.svm"))
    assert (tmp_path / "own.svm").read_bytes() == FRONTAL_FACE_DETECTOR.read_bytes()
    shipped = frontal_face_detector()
    image = np.ascontiguousarray(np.hstack([astronaut_gray, cv2.resize(astronaut_gray, (256, 256))[:, ::-1].repeat(2, 0)]))
    for upsample in (0, 1):
        ours, theirs = shipped.run(image, upsample, -0.5), own.run(image, upsample, -0.5)
        assert len(ours[0]) >= 2
        corners = [[(r.left(), r.top(), r.right(), r.bottom()) for r in found[0]] for found in (ours, theirs)]
        assert corners[0] == corners[1]
        assert ours[1] == theirs[1] and ours[2] == theirs[2]  # scores and which of dlib's 5 filters fired


def test_another_dlib_builds_its_own_face_detector(monkeypatch) -> None:
    import dlib

    built = object()
    monkeypatch.setattr(dlib, "get_frontal_face_detector", lambda: built)
    assert frontal_face_detector() is not built
    monkeypatch.setattr(dlib, "__version__", "19.24.0")
    assert frontal_face_detector() is built


def test_backends_are_built_once_and_unknown_names_are_user_errors() -> None:
    assert make_backend("dlib") is make_backend("dlib", device="cuda")
    assert isinstance(make_backend("dlib"), DlibLandmarks)
    assert isinstance(make_backend("fan", device="cpu"), FanLandmarks)
    with pytest.raises(AvsyncError, match="unknown landmark backend 'mediapipe'"):
        make_backend("mediapipe")
    with pytest.raises(AvsyncError, match="unknown FAN face detector"):
        FanLandmarks("cpu", detector="retina")


def test_fan_without_weights_names_the_files_and_folder_and_downloads_nothing(tmp_path, monkeypatch) -> None:
    import face_alignment.utils
    import torch.hub

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", no_download)
    folder = tmp_path / "hub" / "checkpoints"
    assert [f.name for f in fan_weight_files("dlib")] == ["2DFAN4-11f355bf06.pth.tar"]
    assert [f.name for f in fan_weight_files("sfd")] == ["2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth"]
    with pytest.raises(AvsyncError) as error:
        check_fan_weights("sfd")
    message = str(error.value)
    assert "2DFAN4-11f355bf06.pth.tar" in message and "s3fd-619a316812.pth" in message and str(folder) in message
    backend = FanLandmarks("cpu", detector="dlib")  # lazy: building it checks nothing yet
    with pytest.raises(AvsyncError, match="2DFAN4-11f355bf06.pth.tar"):
        backend.predict(np.zeros((64, 64), np.uint8), np.array([0.0, 0.0, 63.0, 63.0]))


@pytest.mark.slow
def test_fan_runs_from_local_weights_only(tmp_path, monkeypatch, astronaut_gray: np.ndarray) -> None:
    """FAN is built from files in $TORCH_HOME (random weights here: this checks the plumbing, not accuracy)."""
    import face_alignment.utils
    import torch
    from face_alignment.models import FAN

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", no_download)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), folder / "2DFAN4-11f355bf06.pth.tar")
    backend = FanLandmarks("cpu", detector="dlib")
    boxes, _ = backend.detect(astronaut_gray)
    assert iou(ASTRONAUT_FACE_BOX, boxes)[0] > 0.7  # the shared HOG detector
    landmarks = backend.predict(astronaut_gray, boxes[0])
    assert landmarks.shape == (68, 2) and np.isfinite(landmarks).all()
    # Heatmap maxima are mapped back into (around) the face box, in image pixels.
    assert (landmarks >= boxes[0][:2] - 100).all() and (landmarks <= boxes[0][2:] + 100).all()


def test_face_size_roll_and_interocular_follow_a_similarity_transform(astronaut_gray: np.ndarray) -> None:
    backend = make_backend("dlib")
    landmarks = backend.predict(astronaut_gray, ASTRONAUT_FACE_BOX).astype(np.float64)
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 1.5 * landmarks @ rotation.T + np.array([30.0, -12.0])
    assert interocular(moved) == pytest.approx(1.5 * interocular(landmarks), rel=1e-9)
    assert face_size(moved) == pytest.approx(1.5 * face_size(landmarks), rel=1e-9)
    assert roll_angle(moved) - roll_angle(landmarks) == pytest.approx(angle, abs=1e-9)
    # On this frontal face the face size is close to the inter-ocular distance.
    assert face_size(landmarks) == pytest.approx(interocular(landmarks), rel=0.15)


def test_box_from_landmarks_matches_the_detector_box(astronaut_gray: np.ndarray) -> None:
    backend = make_backend("dlib")
    boxes, _ = backend.detect(astronaut_gray)
    landmarks = backend.predict(astronaut_gray, boxes[0])
    assert iou(boxes[0], box_from_landmarks(landmarks)[None])[0] > 0.8


def test_tracker_follows_a_moving_face_and_detects_every_n_frames() -> None:
    frames = face_frames(50, (320, 240), 25.0, face_width=0.35)
    for detect_every, expected_runs in ((5, 10), (10, 5)):
        track = track_faces(frames, make_backend("dlib"), TrackerConfig(detect_every=detect_every))
        assert track.valid.all()
        assert abs(track.detector_runs - expected_runs) <= 1
        # The lips move with the face: the mouth centre travels smoothly (< 4 px per frame).
        centres = mouth_centre(track.landmarks)
        assert np.abs(np.diff(centres, axis=0)).max() < 4.0


def test_frames_without_a_face_are_invalid_with_a_reason_and_the_face_is_found_again() -> None:
    frames = face_frames(40, (320, 240), 25.0, face_width=0.35)
    frames[10:20] = 90  # the face leaves: flat gray frames
    track = track_faces(frames, make_backend("dlib"), TrackerConfig(detect_every=5))
    assert track.valid[:10].all()
    assert not track.valid[10:20].any()
    assert set(track.invalid_reason[10:20]) == {NO_FACE}
    assert np.isnan(track.landmarks[10:20]).all()
    assert track.valid[25:].all()  # found again within detect_every frames
    assert track.invalid_reason[25:] == [""] * 15


def test_several_faces_the_largest_is_chosen_and_kept_when_a_larger_one_appears(astronaut_gray: np.ndarray) -> None:
    face = astronaut_gray[40:220, 130:310]  # face box about (45..135) in this 180 px crop
    canvas = np.full((20, 300, 520), 90, np.uint8)
    for frame in canvas[:10]:
        paste_face(frame, face, 160, (20, 60))  # singer alone at first
    for frame in canvas[10:]:
        paste_face(frame, face, 160, (20, 60))
        paste_face(frame, face, 280, (230, 10))  # a larger face joins
    track = track_faces(canvas, make_backend("dlib"), TrackerConfig(detect_every=3))
    assert track.valid.all()
    assert (mouth_centre(track.landmarks)[:, 0] < 200).all()  # still the first (left) face

    both = canvas[10:]  # both present from the start: the largest (right) face
    track = track_faces(both, make_backend("dlib"), TrackerConfig(detect_every=3))
    assert track.valid.all() and (mouth_centre(track.landmarks)[:, 0] > 300).all()
    for face, side in (("left", -1), ("right", 1), ("0.1,0.5", -1), ("largest", 1)):  # the user's choice
        tracker = FaceTracker(make_backend("dlib"), TrackerConfig(detect_every=3, face=face))
        centres = np.array([mouth_centre(points[None])[0] for points, _ in map(tracker.update, both) if points is not None])
        assert len(centres) == len(both) and (np.sign(centres[:, 0] - 260) == side).all(), face
        assert tracker.faces_seen == 2 and (tracker.chosen_at[0] < 0.5) == (side < 0)
    with pytest.raises(ValueError, match="face must be"):
        TrackerConfig(face="middle")
    with pytest.raises(ValueError, match="must lie in 0..1"):
        TrackerConfig(face="2,0.5")


def test_small_faces_are_marked_too_small() -> None:
    frames = face_frames(10, (320, 240), 25.0, face_width=0.35)
    track = track_faces(frames, make_backend("dlib"), TrackerConfig(min_face_size=200.0))
    assert set(track.invalid_reason) == {FACE_TOO_SMALL}
    assert np.isnan(track.landmarks).all()


class CollapsingBackend:
    """A detector that finds one box and a predictor whose landmarks collapse to a point."""

    name = "collapsing"

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = image.shape[1] / 320
        return np.array([[100.0, 60.0, 200.0, 160.0]]) * scale, np.ones(1)

    def predict(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        return np.full((68, 2), 150.0, np.float32)


def test_collapsed_landmarks_trigger_redetection_then_are_invalid() -> None:
    frames = np.zeros((6, 240, 320), np.uint8)
    track = track_faces(frames, CollapsingBackend(), TrackerConfig(detect_every=5))
    assert set(track.invalid_reason) <= {UNSTABLE, NO_FACE}
    assert track.invalid_reason[0] == UNSTABLE
    assert not track.valid.any()
    assert track.detector_runs >= 2  # the first frame re-detected before giving up
