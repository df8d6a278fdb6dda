"""The model's inputs for one media file: mouth crops of a video, log-mel of an audio track.

`extract_visual` decodes a video at 25 fps (gray, downscaled by the decoder to at most
``work_width`` pixels), tracks the singer's face (`avsync.features.tracking`) and cuts stable mouth crops
(`avsync.features.mouth`). `extract_audio` computes the log-mel of a file's audio (`avsync.features.audio`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avsync.conventions import FPS
from avsync.errors import MediaError
from avsync.features.audio import MelConfig, log_mel
from avsync.features.landmarks import NUM_LANDMARKS, make_backend
from avsync.features.mouth import CropConfig, MouthCropper
from avsync.features.tracking import FaceTracker, TrackerConfig
from avsync.io import media
from avsync.io.background import prefetch

# Bump when extraction changes what it produces for the same parameters (invalidates the cache).
VISUAL_VERSION = 2
AUDIO_VERSION = 2  # 2: the log-mel computed by numpy (7515d97), within 1.4e-3 of torchaudio's (1)
PREFETCH_FRAMES = 8


@dataclass(frozen=True)
class VisualParams:
    """Everything that determines a video's visual features.

    Attributes:
        backend: landmark backend, ``"mesh"`` (the default: the shipped networks were trained on
            it, and the speaker folds chose it; docs/real_faces.md), ``"dlib"`` or ``"fan"``
            (`avsync.features.landmarks`).
        fan_detector: FAN's face detector, ``"dlib"`` or ``"sfd"``.
        device: torch device for FAN; None: CUDA when present. Not part of the cache key.
        work_width: frames wider than this are decoded downscaled to it (aspect kept).
        fps: frame rate the video is resampled to (by timestamp).
        tracker: face tracking parameters.
        crop: mouth crop parameters.
    """

    backend: str = "mesh"
    fan_detector: str = "dlib"
    device: str | None = None
    work_width: int = 640
    fps: float = FPS
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    crop: CropConfig = field(default_factory=CropConfig)

    @classmethod
    def following(cls, face: str) -> VisualParams:
        """The default parameters, following `face` (`TrackerConfig.face`: ``--face`` of `avsync align`)."""
        return cls(tracker=TrackerConfig(face=face))

    def params(self) -> dict:
        """The parameters that change the output, as a plain dict (cache key and metadata)."""
        values = dataclasses.asdict(self)
        del values["device"]
        if self.backend != "fan":
            del values["fan_detector"]
        return {**values, "version": VISUAL_VERSION}


@dataclass
class VisualFeatures:
    """Visual features of one video file.

    Attributes:
        mouth_crops: uint8 ``[T, size, size]`` (``[T, size, size, 3]`` for RGB); zeros where invalid.
        valid: bool ``[T]``; False where the frame has no usable face.
        invalid_reason: ``T`` strings, ``""`` where valid.
        landmarks: float32 ``[T, 68, 2]`` in source-pixel coordinates, NaN where invalid.
        fps: frame rate of the features (25.0).
        params: `VisualParams.params` of the extraction.
        faces_seen: the most faces one full-frame search found (0: none).
        followed_at: where the followed face was when the most faces were seen, as fractions of
            the frame's width and height (None when no face was found).
    """

    mouth_crops: np.ndarray
    valid: np.ndarray
    invalid_reason: list[str]
    landmarks: np.ndarray
    fps: float
    params: dict
    faces_seen: int = 1
    followed_at: tuple[float, float] | None = None

    def __len__(self) -> int:
        return len(self.valid)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for storage (see `from_arrays`)."""
        return {
            "mouth_crops": self.mouth_crops,
            "valid": self.valid,
            "invalid_reason": np.array(self.invalid_reason, dtype=np.str_),
            "landmarks": self.landmarks,
            "fps": np.float64(self.fps),
            "faces_seen": np.int64(self.faces_seen),
            "followed_at": np.array(self.followed_at if self.followed_at is not None else (np.nan, np.nan), np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict) -> VisualFeatures:
        """Rebuild from `to_arrays` output and the stored parameters."""
        return cls(
            mouth_crops=arrays["mouth_crops"],
            valid=arrays["valid"].astype(bool),
            invalid_reason=[str(reason) for reason in arrays["invalid_reason"]],
            landmarks=arrays["landmarks"],
            fps=float(arrays["fps"]),
            params=params,
            faces_seen=int(arrays["faces_seen"]),
            followed_at=None if np.isnan(arrays["followed_at"]).any() else tuple(float(v) for v in arrays["followed_at"]),
        )


@dataclass
class AudioFeatures:
    """Audio features of one file.

    Attributes:
        log_mel: float32 ``[n_mels, M]`` with ``M = mels_per_frame * frames``.
        sample_rate: rate the audio was resampled to.
        fps: video frame rate the mel columns are tied to.
        params: `MelConfig.params` plus the extraction version.
    """

    log_mel: np.ndarray
    sample_rate: int
    fps: float
    params: dict

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for storage (see `from_arrays`)."""
        return {"log_mel": self.log_mel, "sample_rate": np.int64(self.sample_rate), "fps": np.float64(self.fps)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict) -> AudioFeatures:
        """Rebuild from `to_arrays` output and the stored parameters."""
        return cls(arrays["log_mel"], int(arrays["sample_rate"]), float(arrays["fps"]), params)


def audio_params(mel_cfg: MelConfig) -> dict:
    """The parameters that determine `AudioFeatures`, as a plain dict (cache key and metadata)."""
    return {**mel_cfg.params(), "version": AUDIO_VERSION}


OPENCV_THREADS = 1
"""OpenCV's own threads for the per-frame work (set by `extract_visual` for its process). Its pool
costs more than it gives on these small images, beside the decoder's thread: the bench's 30-s 720p
clip took 3.1-3.5 s of CPU with one thread against 3.8-4.2 s with one per core (2 cores), wall
1.9-2.2 s against 2.2-2.4 s, and the same arrays."""


ONE_DECODER_THREAD_PIXELS = 1280 * 720
"""Sources up to this many pixels a frame are decoded on one thread (the prefetch thread beside the
per-frame work); larger ones on FFmpeg's threads. One thread keeps up with the per-frame work up to
720p and spends less CPU: the bench's 30-s 720p clip decoded in 0.89 s of CPU against 1.04-1.08 s
with FFmpeg's threads (2 cores), and `avsync align` on it took 2.85 s against 3.07 s (6 alternating
runs each). A 1080p frame took 2.2 ms on one thread (4K 10.4 ms) beside about 2.4 ms of per-frame
work: there the decoder would set the pace."""


def decoder_threads(width: int, height: int) -> int:
    """The decoder's threads for a source frame size (`ONE_DECODER_THREAD_PIXELS`; 0: FFmpeg's choice)."""
    return 1 if width * height <= ONE_DECODER_THREAD_PIXELS else 0


def work_size(width: int, height: int, work_width: int) -> tuple[int, int] | None:
    """Decoder output size ``(width, height)`` for a source frame, or None to keep it.

    Args:
        width: source width in pixels.
        height: source height in pixels.
        work_width: largest width to work at.
    """
    if width <= work_width:
        return None
    return work_width, max(1, round(height * work_width / width))


def extract_visual(video_path: str | Path, params: VisualParams = VisualParams(), progress: bool = False,
                   on_crops: Callable[[list[np.ndarray]], None] | None = None) -> VisualFeatures:  # fmt: skip
    """Track the face and cut mouth crops of every frame of a video (resampled to `params.fps`).

    Args:
        video_path: the video file.
        params: extraction parameters.
        progress: show a per-frame progress bar (stderr).
        on_crops: called with the mouth crops (uint8 ``[64, 64]`` each) as they are cut, in order:
            those of all frames before the call's, each once (the features' ``mouth_crops`` in
            pieces, while the video is still being read).

    Returns:
        The video's `VisualFeatures` (T frames at ``params.fps``).

    Raises:
        MediaError: missing, unreadable or corrupt file, or no video stream.
        AvsyncError: unknown backend, or FAN weights missing.
    """
    info = media.probe(video_path)
    if not info.has_video or not info.width or not info.height:
        raise MediaError("has no video stream", video_path)
    import cv2  # imported by the tracking, the crops and the mesh anyway

    cv2.setNumThreads(OPENCV_THREADS)
    size = work_size(info.width, info.height, params.work_width)
    scale = np.ones(2) if size is None else np.array([info.width / size[0], info.height / size[1]])
    tracker = FaceTracker(
        make_backend(params.backend, device=params.device, fan_detector=params.fan_detector), params.tracker
    )
    cropper = MouthCropper(params.crop)
    crops: list[np.ndarray] = []
    landmarks: list[np.ndarray] = []
    reasons: list[str] = []

    def cut(ready: list[np.ndarray]) -> None:
        crops.extend(ready)
        if ready and on_crops is not None:
            on_crops(ready)

    frames = media.iter_video(video_path, fps=params.fps, gray=not params.crop.rgb, size=size,
                              threads=decoder_threads(info.width, info.height))  # fmt: skip
    expected = round(info.duration * params.fps) if info.duration else None
    bar = tqdm(total=expected, desc="lips", unit="frame", leave=False, disable=not progress, dynamic_ncols=True)
    for _, frame in prefetch(frames, PREFETCH_FRAMES):
        bar.update()
        points, reason = tracker.update(frame)
        cut(cropper.push(frame, points))
        # Work pixels to source pixels (pixel centres at integer coordinates in both).
        landmarks.append(np.full((NUM_LANDMARKS, 2), np.nan) if points is None else (points + 0.5) * scale - 0.5)
        reasons.append(reason)
    bar.close()
    cut(cropper.flush())
    return VisualFeatures(
        mouth_crops=np.stack(crops),
        valid=np.array([not reason for reason in reasons], dtype=bool),
        invalid_reason=reasons,
        landmarks=np.stack(landmarks).astype(np.float32),
        fps=float(params.fps),
        params=params.params(),
        faces_seen=tracker.faces_seen,
        followed_at=tracker.chosen_at,
    )


def extract_audio(audio_path: str | Path, mel_cfg: MelConfig = MelConfig()) -> AudioFeatures:
    """Log-mel of a file's audio (an audio file, or a video's own track on the video's timeline).

    Args:
        audio_path: the media file.
        mel_cfg: log-mel parameters.

    Returns:
        The file's `AudioFeatures`.

    Raises:
        MediaError: missing, unreadable or corrupt file, or no audio stream.
    """
    samples = media.read_audio(audio_path, sample_rate=mel_cfg.sample_rate)
    broken = ~np.isfinite(samples)
    if broken.any():
        first = int(np.argmax(broken)) / mel_cfg.sample_rate
        raise MediaError(f"has {int(broken.sum())} NaN or infinite samples (the first at {first:.2f} s); repair the audio", audio_path)
    mel = log_mel(samples, mel_cfg)
    return AudioFeatures(mel, mel_cfg.sample_rate, mel_cfg.fps, audio_params(mel_cfg))
