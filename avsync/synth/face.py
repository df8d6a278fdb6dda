"""A singing face made from a real photograph: the mouth region is warped to any opening/width.

The source is the portrait that ships with scikit-image (``skimage.data.astronaut()``). Its 68
landmarks are found once with dlib (the same detector and predictor the mouth pipeline uses). A
backward warp of the lower face then closes or opens the lips: the upper lip rises a little,
the lower lip and the jaw drop, the gap shows the upper teeth of the photograph and a dark mouth
cavity; the mouth narrows for rounded vowels and widens for spread ones. Everything else in the
photograph stays put, so only the mouth region depends on the singing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

# Part of the 512x512 astronaut photograph used as the singer (x0, y0, x1, y1): head, neck and
# shoulders, without the flag on the left and the badges below that dlib mistakes for faces.
SOURCE_CROP = (92, 0, 368, 330)
# Largest lip gap (mouth_open = 1) as a fraction of the face width (landmarks 0-16).
MAX_GAP_FRACTION = 0.32
# Share of the gap made by the upper lip rising; the lower lip and jaw make the rest.
UPPER_LIP_SHARE = 0.22
# Share of the lower lip's drop that the chin follows (the rest stretches the skin between them).
JAW_SHARE = 0.7
# Rows below the dropped chin over which the jaw displacement fades out.
NECK_SPAN = 12
CAVITY_RGB = np.array([38.0, 12.0, 18.0], dtype=np.float32)
TONGUE_RGB = np.array([125.0, 55.0, 60.0], dtype=np.float32)
# Quantisation of the mouth bank: openness levels and width step.
OPEN_LEVELS = 25
WIDTH_RANGE = (0.55, 1.3)
WIDTH_STEP = 0.05


@dataclass(frozen=True)
class SourceFace:
    """The source photograph, cut to `SOURCE_CROP`, with its person mask and landmarks.

    Args:
        rgb: float32 ``[H, W, 3]`` in 0..255.
        alpha: float32 ``[H, W]`` in 0..1 (1 on the person, 0 on the studio backdrop).
        landmarks: float32 ``[68, 2]`` (x, y) iBUG 68-point landmarks in crop pixels.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    landmarks: np.ndarray

    @property
    def face_width(self) -> float:
        """Distance between the jaw ends (landmarks 0 and 16) in crop pixels."""
        return float(np.linalg.norm(self.landmarks[16] - self.landmarks[0]))


def _person_mask(rgb: np.ndarray) -> np.ndarray:
    """Soft mask of everything but the bright, unsaturated backdrop touching the image border."""
    brightness = rgb.mean(axis=2)
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    labels, _ = ndimage.label((brightness > 140) & (saturation < 45))
    border = np.unique(np.concatenate([labels[0], labels[:, 0], labels[:, -1]]))
    backdrop = np.isin(labels, border[border > 0])
    # Pad by edge values so the morphology does not eat the backdrop along the image border.
    padded = np.pad(backdrop, 4, mode="edge")
    backdrop = ndimage.binary_closing(ndimage.binary_opening(padded, iterations=2), iterations=3)[4:-4, 4:-4]
    return ndimage.gaussian_filter((~backdrop).astype(np.float32), 1.0, mode="nearest")


@lru_cache(maxsize=1)
def load_source_face() -> SourceFace:
    """Load the astronaut portrait and find its landmarks with dlib (once per process).

    Returns:
        The source face.

    Raises:
        RuntimeError: dlib does not find the face (a broken installation).
    """
    import dlib
    import face_recognition_models
    import skimage.data

    image = skimage.data.astronaut()
    detector = dlib.get_frontal_face_detector()
    faces = detector(image, 1)
    x0, y0, x1, y1 = SOURCE_CROP
    inside = [f for f in faces if x0 <= f.left() and f.right() <= x1 and y0 <= f.top() and f.bottom() <= y1]
    if not inside:
        raise RuntimeError("dlib found no face in skimage.data.astronaut(); the dlib installation is broken")
    face = max(inside, key=lambda f: f.width())
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    shape = predictor(image, face)
    landmarks = np.array([[p.x - x0, p.y - y0] for p in shape.parts()], dtype=np.float32)
    rgb = image[y0:y1, x0:x1].astype(np.float32)
    return SourceFace(rgb=rgb, alpha=_person_mask(rgb), landmarks=landmarks)


@dataclass(frozen=True)
class MouthGeometry:
    """Where the mouth and jaw of a `SourceFace` are, as curves over x (crop pixels).

    Args:
        box: (x0, y0, x1, y1) region the mouth warp may change.
        xs: float32 ``[K]`` sample positions of the curves.
        upper: y of the upper lip's inner edge at `xs`.
        lower: y of the lower lip's inner edge at `xs` (``lower - upper`` = visible teeth).
        chin: y of the jaw contour at `xs`.
        center_x: x of the mouth centre.
        half_width: half the outer mouth width.
        max_gap: lip gap at mouth_open = 1, in pixels.
        jaw_reach: distance from the mouth centre at which the jaw drop has faded to 0.
    """

    box: tuple[int, int, int, int]
    xs: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    chin: np.ndarray
    center_x: float
    half_width: float
    max_gap: float
    jaw_reach: float


def mouth_geometry(source: SourceFace) -> MouthGeometry:
    """Derive the lip and jaw curves of `source` from its landmarks.

    Args:
        source: the source face.

    Returns:
        The mouth geometry.
    """
    points = source.landmarks
    left, right = points[48], points[54]
    center_x = float((left[0] + right[0]) / 2)
    half_width = float((right[0] - left[0]) / 2)
    xs = np.arange(int(points[2, 0]), int(points[14, 0]) + 1, dtype=np.float32)
    # Inner lip contours: upper 60-64 (left to right), lower 60, 67, 66, 65, 64.
    upper_points = points[[48, 60, 61, 62, 63, 64, 54]]
    lower_points = points[[48, 60, 67, 66, 65, 64, 54]]
    upper = np.interp(xs, upper_points[:, 0], upper_points[:, 1]) - 1.0
    lower = np.interp(xs, lower_points[:, 0], lower_points[:, 1])
    lower = np.maximum(lower, upper)
    outside = (xs < left[0]) | (xs > right[0])
    middle = (upper + lower) / 2
    upper[outside], lower[outside] = middle[outside], middle[outside]
    jaw = points[2:15]
    chin = np.interp(xs, jaw[:, 0], jaw[:, 1])
    max_gap = MAX_GAP_FRACTION * source.face_width
    x0 = int(points[2, 0]) - 4
    x1 = int(points[14, 0]) + 5
    y0 = int(points[33, 1]) + 2
    y1 = int(points[8, 1] + max_gap * (1 - UPPER_LIP_SHARE) * JAW_SHARE + NECK_SPAN + 4)
    return MouthGeometry((x0, y0, x1, y1), xs, upper.astype(np.float32), lower.astype(np.float32),
                         chin.astype(np.float32), center_x, half_width, float(max_gap),
                         min(center_x - x0, x1 - 1 - center_x) - 1)  # fmt: skip


def _width_map(x: np.ndarray, center: float, half_width: float, width: float, ramp: float) -> np.ndarray:
    """Source x of output x when the mouth (centre, half_width) is scaled by `width` (monotone)."""
    offset = x - center
    distance = np.abs(offset)
    scaled_half = half_width * width
    inner = center + offset / width
    outer_slope = (scaled_half + ramp - half_width) / ramp
    in_ramp = center + np.sign(offset) * (half_width + (distance - scaled_half) * outer_slope)
    return np.where(distance <= scaled_half, inner, np.where(distance < scaled_half + ramp, in_ramp, x))


def warp_mouth(
    rgba: np.ndarray, geometry: MouthGeometry, mouth_open: float, mouth_width: float
) -> np.ndarray:
    """Render the mouth box of a face with the lips opened and the mouth widened or narrowed.

    Args:
        rgba: float32 ``[H, W, 4]`` face image (0..255 colour, 0..1 alpha) in source crop pixels.
        geometry: the face's mouth geometry.
        mouth_open: 0 (lips closed) .. 1 (widest singing 'a').
        mouth_width: mouth width relative to the source (0.55 rounded 'u' .. 1.3 spread).

    Returns:
        float32 ``[y1 - y0, x1 - x0, 4]``: the warped content of ``geometry.box``.
    """
    x0, y0, x1, y1 = geometry.box
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    gap_center = geometry.max_gap * float(np.clip(mouth_open, 0, 1))
    drop_center = gap_center * (1 - UPPER_LIP_SHARE)
    mouth_y = float(np.interp(geometry.center_x, geometry.xs, (geometry.upper + geometry.lower) / 2))
    # Horizontal: scale the mouth about its centre, fading out towards the box edges so the
    # warp is continuous with the untouched face around the box.
    lip_bottom = mouth_y + drop_center + 10
    vertical_weight = np.clip(np.minimum((y - y0) / (mouth_y - 8 - y0), (y1 - 1 - y) / (y1 - 1 - lip_bottom)), 0, 1)
    room = min(geometry.center_x - x0, x1 - 1 - geometry.center_x)
    ramp = room - 2 - geometry.half_width * mouth_width
    mapped_x = _width_map(x, geometry.center_x, geometry.half_width, mouth_width, ramp=ramp)
    source_x = x + vertical_weight * (mapped_x - x)
    # Vertical, per column of the source: lip edges, the gap to open and the jaw drop.
    upper = np.interp(source_x, geometry.xs, geometry.upper)
    lower = np.interp(source_x, geometry.xs, geometry.lower)
    chin = np.interp(source_x, geometry.xs, geometry.chin)
    middle = (upper + lower) / 2
    u = (source_x - geometry.center_x) / geometry.half_width
    gap = gap_center * np.clip(1 - u**2, 0, 1) ** 0.6
    upper_edge = middle - UPPER_LIP_SHARE * gap
    lower_edge = middle + (1 - UPPER_LIP_SHARE) * gap
    jaw_profile = 0.5 * (1 + np.cos(np.pi * np.clip(np.abs(source_x - geometry.center_x) / geometry.jaw_reach, 0, 1)))
    jaw_drop = JAW_SHARE * drop_center * jaw_profile
    above = (upper - upper_edge) * np.clip((y - y0) / (upper_edge - y0), 0, 1)
    lip_span = 8 + 1.5 * jaw_drop
    lip_blend = np.clip((y - lower_edge) / lip_span, 0, 1)
    chin_out = np.maximum(chin, lower_edge + lip_span + 2) + jaw_drop
    neck = np.clip(1 - (y - chin_out) / NECK_SPAN, 0, 1)  # the dropped chin hides the top of the neck
    below = (lower - lower_edge) * (1 - lip_blend) - jaw_drop * lip_blend * neck
    source_y = np.where(y < (upper_edge + lower_edge) / 2, y + above, y + below)
    lips = _sample(rgba, source_x, source_y)
    # The gap: the photograph's upper teeth (unstretched) above a dark cavity with the tongue low.
    depth = y - upper_edge
    teeth_height = np.minimum(lower - upper, gap) * 0.8
    teeth = _sample(rgba, source_x, upper + depth)
    open_depth = np.clip(depth / np.maximum(gap, 1e-3), 0, 1)
    tongue = np.clip((open_depth - 0.6) / 0.4, 0, 1)[..., None] * np.clip(gap / 15, 0, 1)[..., None]
    cavity_rgb = (1 - tongue) * CAVITY_RGB + tongue * TONGUE_RGB
    teeth_cover = np.clip(teeth_height - depth + 0.5, 0, 1)[..., None]
    inside_rgb = teeth_cover * teeth[..., :3] + (1 - teeth_cover) * cavity_rgb
    coverage = (np.clip(y - upper_edge + 0.5, 0, 1) * np.clip(lower_edge - y + 0.5, 0, 1) * np.clip(gap, 0, 1))[..., None]
    out = lips.copy()
    out[..., :3] = (1 - coverage) * lips[..., :3] + coverage * inside_rgb
    out[..., 3:] = np.maximum(lips[..., 3:], coverage)
    return out


def _sample(rgba: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of every channel of `rgba` at (x, y): float32 ``[*x.shape, C]``."""
    coordinates = np.stack([y.ravel(), x.ravel()])
    channels = [ndimage.map_coordinates(rgba[..., c], coordinates, order=1, mode="nearest") for c in range(rgba.shape[2])]
    return np.stack(channels, axis=-1).reshape(*x.shape, rgba.shape[2])


def quantize_mouth(mouth_open: float, mouth_width: float) -> tuple[int, int]:
    """Bank indices (open level, width level) nearest to a mouth shape."""
    open_level = int(round(float(np.clip(mouth_open, 0, 1)) * (OPEN_LEVELS - 1)))
    width_level = int(round((float(np.clip(mouth_width, *WIDTH_RANGE)) - WIDTH_RANGE[0]) / WIDTH_STEP))
    return open_level, width_level


def level_shape(level: tuple[int, int]) -> tuple[float, float]:
    """The (mouth_open, mouth_width) a bank level renders."""
    return level[0] / (OPEN_LEVELS - 1), WIDTH_RANGE[0] + level[1] * WIDTH_STEP


def premultiplied(rgba: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 4]`` with colour multiplied by alpha (what warping and compositing need).

    Args:
        rgba: float32 ``[H, W, 4]``, colour 0..255 and alpha 0..1.
    """
    out = np.empty(rgba.shape, dtype=np.float32)
    out[..., :3] = rgba[..., :3] * rgba[..., 3:]
    out[..., 3] = rgba[..., 3] * 255
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class MouthBank:
    """Rendered mouth boxes of one face, by quantised shape, rendered on first use.

    Args:
        rgba: float32 ``[H, W, 4]`` the face (identity colours applied) in source crop pixels.
        geometry: its mouth geometry.
    """

    def __init__(self, rgba: np.ndarray, geometry: MouthGeometry) -> None:
        self.rgba = rgba
        self.geometry = geometry
        self._boxes: dict[tuple[int, int], np.ndarray] = {}

    def box(self, mouth_open: float, mouth_width: float) -> np.ndarray:
        """Premultiplied uint8 ``[h, w, 4]`` mouth box for the nearest quantised shape."""
        key = quantize_mouth(mouth_open, mouth_width)
        if key not in self._boxes:
            self._boxes[key] = premultiplied(warp_mouth(self.rgba, self.geometry, *level_shape(key)))
        return self._boxes[key]

    def face(self, mouth_open: float, mouth_width: float, base: np.ndarray) -> np.ndarray:
        """The whole face (a copy of the premultiplied uint8 `base`) with this mouth shape pasted in."""
        x0, y0, x1, y1 = self.geometry.box
        out = base.copy()
        out[y0:y1, x0:x1] = self.box(mouth_open, mouth_width)
        return out
