"""Video frames of a singer: identity, head motion, lighting, occluders and sensor noise.

An identity recolours, scales, stretches and possibly mirrors the source face and puts it in
front of its own backdrop. Head motion and lighting drift are slow random curves drawn from the
scene's own random source, independent of the song, so nothing outside the mouth follows the
singing. Occlusion spans slide a card over the face or move the head out of the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from avsync.synth.face import (
    MouthBank,
    SourceFace,
    load_source_face,
    mouth_geometry,
    premultiplied,
)

FRAME_SIZE = 320
# Frames a card or the head takes to move in or out around an occlusion span.
MOVE_FRAMES = 4
OCCLUSION_KINDS = ("card", "offscreen")
# Sensor noise comes from a bank of noise frames, cut at a random offset each frame.
NOISE_FRAMES = 8
NOISE_MARGIN = 32


@dataclass(frozen=True)
class Identity:
    """How one synthetic singer looks.

    Args:
        speaker: identity id (the manifest's ``speaker``).
        colour_gain: RGB gains applied to the person (skin tone, hair, clothes).
        scale: source crop pixels to frame pixels.
        aspect: horizontal stretch of the face.
        mirror: flipped left-right.
        backdrop: ``gradient``, ``blobs`` or ``stripes``.
        backdrop_colours: two RGB colours of the backdrop.
        backdrop_seed: seed of the backdrop texture.
    """

    speaker: str
    colour_gain: tuple[float, float, float]
    scale: float
    aspect: float
    mirror: bool
    backdrop: str
    backdrop_colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    backdrop_seed: int


def make_identity(rng: np.random.Generator, speaker: str) -> Identity:
    """Draw an identity.

    Args:
        rng: the random source.
        speaker: its id.

    Returns:
        The identity.
    """
    tone = float(rng.uniform(0.55, 1.08))
    gain = (tone * float(rng.uniform(0.97, 1.08)), tone * float(rng.uniform(0.9, 1.02)), tone * float(rng.uniform(0.82, 1.04)))
    colours = tuple(tuple(int(c) for c in rng.integers(20, 236, size=3)) for _ in range(2))
    return Identity(
        speaker=speaker,
        colour_gain=gain,
        scale=float(rng.uniform(1.3, 1.65)),
        aspect=float(rng.uniform(0.9, 1.1)),
        mirror=bool(rng.random() < 0.5),
        backdrop=str(rng.choice(["gradient", "blobs", "stripes"])),
        backdrop_colours=colours,  # type: ignore[arg-type]
        backdrop_seed=int(rng.integers(2**31)),
    )


def render_backdrop(identity: Identity, size: int = FRAME_SIZE) -> np.ndarray:
    """The identity's static backdrop.

    Args:
        identity: the identity.
        size: frame side in pixels.

    Returns:
        uint8 ``[size, size, 3]``.
    """
    rng = np.random.default_rng(identity.backdrop_seed)
    first, second = (np.array(c, dtype=np.float32) for c in identity.backdrop_colours)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, np.pi)
    if identity.backdrop == "stripes":
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 9) * (x * np.cos(angle) + y * np.sin(angle)))
    elif identity.backdrop == "blobs":
        mix = ndimage.zoom(rng.random((5, 5)), size / 5, order=3)[:size, :size]
    else:
        mix = x * np.cos(angle) + y * np.sin(angle)
    mix = (mix - mix.min()) / (np.ptp(mix) + 1e-6)
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 1.5) * 25
    image = first * (1 - mix[..., None]) + second * mix[..., None] + texture[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def _smooth_curve(rng: np.random.Generator, n_frames: int, fps: float, max_hz: float, components: int = 3) -> np.ndarray:
    """A slow random curve in about [-1, 1]: a sum of sinusoids below `max_hz`."""
    t = np.arange(n_frames) / fps
    curve = np.zeros(n_frames)
    for _ in range(components):
        curve += np.sin(2 * np.pi * rng.uniform(0.02, max_hz) * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.3, 1.0)
    return curve / components * 1.6


@dataclass
class SceneTracks:
    """Per-frame scene state, float32 ``[T]`` (or ``[T, 3]``) each.

    Args:
        shift_x: head translation in frame pixels (plus the off-screen move).
        shift_y: head translation in frame pixels.
        angle_deg: head roll.
        zoom: head scale factor around 1.
        light_gain: RGB gain of the whole frame ``[T, 3]``.
        light_slope: strength of a left-right lighting gradient.
        card: how far the occluding card has moved over the face (0 away .. 1 covering).
    """

    shift_x: np.ndarray
    shift_y: np.ndarray
    angle_deg: np.ndarray
    zoom: np.ndarray
    light_gain: np.ndarray
    light_slope: np.ndarray
    card: np.ndarray


def _move_profile(n_frames: int, fps: float, start: float, end: float) -> np.ndarray:
    """0..1 per frame: 1 on frames in [start, end), ramping over `MOVE_FRAMES` before and after."""
    frame_time = np.arange(n_frames) / fps
    ramp = MOVE_FRAMES / fps
    rising = np.clip((frame_time - (start - ramp)) / ramp, 0, 1)
    falling = np.clip(((end + ramp) - frame_time) / ramp, 0, 1)
    profile = np.minimum(rising, falling)
    profile[(frame_time >= start) & (frame_time < end)] = 1.0
    return profile


def scene_tracks(
    rng: np.random.Generator, n_frames: int, fps: float, occlusions: list[tuple[float, float, str]] | None = None
) -> SceneTracks:
    """Draw slow head motion and lighting drift, and place the occlusions.

    Args:
        rng: the scene's random source (not the song's: motion and light are independent of it).
        n_frames: number of frames T.
        fps: frame rate.
        occlusions: (start, end, kind) spans in seconds; kind ``card`` (a card covers the face)
            or ``offscreen`` (the head leaves the picture). The face is fully hidden on the frames
            in [start, end) and moves in/out over `MOVE_FRAMES` frames around them.

    Returns:
        The tracks.
    """
    shift_x = 10 * _smooth_curve(rng, n_frames, fps, 0.35)
    shift_y = 8 * _smooth_curve(rng, n_frames, fps, 0.35)
    angle = 5 * _smooth_curve(rng, n_frames, fps, 0.3)
    zoom = 1 + 0.05 * _smooth_curve(rng, n_frames, fps, 0.2)
    base = rng.uniform(0.85, 1.1)
    light_gain = np.stack([base + 0.1 * _smooth_curve(rng, n_frames, fps, 0.12) + 0.03 * _smooth_curve(rng, n_frames, fps, 0.1)
                           for _ in range(3)], axis=1)  # fmt: skip
    light_slope = 0.15 * _smooth_curve(rng, n_frames, fps, 0.08)
    card = np.zeros(n_frames)
    for start, end, kind in occlusions or []:
        if kind not in OCCLUSION_KINDS:
            raise ValueError(f"unknown occlusion kind {kind!r}; expected one of {OCCLUSION_KINDS}")
        profile = _move_profile(n_frames, fps, start, end)
        if kind == "card":
            card = np.maximum(card, profile)
        else:
            shift_x += profile * FRAME_SIZE * (1 if rng.random() < 0.5 else -1)
    as32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return SceneTracks(as32(shift_x), as32(shift_y), as32(angle), as32(zoom), as32(light_gain), as32(light_slope),
                       as32(card))  # fmt: skip


class FrameRenderer:
    """Renders the frames of one singer.

    Args:
        identity: who sings.
        rng: random source for the sensor noise and the card's look.
        size: frame side in pixels.
        noise_sigma: standard deviation of the sensor noise in grey levels.
        source: the source face (default: the astronaut portrait).
    """

    def __init__(
        self, identity: Identity, rng: np.random.Generator, size: int = FRAME_SIZE, noise_sigma: float = 3.0,
        source: SourceFace | None = None,
    ) -> None:  # fmt: skip
        self.identity = identity
        self.rng = rng
        self.size = size
        source = source or load_source_face()
        self.source = source
        rgba = np.concatenate([source.rgb * np.array(identity.colour_gain, dtype=np.float32), source.alpha[..., None]], axis=2)
        rgba[..., :3] = np.clip(rgba[..., :3], 0, 255)
        self.geometry = mouth_geometry(source)
        self.bank = MouthBank(rgba, self.geometry)
        self.base = premultiplied(rgba)
        self.backdrop = render_backdrop(identity, size).astype(np.float32)
        self.anchor = source.landmarks[30].astype(np.float64)  # nose tip
        self.mouth_center = source.landmarks[48:68].mean(axis=0).astype(np.float64)
        self.card_colour = tuple(int(c) for c in rng.integers(30, 226, size=3))
        self.card_side = 1 if rng.random() < 0.5 else -1
        self.ramp = np.linspace(-1, 1, size, dtype=np.float32)[None, :, None]
        margin = NOISE_MARGIN
        self.noise = rng.standard_normal((NOISE_FRAMES, size + margin, size + margin, 3), dtype=np.float32) * noise_sigma

    def to_frame(self, tracks: SceneTracks, k: int) -> np.ndarray:
        """Affine matrix ``[2, 3]`` from source crop pixels to frame pixels at frame k."""
        identity = self.identity
        angle = np.deg2rad(float(tracks.angle_deg[k]))
        scale = identity.scale * float(tracks.zoom[k])
        linear = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
        linear = linear @ np.diag([identity.aspect * (-1 if identity.mirror else 1), 1.0])
        center = np.array([self.size / 2 + float(tracks.shift_x[k]), self.size * 0.45 + float(tracks.shift_y[k])])
        return np.concatenate([linear, (center - linear @ self.anchor)[:, None]], axis=1)

    def mouth_box(self, tracks: SceneTracks, k: int) -> tuple[float, float, float, float]:
        """Frame-pixel bounding box (x0, y0, x1, y1) of the region the mouth warp may change."""
        x0, y0, x1, y1 = self.geometry.box
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], dtype=np.float64)
        mapped = corners @ self.to_frame(tracks, k).T
        return (*mapped.min(axis=0), *mapped.max(axis=0))  # type: ignore[return-value]

    def render(self, tracks: SceneTracks, k: int, mouth_open: float, mouth_width: float) -> np.ndarray:
        """Frame k with the given mouth shape.

        Args:
            tracks: the scene tracks.
            k: frame index.
            mouth_open: 0..1.
            mouth_width: relative mouth width.

        Returns:
            uint8 ``[size, size, 3]`` RGB.
        """
        forward = self.to_frame(tracks, k)
        face = self.bank.face(mouth_open, mouth_width, self.base)
        moved = cv2.warpAffine(face, forward, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        coverage = moved[..., 3:].astype(np.float32) * (1 / 255)
        pixels = moved[..., :3] + self.backdrop * (1 - coverage)
        if tracks.card[k] > 0:
            pixels = self._draw_card(pixels, forward, float(tracks.card[k]))
        pixels *= tracks.light_gain[k][None, None, :] * (1 + tracks.light_slope[k] * self.ramp)
        index, dy, dx = self.rng.integers(NOISE_FRAMES), *self.rng.integers(NOISE_MARGIN, size=2)
        pixels += self.noise[index, dy : dy + self.size, dx : dx + self.size]
        pixels += 0.5
        return np.clip(pixels, 0, 255, out=pixels).astype(np.uint8)

    def mouth_visible(self, tracks: SceneTracks, k: int) -> bool:
        """Whether the whole mouth box is in the picture and the card does not touch it at frame k."""
        x0, y0, x1, y1 = self.mouth_box(tracks, k)
        if x0 < 0 or y0 < 0 or x1 > self.size or y1 > self.size:
            return False
        if tracks.card[k] <= 0:
            return True
        c0, d0, c1, d1 = self._card_box(self.to_frame(tracks, k), float(tracks.card[k]))
        return c1 < x0 or c0 > x1 or d1 < y0 or d0 > y1

    def _card_box(self, forward: np.ndarray, progress: float) -> tuple[float, float, float, float]:
        """The card's box (x0, y0, x1, y1): over the face from the eyes to the chin at progress 1,
        off to one side of the picture at progress 0."""
        face_width = self.source.face_width * self.identity.scale
        center = forward @ np.array([*self.mouth_center, 1.0])
        center[1] -= 0.3 * face_width
        half = 0.75 * face_width
        center[0] += self.card_side * (1 - progress) * (self.size / 2 + 2 * half)
        return center[0] - half, center[1] - half, center[0] + half, center[1] + half

    def _draw_card(self, pixels: np.ndarray, forward: np.ndarray, progress: float) -> np.ndarray:
        """Draw the card (see `_card_box`) on float ``[size, size, 3]`` pixels."""
        frame = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        box = self._card_box(forward, progress)
        face_width = self.source.face_width * self.identity.scale
        draw = ImageDraw.Draw(frame)
        draw.rounded_rectangle(box, radius=int(0.2 * face_width), fill=self.card_colour)
        shade = tuple(int(0.8 * c) for c in self.card_colour)
        inner = [box[0] + 6, box[1] + 6, box[2] - 6, box[3] - 6]
        draw.rounded_rectangle(inner, radius=int(0.15 * face_width), outline=shade, width=3)
        return np.asarray(frame, dtype=np.float32)
