"""Prepare throughput: mouth crops + log-mel of a 30 s 1280x720 30 fps clip, and peak memory.

The clip is generated (never stored in the repository): the face photograph that ships with
scikit-image (`skimage.data.astronaut`), moving and turning slowly, with a tone as audio. The
measurement runs `prepare_manifest` in a fresh process (so its peak RSS is its own) after the
landmark models are loaded (a one-time cost per process, printed separately).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

BENCH_SECONDS = 30.0
BENCH_SIZE = (1280, 720)
BENCH_FPS = 30.0
TARGET_FPS = 150.0


def face_frames(frames: int, size: tuple[int, int], fps: float, face_width: float = 0.3) -> np.ndarray:
    """Frames of the astronaut photograph drifting, zooming and tilting slowly.

    Args:
        frames: number of frames.
        size: ``(width, height)``.
        fps: frame rate (sets the motion speed).
        face_width: width of the face (about 90 px in the 512 px photograph) as a share of `size`'s width.

    Returns:
        uint8 ``[frames, height, width]`` gray frames.
    """
    import skimage.data

    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    width, height = size
    zoom = face_width * width / 90.0
    face_centre = np.array([222.0, 127.0])  # in the photograph
    out = np.empty((frames, height, width), dtype=np.uint8)
    for index in range(frames):
        time = index / fps
        scale = zoom * (1.0 + 0.05 * np.sin(2 * np.pi * time / 7.0))
        angle = 6.0 * np.sin(2 * np.pi * time / 5.0)
        target = np.array([width / 2 + 0.1 * width * np.sin(2 * np.pi * time / 6.0), height / 2 + 0.05 * height * np.cos(2 * np.pi * time / 4.0)])
        matrix = cv2.getRotationMatrix2D((float(face_centre[0]), float(face_centre[1])), angle, scale)
        matrix[:, 2] += target - face_centre
        out[index] = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=90)
    return out


def write_face_video(
    path: Path,
    seconds: float = 2.0,
    size: tuple[int, int] = (256, 256),
    fps: float = 25.0,
    face_width: float = 0.35,
    audio: bool = True,
    blank: tuple[float, float] | None = None,
) -> Path:
    """Write an MP4 of the moving astronaut face (see `face_frames`), with a 220 Hz tone as audio.

    Args:
        path: output file.
        seconds: length.
        size: ``(width, height)``.
        fps: frame rate.
        face_width: face width as a share of the frame width.
        audio: add the audio track.
        blank: ``(start, end)`` seconds during which the frame is flat gray (no face).

    Returns:
        `path`.
    """
    from avsync.io.media import write_video

    count = round(seconds * fps)
    frames = face_frames(count, size, fps, face_width)
    if blank is not None:
        frames[round(blank[0] * fps) : round(blank[1] * fps)] = 90
    sample_rate = 16000
    tone = (0.3 * np.sin(2 * np.pi * 220.0 * np.arange(round(seconds * sample_rate)) / sample_rate)).astype(np.float32)
    write_video(path, frames, fps=fps, audio=tone if audio else None, sample_rate=sample_rate, preset="veryfast")
    return path


def _measure(video: str, cache: str, results: multiprocessing.Queue) -> None:
    """In a fresh process: load the models, prepare the clip twice (miss, then hit), report."""
    from avsync.features.cache import FeatureCache, prepare_manifest
    from avsync.features.extract import VisualParams
    from avsync.features.landmarks import make_backend
    from avsync.features.manifest import ClipRecord

    started = time.perf_counter()
    make_backend(VisualParams().backend)
    load_s = time.perf_counter() - started
    record = ClipRecord(id="bench", video=Path(video), audio=None, split="test")
    timings, cpu_times = [], []
    for _ in range(2):
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        report = prepare_manifest([record], FeatureCache(cache), progress=False)
        timings.append(time.perf_counter() - started)
        cpu_times.append(_cpu_seconds() - cpu_started)
    peak_mb = _peak_rss_mb()
    outcome = report.outcomes[0]
    results.put(
        {
            "backend": VisualParams().backend,
            "load_s": load_s,
            "miss_s": timings[0],
            "miss_cpu_s": cpu_times[0],
            "hit_s": timings[1],
            "frames": outcome.frames,
            "invalid": sum(outcome.invalid.values()),
            "peak_mb": peak_mb,
        }
    )


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Read from ``/proc/self/status`` (VmHWM) where there is one: Linux keeps in ``ru_maxrss`` the
    peak of the parent at fork time across ``exec``, which here would be the clip generation's.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Print prepare throughput (frames/s, x real time) and peak memory on the benchmark clip."""
    with tempfile.TemporaryDirectory(prefix="avsync-bench-prepare-") as folder:
        video = Path(folder) / "face720.mp4"
        started = time.perf_counter()
        write_face_video(video, BENCH_SECONDS, BENCH_SIZE, BENCH_FPS, face_width=0.2)
        print(f"clip: {BENCH_SECONDS:g} s {BENCH_SIZE[0]}x{BENCH_SIZE[1]} {BENCH_FPS:g} fps (generated in {time.perf_counter() - started:.1f} s)")
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        worker = context.Process(target=_measure, args=(str(video), str(Path(folder) / "cache"), results))
        worker.start()
        figures = results.get()
        worker.join()
    frames_per_s = figures["frames"] / figures["miss_s"]
    print(f"landmark models loaded in {figures['load_s']:.2f} s (once per process)")
    print(
        f"prepare ({figures['backend']}, cache miss): {figures['frames']} frames at 25 fps in {figures['miss_s']:.2f} s = "
        f"{frames_per_s:.0f} frames/s = {frames_per_s / 25:.1f}x real time (target {TARGET_FPS:g} frames/s); "
        f"{figures['invalid']} frames without a usable face"
    )
    print(
        f"CPU time of the cache miss: {figures['miss_cpu_s']:.2f} s (all threads; wall/CPU shows how busy the "
        f"machine was: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(f"prepare (cache hit): {figures['hit_s']:.3f} s")
    print(f"peak RSS of the preparing process: {figures['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
