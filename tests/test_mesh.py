"""The ``mesh`` landmark backend (BlazeFace + MediaPipe face mesh through LiteRT) on tiny generated faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
from conftest import track_faces
from scipy.stats import spearmanr

from avsync.errors import AvsyncError
from avsync.features.landmarks import interocular, make_backend, mouth_centre, mouth_opening
from avsync.features.mouth import CropConfig, MouthCropper
from avsync.features.mouth import mouth_geometry as crop_geometry
from avsync.features.tracking import NO_FACE, TrackerConfig, iou
from avsync.synth.face import load_source_face, mouth_geometry, warp_mouth
from benchmarks.bench_prepare import face_frames

pytest.importorskip("ai_edge_litert")

from avsync.features.mesh import MESH_TO_IBUG, MeshLandmarks, blazeface_anchors  # noqa: E402

# Hand-annotated on skimage.data.astronaut() (as in test_landmarks.py).
ASTRONAUT_MOUTH_CORNERS = np.array([[203.0, 141.0], [247.0, 140.0]])
ASTRONAUT_MOUTH_CENTRE = np.array([225.0, 147.0])
ASTRONAUT_FACE_BOX = np.array([175.0, 76.0, 265.0, 166.0])  # dlib's HOG box


@pytest.fixture(scope="module")
def mesh() -> MeshLandmarks:
    return make_backend("mesh")


def test_the_mesh_finds_the_astronaut_and_puts_the_lips_on_her_mouth(mesh: MeshLandmarks) -> None:
    for image in (skimage.data.astronaut(), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)):
        boxes, scores = mesh.detect(image)
        assert len(boxes) == 1 and 0.5 < scores[0] <= 1.0
        assert iou(ASTRONAUT_FACE_BOX, boxes)[0] > 0.7  # BlazeFace's box in dlib's convention
        landmarks = mesh.predict(image, boxes[0])
        assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
        assert np.linalg.norm(mouth_centre(landmarks) - ASTRONAUT_MOUTH_CENTRE) < 5.0
        assert np.abs(landmarks[[48, 54]] - ASTRONAUT_MOUTH_CORNERS).max() < 5.0


def test_the_68_points_read_off_the_mesh_are_dlibs_points(mesh: MeshLandmarks) -> None:
    """Each mapped mesh vertex lies where dlib puts the same iBUG point (a wrong index is far off)."""
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    dlib_points = make_backend("dlib").predict(image, ASTRONAUT_FACE_BOX)
    mesh_points = mesh.predict(image, ASTRONAUT_FACE_BOX)
    distance = np.linalg.norm(mesh_points - dlib_points, axis=1) / interocular(dlib_points)
    assert len(set(MESH_TO_IBUG.tolist())) == 68
    assert distance.mean() < 0.06
    assert distance[48:68].max() < 0.1  # the lips, which the features are made of
    assert distance.max() < 0.15


def test_the_mesh_follows_the_synthetic_singers_mouth_opening(mesh: MeshLandmarks) -> None:
    """Open the synthetic singer's lips step by step: the mesh's inner-lip opening grows with them.

    Only up to a quarter of the synthetic mouth's range: past it the mesh's opening stays at about
    0.12 face widths while the warp drops the jaw to 0.32 (dlib follows to 0.29; docs/real_faces.md).
    """
    source = load_source_face()
    geometry = mouth_geometry(source)
    rgba = np.dstack([source.rgb, source.alpha])
    x0, y0, x1, y1 = geometry.box
    levels = np.linspace(0.0, 0.25, 6)
    frames = []
    for level in levels:
        box = warp_mouth(rgba, geometry, level, 1.0)
        image = source.rgb.copy()
        alpha = box[..., 3:]
        image[y0:y1, x0:x1] = alpha * box[..., :3] + (1 - alpha) * image[y0:y1, x0:x1]
        frames.append(cv2.resize(np.clip(image, 0, 255).astype(np.uint8), None, fx=2.0, fy=2.0))
    boxes, _ = mesh.detect(frames[0])
    assert len(boxes) == 1
    landmarks = np.stack([mesh.predict(frame, boxes[0]) for frame in frames])
    assert np.isfinite(landmarks).all()
    opening = mouth_opening(landmarks)
    assert spearmanr(levels, opening).statistic >= 0.9
    assert opening[-1] - opening[0] > 0.04
    # The lips sit on the synthetic mouth (2x: the frames were upscaled).
    mouth_y = float(np.interp(geometry.center_x, geometry.xs, (geometry.upper + geometry.lower) / 2))
    assert np.abs(mouth_centre(landmarks[0]) - 2 * np.array([geometry.center_x, mouth_y])).max() < 6.0


def test_the_mesh_tracks_a_moving_face_and_its_mouth_crops_hold_the_mouth(mesh: MeshLandmarks) -> None:
    frames = face_frames(40, (320, 240), 25.0, face_width=0.35)
    frames[20:28] = 90  # the face leaves: flat gray frames
    track = track_faces(frames, mesh, TrackerConfig(detect_every=5))
    assert track.valid[:20].all() and track.valid[33:].all()
    assert not track.valid[20:28].any() and set(track.invalid_reason[20:28]) == {NO_FACE}
    assert np.abs(np.diff(mouth_centre(track.landmarks[:20]), axis=0)).max() < 4.0
    # The mouth box the crops are cut from (centre, side, angle) is dlib's on the same frames.
    reference = track_faces(frames, make_backend("dlib"), TrackerConfig(detect_every=5))
    both = track.valid & reference.valid
    assert both.sum() >= 25
    ours, theirs = (crop_geometry(t.landmarks[both], CropConfig().scale) for t in (track, reference))
    side = theirs[:, 2]
    assert np.abs(ours[:, :2] - theirs[:, :2]).max() < 0.1 * side.min()
    assert np.abs(ours[:, 2] / side - 1).max() < 0.1
    assert np.degrees(np.abs(ours[:, 3] - theirs[:, 3])).max() < 3.0
    cropper = MouthCropper(CropConfig())
    crops = [crop for frame, points in zip(frames, track.landmarks) for crop in cropper.push(frame, None if np.isnan(points).any() else points)]
    crops += cropper.flush()
    assert len(crops) == len(frames) and crops[0].shape == (64, 64)
    assert crops[0].std() > 10 and not crops[24].any()  # a picture where the face is, zeros where it is not


def test_no_face_means_no_landmarks_and_missing_models_are_user_errors(mesh: MeshLandmarks, tmp_path) -> None:
    flat = np.full((240, 320), 90, np.uint8)
    boxes, scores = mesh.detect(flat)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    assert np.isnan(mesh.predict(flat, np.array([100.0, 60.0, 200.0, 160.0]))).all()  # the mesh's presence score
    assert make_backend("mesh") is mesh
    assert blazeface_anchors().shape == (896, 2)
    with pytest.raises(AvsyncError, match="face model missing: .*face_detection_short_range.tflite"):
        MeshLandmarks(tmp_path)


def test_a_still_face_gets_still_lips(mesh: MeshLandmarks, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crop stays on the mesh's own box when BlazeFace confirms the face (`MeshLandmarks.reanchor`)."""
    rng = np.random.default_rng(0)
    still = face_frames(1, (320, 240), 25.0, face_width=0.35)[0].astype(np.int16)
    frames = np.clip(still + rng.integers(-2, 3, (30, *still.shape)), 0, 255).astype(np.uint8)  # sensor noise
    lips = track_faces(frames, mesh, TrackerConfig(detect_every=5)).landmarks[:, 48:68]
    wobble = np.abs(np.diff(lips[5:], n=2, axis=0)).mean()  # pixels, after the box has settled
    assert np.isfinite(lips).all() and wobble < 0.6
    monkeypatch.setattr(MeshLandmarks, "reanchor", True)  # moved to BlazeFace's box every 5 frames
    lips = track_faces(frames, mesh, TrackerConfig(detect_every=5)).landmarks[:, 48:68]
    assert np.abs(np.diff(lips[5:], n=2, axis=0)).mean() > 2 * wobble


@pytest.mark.parametrize("shape", [(72, 128), (128, 96), (128, 128), (60, 128, 3)])
def test_network_inputs_are_the_image_scaled_in_every_channel_and_the_rest_untouched(shape) -> None:
    """`_fill_input` (OpenCV copies a gray image's values to the three channels, in place, also into
    a letterboxed corner whose rows are strided) equals the plain numpy formula to the bit."""
    from avsync.features.mesh import _fill_input

    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    tensor = np.full((1, 128, 128, 3), 7.0, np.float32)
    _fill_input(tensor, image, 127.5, 1.0)
    expected = np.full((1, 128, 128, 3), 7.0, np.float32)
    channels = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    expected[0, : shape[0], : shape[1]] = channels.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(tensor, expected)
