"""Mouth crops: geometry of the resampling, crops on a real face's mouth, temporal smoothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from avsync.features.landmarks import face_size, make_backend, mouth_centre
from avsync.features.mouth import (
    CropConfig,
    MouthCropper,
    crop_mouth,
    mouth_geometry,
    window_mean,
)

# Hand-annotated on skimage.data.astronaut() (see tests/test_landmarks.py).
ASTRONAUT_MOUTH_CORNERS = np.array([[203.0, 141.0], [247.0, 140.0]])
ASTRONAUT_FACE_BOX = np.array([175.0, 76.0, 265.0, 166.0])


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    """The gray astronaut photograph and its 68 dlib landmarks."""
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    landmarks = make_backend("dlib").predict(gray, ASTRONAUT_FACE_BOX)
    return gray, landmarks


def to_crop(points: np.ndarray, geometry: np.ndarray, size: int = 64) -> np.ndarray:
    """Frame points ``[N, 2]`` in the pixel coordinates of the crop cut with `geometry`."""
    centre, side, angle = geometry[:2], geometry[2], geometry[3]
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])  # R(-angle)
    return (points - centre) @ rotation.T / (side / size) + (size - 1) / 2


def blob_frame(centre: tuple[float, float], size: tuple[int, int] = (320, 240), sigma: float = 3.0) -> np.ndarray:
    """uint8 ``[H, W]`` black frame with a bright Gaussian blob at `centre` (x, y)."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    blob = 250.0 * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))
    return np.round(blob).astype(np.uint8)


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted (x, y) centre of a gray image."""
    weights = image.astype(np.float64)
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(weights * x).sum(), (weights * y).sum()]) / weights.sum()


@pytest.mark.parametrize("side", [48.0, 64.0, 256.0])  # upsampled, 1:1, area-shrunk first (step 4)
@pytest.mark.parametrize("angle_deg", [0.0, 25.0])
def test_crop_mouth_maps_frame_points_where_the_geometry_says(side: float, angle_deg: float) -> None:
    centre = np.array([150.3, 110.7])
    offset = np.array([0.25, 0.1]) * side  # a blob a quarter of the crop right of its centre
    frame = blob_frame(tuple(centre + offset), sigma=side / 16)
    geometry = np.array([*centre, side, np.deg2rad(angle_deg)])
    crop = crop_mouth(frame, geometry, 64)
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    expected = to_crop((centre + offset)[None], geometry)[0]
    assert np.linalg.norm(centroid(crop) - expected) < 0.5
    # The blob keeps its size in crop pixels: sigma_crop = sigma_frame / step = 4 px.
    assert crop.max() > 200


def test_crop_repeats_edge_pixels_outside_the_frame() -> None:
    frame = np.full((100, 100), 77, np.uint8)
    crop = crop_mouth(frame, np.array([5.0, 5.0, 80.0, 0.0]), 64)
    assert (crop == 77).all()


def test_mouth_geometry_is_centred_on_the_lips_and_scaled_by_the_face(astronaut) -> None:
    _, landmarks = astronaut
    geometry = mouth_geometry(landmarks[None], scale=1.1)[0]
    np.testing.assert_allclose(geometry[:2], mouth_centre(landmarks.astype(np.float64)), atol=1e-6)
    assert geometry[2] == pytest.approx(1.1 * face_size(landmarks.astype(np.float64)))
    assert abs(geometry[3]) < np.deg2rad(10)  # the astronaut's head is nearly upright
    assert np.isnan(mouth_geometry(np.full((1, 68, 2), np.nan), 1.1)).all()


def test_window_mean_skips_invalid_rows() -> None:
    rows = np.array([[1.0, 2.0, 3.0, 0.0], [np.nan] * 4, [3.0, 4.0, 5.0, 0.2]])
    np.testing.assert_allclose(window_mean(rows), [2.0, 3.0, 4.0, 0.1])
    assert np.isnan(window_mean(np.full((3, 4), np.nan))).all()


def test_crops_land_on_the_mouth_of_a_real_face(astronaut) -> None:
    gray, landmarks = astronaut
    cropper = MouthCropper(CropConfig())
    crops = [crop for _ in range(6) for crop in cropper.push(gray, landmarks)] + cropper.flush()
    assert len(crops) == 6
    crop = crops[3]
    geometry = mouth_geometry(landmarks[None], CropConfig().scale)[0]
    # The hand-annotated mouth corners lie inside the crop, left and right of its centre, on its
    # middle row, with a margin around the mouth.
    corners = to_crop(ASTRONAUT_MOUTH_CORNERS, geometry)
    assert 6 < corners[0, 0] < 24 and 40 < corners[1, 0] < 58
    assert np.abs(corners[:, 1] - 31.5).max() < 8
    mouth_width = corners[1, 0] - corners[0, 0]
    # Mouth width / crop side: 0.68 on the smiling astronaut; 0.45-0.59 (median 0.54, i.e. a crop
    # of 1.85 mouth widths) on the 39 real clips of /work/shared/data/realav.
    assert 0.45 < mouth_width / 64 < 0.72
    # The crop shows the photograph's pixels there: close to a direct, unrotated resample of the
    # same square, far from one a quarter crop away.
    def resample(shift_y: float) -> np.ndarray:
        x0, y0 = geometry[:2] - geometry[2] / 2 + np.array([0.0, shift_y])
        side = geometry[2]
        matrix = np.array([[side / 64, 0, x0 + side / 128 - 0.5], [0, side / 64, y0 + side / 128 - 0.5]])
        return cv2.warpAffine(gray, matrix, (64, 64), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)

    error = np.abs(crop.astype(int) - resample(0.0)).mean()
    assert error < 8
    assert np.abs(crop.astype(int) - resample(geometry[2] / 4)).mean() > 2 * error


def test_cropper_smooths_jitter_and_follows_constant_motion(astronaut) -> None:
    _, base = astronaut
    count = 60
    results = {}
    for window in (1, 9):
        cropper = MouthCropper(CropConfig(smooth_window=window))
        crops = []
        rng = np.random.default_rng(0)
        for index in range(count):
            centre = np.array([100.0 + 1.5 * index, 120.0])  # 1.5 px per frame to the right
            frame = blob_frame(tuple(centre))
            jitter = rng.normal(0.0, 1.5, size=2)  # landmark noise, the same for every point
            landmarks = (base - mouth_centre(base) + centre + jitter).astype(np.float32)
            crops += cropper.push(frame, landmarks)
        crops += cropper.flush()
        assert len(crops) == count
        results[window] = np.array([centroid(crop) for crop in crops[10:-10]]) - 31.5
    raw_error = np.linalg.norm(results[1], axis=1)
    smooth_error = np.linalg.norm(results[9], axis=1)
    assert raw_error.mean() > 1.0  # unsmoothed crops jitter with the landmarks
    assert smooth_error.mean() < 0.5 * raw_error.mean()
    assert np.abs(results[9].mean(axis=0)).max() < 0.4  # no lag behind the moving blob


def test_frames_without_landmarks_get_zero_crops_and_do_not_stop_the_stream(astronaut) -> None:
    gray, landmarks = astronaut
    cropper = MouthCropper(CropConfig(smooth_window=5))
    pattern = [landmarks, None, landmarks, landmarks, None, None, landmarks]
    crops = [crop for points in pattern for crop in cropper.push(gray, points)]
    assert len(crops) == len(pattern) - 2  # two frames wait for later ones
    crops += cropper.flush()
    assert len(crops) == len(pattern)
    for crop, points in zip(crops, pattern, strict=True):
        assert (crop == 0).all() == (points is None)
    # Valid frames next to invalid ones are cropped like the others (invalid rows are skipped).
    np.testing.assert_array_equal(crops[0], crops[2])


def test_rgb_crops_have_three_channels(astronaut) -> None:
    _, landmarks = astronaut
    rgb = skimage.data.astronaut()
    cropper = MouthCropper(CropConfig(rgb=True, size=48))
    crops = cropper.push(rgb, landmarks) + cropper.push(rgb, None) + cropper.flush()
    assert [crop.shape for crop in crops] == [(48, 48, 3), (48, 48, 3)]
    assert crops[0].any() and not crops[1].any()
    # Red lips: the crop's centre is redder than its average.
    centre = crops[0][18:30, 14:34].astype(float)
    assert (centre[..., 0] - centre[..., 1]).mean() > (crops[0][..., 0].astype(float) - crops[0][..., 1]).mean()
