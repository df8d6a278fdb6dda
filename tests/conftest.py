"""Shared fixtures: tiny media files generated in the test's temporary folder.

`make_av_file` writes a clip whose frames carry their own index (see `frame_index`), with an
optional white flash frame and an optional click in the audio, so tests can check timing after a
round trip through the codecs; `song` is a short synthetic singer with its stems.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np
import pytest

from avsync.cli import main
from avsync.features.cache import CACHE_ENV
from avsync.evaluation.warp import FrameMap
from avsync.io.media import write_audio, write_video
from avsync.synth.dataset import SongSpec, render_song

# Frame index i is drawn as two flat bands: top = LEVEL0 + STEP * (i % 16), bottom = ... (i // 16).
INDEX_LEVEL0 = 16
INDEX_STEP = 12
CLICK_AMPLITUDE = 0.8


def index_frame(index: int, size: tuple[int, int]) -> np.ndarray:
    """An RGB frame that encodes `index` (0..255) in two flat gray bands.

    Args:
        index: the frame's number.
        size: ``(width, height)``.

    Returns:
        uint8 ``[height, width, 3]``.
    """
    width, height = size
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[: height // 2] = INDEX_LEVEL0 + INDEX_STEP * (index % 16)
    frame[height // 2 :] = INDEX_LEVEL0 + INDEX_STEP * ((index // 16) % 16)
    return frame


def write_stored_frames(path: Path, stored: Sequence[np.ndarray], *, codec: str = "libx264", rotation: int = 0, fps: int = 25) -> Path:
    """Write frames exactly as stored, through PyAV (`avsync.io.media.write_video` would pad odd sizes).

    Args:
        path: the output file.
        stored: uint8 ``[H, W, 3]`` RGB or ``[H, W]`` gray frames, one size.
        codec: the video codec (``mpeg4`` stores odd sizes, which x264 refuses).
        rotation: display rotation (counter-clockwise degrees) written into the stream; players
            and `avsync.io.media` turn the frames by it.
        fps: frame rate.
    """
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = stored[0].shape[1], stored[0].shape[0], "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for index, array in enumerate(stored):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="gray" if array.ndim == 2 else "rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def frame_index(frame: np.ndarray) -> int:
    """Read back the index drawn by `index_frame` from a decoded RGB ``[H, W, 3]`` or gray ``[H, W]`` frame."""
    height = frame.shape[0]
    # Sample band centres, away from the chroma-blurred border between the bands.
    top = float(frame[height // 8 : height * 3 // 8].mean())
    bottom = float(frame[height * 5 // 8 : height * 7 // 8].mean())
    low = round((top - INDEX_LEVEL0) / INDEX_STEP)
    high = round((bottom - INDEX_LEVEL0) / INDEX_STEP)
    return 16 * high + low


def write_test_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: float = 25.0,
    size: tuple[int, int] = (64, 48),
    times: Sequence[float] | None = None,
    video: bool = True,
    audio: bool = True,
    sample_rate: int = 16000,
    audio_offset: float = 0.0,
    flash_at: float | None = None,
    click_at: float | None = None,
) -> Path:
    """Write a tiny test clip.

    Args:
        path: output file (``.mp4`` with video, ``.wav`` for audio only).
        seconds: video length (frames at ``i / fps``), also where the audio ends.
        fps: frame rate.
        size: ``(width, height)``.
        times: explicit frame times (variable frame rate) instead of ``i / fps``.
        video: write a video stream (else a WAV file).
        audio: write an audio stream (silence plus the click).
        sample_rate: audio rate in Hz.
        audio_offset: time of audio sample 0 relative to the first video frame (positive:
            audio starts later).
        flash_at: time of a white frame (the frame nearest this time).
        click_at: time, on the video's timeline, of a short click in the audio.

    Returns:
        `path`.
    """
    frame_times = np.arange(round(seconds * fps)) / fps if times is None else np.asarray(times, dtype=np.float64)
    samples = None
    if audio:
        samples = np.zeros(round((seconds - audio_offset) * sample_rate), dtype=np.float32)
        if click_at is not None:
            at = round((click_at - audio_offset) * sample_rate)
            samples[at] = CLICK_AMPLITUDE
            samples[at + 1] = -CLICK_AMPLITUDE
    if not video:
        write_audio(path, samples, sample_rate)
        return path
    frames = np.stack([index_frame(i, size) for i in range(len(frame_times))])
    if flash_at is not None:
        frames[np.argmin(np.abs(frame_times - flash_at))] = 255
    write_video(
        path,
        frames,
        fps=fps,
        times=None if times is None else frame_times,
        audio=samples,
        sample_rate=sample_rate,
        audio_start=audio_offset,
        crf=10,
        preset="ultrafast",
    )
    return path


@pytest.fixture(autouse=True, scope="session")
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user's cache folder (`avsync.features.cache.user_cache_dir`) of every test and of the
    commands they start: a temporary folder, never the home directory's."""
    folder = tmp_path_factory.mktemp("user_cache")
    os.environ[CACHE_ENV] = str(folder)
    return folder


@pytest.fixture(scope="session")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s synthetic singer (320x320 face, 25 fps) with its stems: the folder `render_song` writes."""
    spec = SongSpec("song", "singer", seed=0, index=3, seconds=3.0)
    return render_song(spec, tmp_path_factory.mktemp("synth")).folder


@pytest.fixture
def make_av_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory fixture: ``make_av_file(name="clip.mp4", **write_test_clip options) -> Path`` in tmp_path."""

    def make(name: str = "clip.mp4", **options) -> Path:
        return write_test_clip(tmp_path / name, **options)

    return make


def identity_map(n_frames: int) -> FrameMap:
    """The unwarped clip as a `FrameMap`: ``src_index = arange(n_frames)``."""
    return FrameMap(np.arange(n_frames, dtype=np.int64), n_frames, "identity", {})


def track_faces(frames, backend, config=None):
    """Track the singer through a sequence of frames (see `FaceTracker`).

    Args:
        frames: uint8 ``[H, W]`` or ``[H, W, 3]`` frames in order (array ``[T, ...]`` or iterable).
        backend: landmark backend.
        config: tracking parameters.

    Returns:
        The `Track` of the video.
    """
    from avsync.features.landmarks import NUM_LANDMARKS
    from avsync.features.tracking import FaceTracker, Track, TrackerConfig

    tracker = FaceTracker(backend, config or TrackerConfig())
    landmarks, reasons = [], []
    for frame in frames:
        points, reason = tracker.update(frame)
        landmarks.append(np.full((NUM_LANDMARKS, 2), np.nan, np.float32) if points is None else points)
        reasons.append(reason)
    stacked = np.stack(landmarks) if landmarks else np.zeros((0, NUM_LANDMARKS, 2), np.float32)
    return Track(stacked, np.array([not r for r in reasons], dtype=bool), reasons, tracker.detector_runs)


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run `avsync align ARGS --quiet` in this process; its exit status, stdout and stderr."""
    status = main(["align", *map(str, args), "--quiet"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status: int, err: str, *needles: str) -> None:
    """A user mistake: exit status 2 and one line `avsync: error: ...` holding every needle."""
    assert status == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("avsync: error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
