"""Decode and encode speed of avsync.io.media on a generated 720p clip with audio.

The clip pans and zooms over scikit-image's astronaut photograph (camera-like content, not
noise), 1280x720 at 30 fps with 44.1 kHz stereo AAC, written once to a temporary folder.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage import data, transform

from avsync.features.audio import log_mel
from avsync.io import media

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 30.0, 10.0
AUDIO_RATE = 44100


def panning_frames(count: int) -> np.ndarray:
    """uint8 ``[count, HEIGHT, WIDTH, 3]``: a slow pan and zoom over a photograph."""
    photo = transform.resize(data.astronaut(), (HEIGHT * 2, WIDTH * 2), anti_aliasing=True)
    photo = (photo * 255).astype(np.uint8)
    frames = np.empty((count, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for index in range(count):
        phase = index / max(count - 1, 1)
        top, left = int(phase * HEIGHT * 0.8), int(phase * WIDTH * 0.5)
        frames[index] = photo[top : top + HEIGHT, left : left + WIDTH]
    return frames


def timed(label: str, work: Callable[[], int], unit: str) -> None:
    start = time.perf_counter()
    amount = work()
    seconds = time.perf_counter() - start
    print(f"{label:44s} {amount / seconds:9.1f} {unit}  ({seconds:.2f} s)", flush=True)


def main() -> None:
    count = round(SECONDS * FPS)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip720p.mp4"
        frames = panning_frames(count)
        tone = np.sin(2 * np.pi * 220 * np.arange(round(SECONDS * AUDIO_RATE)) / AUDIO_RATE)
        noise = 0.05 * np.random.default_rng(0).standard_normal((round(SECONDS * AUDIO_RATE),))
        audio = (0.3 * tone + noise).astype(np.float32)

        def encode() -> int:
            media.write_video(path, frames, fps=FPS, audio=audio, sample_rate=AUDIO_RATE, crf=23)
            return count

        print(f"clip: {WIDTH}x{HEIGHT}, {FPS:g} fps, {SECONDS:g} s, AAC {AUDIO_RATE} Hz")
        timed("write_video 720p (x264 fast, crf 23)", encode, "frames/s")
        del frames
        print(f"file size: {path.stat().st_size / 1e6:.1f} MB")
        timed("iter_video gray, native rate", lambda: sum(1 for _ in media.iter_video(path, gray=True)), "frames/s")
        timed(
            "iter_video gray, resampled to 25 fps",
            lambda: sum(1 for _ in media.iter_video(path, gray=True, fps=25.0)),
            "out frames/s",
        )
        timed(
            "iter_video gray 640x360, 25 fps",
            lambda: sum(1 for _ in media.iter_video(path, gray=True, fps=25.0, size=(640, 360))),
            "out frames/s",
        )
        timed("iter_video RGB, native rate", lambda: sum(1 for _ in media.iter_video(path)), "frames/s")
        timed("read_audio to 16 kHz mono", lambda: round(len(media.read_audio(path)) / 16000), "s audio/s")
        samples = media.read_audio(path)
        timed("log_mel (80 x 4T)", lambda: round(log_mel(samples).shape[-1] / 100), "s audio/s")


if __name__ == "__main__":
    main()
