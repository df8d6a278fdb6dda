"""Where the lips worker's time goes on `bench_align`'s 30-s 720p clip, dlib's parts (issue 20's profile).

`avsync align` reads a shot's lips in a worker process (`avsync.pipeline.shot_features`): with
dlib's landmarks (the default until 2026-12-06) it loads dlib's landmark models, decodes the video
(gray, scaled to 640 px by the decoder's reformatter, in a background thread) and, frame by frame, follows the face and cuts the mouth
crop (`avsync.features.extract.extract_visual`). Each part is timed on its own, each in one
thread: the models' loading, the decoding alone, and the tracking and crops on frames decoded
beforehand (the predictor, HOG detection and crops inside it measured separately); then
`extract_visual` as the worker runs it, with the decoding beside the face work, with dlib and with
the default landmarks (the face mesh's since 2026-12-06) for comparison. CPU seconds are
all threads of this process; compare runs only on an equally busy machine (the load average is
printed).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_align import make_clip


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(label: str, work: Callable[[], object]) -> object:
    cpu, start = _cpu(), time.perf_counter()
    result = work()
    print(f"{label:52s} {time.perf_counter() - start:6.2f} s wall {_cpu() - cpu:6.2f} s CPU", flush=True)
    return result


def _accumulate(owner: object, name: str, totals: dict[str, float], label: str) -> Callable[[], None]:
    """Wrap ``owner.name`` so its wall time adds up in ``totals[label]``; returns the undo."""
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start

    setattr(owner, name, wrapped)
    return lambda: setattr(owner, name, original)


def main() -> None:
    """Print the lips worker's parts on the 720p clip: model loading, decoding, tracking, crops."""
    import dlib

    from avsync.features import landmarks, mouth, tracking
    from avsync.features.extract import VisualParams, decoder_threads, extract_visual, work_size
    from avsync.io import media

    with tempfile.TemporaryDirectory(prefix="bench_lips.") as folder:
        clip = Path(folder) / "clip720p.mp4"
        make_clip(clip)
        info = media.probe(clip)
        size = work_size(info.width, info.height, VisualParams().work_width)
        print(f"clip: {info.duration:.0f} s {info.width}x{info.height} {info.fps:g} fps; {os.cpu_count()} CPU cores, "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        _timed("dlib's frontal face detector, dlib's own build", dlib.get_frontal_face_detector)
        _timed("dlib's frontal face detector, the package's copy", landmarks.frontal_face_detector)
        _timed("the 68-point shape predictor", lambda: dlib.shape_predictor(str(landmarks.dlib_predictor_path())))
        backend = landmarks.make_backend("dlib")

        def decode() -> list:
            return [frame for _, frame in media.iter_video(clip, fps=25.0, gray=True, size=size, threads=threads)]

        threads = decoder_threads(info.width, info.height)  # as the worker decodes
        frames = _timed(f"decode to gray {size[0]}x{size[1]} (decoder threads: {threads or 'automatic'})", decode)
        totals: dict[str, float] = defaultdict(float)
        undo = [_accumulate(landmarks.DlibLandmarks, "predict", totals, "predict (dlib's shape predictor on a gray patch)"),
                _accumulate(landmarks.HogDetector, "__call__", totals, "HOG detection"),
                _accumulate(mouth, "crop_mouth", totals, "crop resampling")]  # fmt: skip

        def follow() -> None:
            tracker, cropper = tracking.FaceTracker(backend), mouth.MouthCropper()
            for frame in frames:
                points, _ = tracker.update(frame)
                cropper.push(frame, points)
            cropper.flush()
            totals["HOG runs"] = tracker.detector_runs

        _timed(f"tracking and crops of the {len(frames)} decoded frames", follow)
        for restore in undo:
            restore()
        runs = int(totals.pop("HOG runs"))
        print("  inside it: " + ", ".join(f"{label} {seconds:.2f} s" for label, seconds in totals.items()) + f" ({runs} HOG runs)")
        del frames
        _timed("extract_visual, dlib (decoding in a thread beside it)", lambda: extract_visual(clip, VisualParams(backend="dlib")))
        default = VisualParams().backend
        _timed(f"extract_visual, {default} (the default)", lambda: extract_visual(clip, VisualParams()))


if __name__ == "__main__":
    main()
