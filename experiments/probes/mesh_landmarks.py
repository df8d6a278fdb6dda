"""Probe: the ``mesh`` landmark backend (BlazeFace + face mesh through LiteRT) against dlib on real faces.

For every clip of the real-face folders (``clips.csv`` in each), the frames are decoded once as
`avsync.features.extract.extract_visual` decodes them (25 fps, gray, at most 640 px wide), then
each backend's `FaceTracker` runs over them (the landmarks stage: detection, landmarks, tracking;
decoding not counted). Per backend and clip:

* **faces found**: share of frames with valid landmarks;
* **lip jitter** (docs/real_faces.md, "landmarks" row): on *quiet* frames (the clip's own audio RMS
  in the frame's 40 ms under the clip's 25th percentile; the lips should rest there) the root
  mean square of the second difference in time of the 20 lip points (48-67), after the head's
  position, roll and scale are taken out as `avsync.features.lips` does (similarity onto the
  stable points, inter-ocular distance 1); frames where both backends have a face and both
  neighbours too. A frame-to-frame wobble of the points shows up here, steady motion does not.
  Reported per clip as the mesh / dlib ratio, pooled as the geometric mean with a 95 % bootstrap
  interval over clips;
* **ms per frame** of the landmarks stage (wall clock and process CPU time) with OpenCV, dlib and
  LiteRT on one thread, the two backends timed on the same clip one after the other (on a shared
  machine the CPU time is the steadier figure; compare the two backends, not runs);
* **mouth opening vs sound**: Pearson r of the inner-lip opening per face width
  (`avsync.features.landmarks.mouth_opening`) and the log RMS of the clip's audio per frame, on
  the frames where both backends have a face; mean over clips and the paired difference with a
  95 % bootstrap interval over clips.

``--calibrate`` instead prints the medians that set `avsync.features.mesh.BLAZE_TO_HOG` and
`MESH_ROI_SCALE`: on every 5th frame, BlazeFace's raw box against the box around the 68 points the
mesh places on MediaPipe's own crop (1.5 BlazeFace boxes).

``--fit-mapping`` prints, for each of the 68 iBUG points, the mesh vertex nearest dlib's point
(median distance over every 5th frame where dlib's detector finds a face, in inter-ocular units)
next to the vertex `avsync.features.mesh.MESH_TO_IBUG` reads.

Usage: python experiments/probes/mesh_landmarks.py [--calibrate | --fit-mapping] [--limit N] [FOLDER ...]
       (default folders: /work/shared/data/realav /work/shared/data/realav_more)
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import cv2
import numpy as np

from avsync.features.extract import VisualParams, work_size
from avsync.features.landmarks import make_backend, mouth_opening
from avsync.features.lips import MOUTH_POINTS, STABLE_POINTS, _similarity_to
from avsync.features.tracking import FaceTracker, box_from_landmarks
from avsync.io import media

FOLDERS = ("/work/shared/data/realav", "/work/shared/data/realav_more")
SAMPLE_RATE = 16000
QUIET_QUANTILE = 0.25


def clips(folders: list[str]) -> list[Path]:
    """The clip files listed in each folder's clips.csv."""
    paths = []
    for folder in folders:
        with open(Path(folder) / "clips.csv", newline="") as file:
            paths += [Path(folder) / row["path"] for row in csv.DictReader(file)]
    return paths


def frames_of(path: Path) -> list[np.ndarray]:
    """The frames the visual features are extracted from (gray, 25 fps, at most 640 px wide)."""
    params = VisualParams()
    info = media.probe(path)
    size = work_size(info.width, info.height, params.work_width)
    return [frame for _, frame in media.iter_video(path, fps=params.fps, gray=True, size=size)]


def frame_rms(path: Path, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """float ``[T]``: RMS of the clip's own audio in each frame's 40 ms (NaN past its end or without audio)."""
    try:
        samples = media.read_audio(path, sample_rate=SAMPLE_RATE)
    except Exception:  # noqa: BLE001 (a clip without sound)
        return np.full(n_frames, np.nan)
    hop = round(SAMPLE_RATE / fps)
    return np.array([np.sqrt(np.mean(samples[i * hop : (i + 1) * hop] ** 2)) if i * hop < len(samples) else np.nan
                     for i in range(n_frames)])  # fmt: skip


def quiet_frames(rms: np.ndarray) -> np.ndarray:
    """bool ``[T]``: frames whose audio RMS ``[T]`` is under the clip's `QUIET_QUANTILE`."""
    finite = np.isfinite(rms)
    return finite & (rms <= np.quantile(rms[finite], QUIET_QUANTILE)) if finite.any() else np.zeros(len(rms), bool)


def opening_vs_sound(landmarks: np.ndarray, rms: np.ndarray, frames: np.ndarray) -> float:
    """Pearson r of the inner-lip opening and the log audio RMS over the selected frames ``[T]``."""
    opening = mouth_opening(landmarks)
    level = np.log(np.maximum(rms, 1e-5))
    picked = frames & np.isfinite(opening) & np.isfinite(level)
    if picked.sum() < 10 or opening[picked].std() == 0:
        return float("nan")
    return float(np.corrcoef(opening[picked], level[picked])[0, 1])


def aligned_lips(landmarks: np.ndarray) -> np.ndarray:
    """Lip points with head position, roll and scale taken out (`avsync.features.lips`).

    Args:
        landmarks: float ``[T, 68, 2]``, NaN where invalid.

    Returns:
        float ``[T, 20, 2]`` in inter-ocular units, NaN where invalid.
    """
    points = landmarks.astype(np.float64)
    valid = np.isfinite(points).all(axis=(1, 2))
    out = np.full((len(points), len(MOUTH_POINTS), 2), np.nan)
    if valid.sum() < 2:
        return out
    seen = points[valid]
    stable = seen[:, STABLE_POINTS]
    inter_ocular = np.linalg.norm(seen[:, 36:40].mean(axis=1) - seen[:, 42:48].mean(axis=1), axis=1)
    reference = ((stable - stable.mean(axis=1, keepdims=True)) / np.maximum(inter_ocular, 1e-6)[:, None, None]).mean(axis=0)
    scale, rotation, translation = _similarity_to(reference, stable)
    out[valid] = scale[:, None, None] * np.einsum("tde,tke->tkd", rotation, seen[:, MOUTH_POINTS]) + translation[:, None]
    return out


def jitter(lips: np.ndarray, frames: np.ndarray) -> float:
    """RMS second difference of aligned lip points ``[T, 20, 2]`` at the frames ``[T]`` selected (1..T-2)."""
    second = lips[2:] - 2 * lips[1:-1] + lips[:-2]
    picked = second[frames[1:-1]]
    return float(np.sqrt(np.mean(picked**2))) if len(picked) else float("nan")


def track(backend_name: str, frames: list[np.ndarray]) -> tuple[np.ndarray, float, float]:
    """Landmarks ``[T, 68, 2]`` (NaN where invalid) and the wall and CPU seconds the tracker took."""
    tracker = FaceTracker(make_backend(backend_name), VisualParams().tracker)
    out = np.full((len(frames), 68, 2), np.nan)
    start, start_cpu = time.perf_counter(), time.process_time()
    for index, frame in enumerate(frames):
        points, _ = tracker.update(frame)
        if points is not None:
            out[index] = points
    return out, time.perf_counter() - start, time.process_time() - start_cpu


def geometric_interval(ratios: np.ndarray, seed: int = 0, draws: int = 2000) -> tuple[float, float, float]:
    """Geometric mean of `ratios` and its 95 % bootstrap interval over them."""
    logs = np.log(ratios)
    rng = np.random.default_rng(seed)
    means = [logs[rng.integers(0, len(logs), len(logs))].mean() for _ in range(draws)]
    return float(np.exp(logs.mean())), float(np.exp(np.quantile(means, 0.025))), float(np.exp(np.quantile(means, 0.975)))


def measure(paths: list[Path]) -> None:
    """Faces found, lip jitter and ms per frame of dlib and mesh on every clip (module docstring)."""
    make_backend("dlib"), make_backend("mesh")  # loaded before timing
    found = {"dlib": [0, 0], "mesh": [0, 0]}
    seconds = {"dlib": 0.0, "mesh": 0.0}
    cpu = {"dlib": 0.0, "mesh": 0.0}
    ratios, names, correlations = [], [], []
    print(f"{'clip':55s} {'frames':>6s} {'dlib %':>7s} {'mesh %':>7s} {'quiet':>5s} {'jit dlib':>9s} {'jit mesh':>9s} "
          f"{'ms dlib':>8s} {'ms mesh':>8s} {'r dlib':>7s} {'r mesh':>7s}")  # fmt: skip
    for path in paths:
        frames = frames_of(path)
        rms = frame_rms(path, len(frames))
        quiet = quiet_frames(rms)
        result = {}
        for name in ("dlib", "mesh"):
            landmarks, took, took_cpu = track(name, frames)
            valid = np.isfinite(landmarks).all(axis=(1, 2))
            found[name][0] += int(valid.sum())
            found[name][1] += len(valid)
            seconds[name] += took
            cpu[name] += took_cpu
            result[name] = (landmarks, valid, took)
        both = result["dlib"][1] & result["mesh"][1]
        steady = both.copy()
        steady[1:-1] &= both[:-2] & both[2:]
        steady[[0, -1]] = False
        picked = quiet & steady
        jitters = {name: jitter(aligned_lips(result[name][0]), picked) for name in result}
        pearson = {name: opening_vs_sound(result[name][0], rms, both) for name in result}
        if np.isfinite(list(pearson.values())).all():
            correlations.append([pearson["dlib"], pearson["mesh"]])
        if np.isfinite(list(jitters.values())).all() and jitters["dlib"] > 0 and picked.sum() >= 5:
            ratios.append(jitters["mesh"] / jitters["dlib"])
            names.append(str(path))
        label = "/".join(path.parts[-2:])[-55:]
        print(f"{label:55s} {len(frames):6d} {100 * result['dlib'][1].mean():7.1f} {100 * result['mesh'][1].mean():7.1f} "
              f"{int(picked.sum()):5d} {jitters['dlib']:9.4f} {jitters['mesh']:9.4f} "
              f"{1e3 * result['dlib'][2] / len(frames):8.2f} {1e3 * result['mesh'][2] / len(frames):8.2f} "
              f"{pearson['dlib']:7.3f} {pearson['mesh']:7.3f}", flush=True)  # fmt: skip
    print(f"\n{len(paths)} clips, {found['dlib'][1]} frames")
    for name in ("dlib", "mesh"):
        print(f"{name}: faces found {100 * found[name][0] / found[name][1]:.2f} % of frames; "
              f"landmarks stage {1e3 * seconds[name] / found[name][1]:.2f} ms per frame "
              f"({1e3 * cpu[name] / found[name][1]:.2f} ms of CPU)")  # fmt: skip
    if ratios:
        mean, low, high = geometric_interval(np.array(ratios))
        print(f"lip jitter mesh / dlib on quiet frames: {mean:.2f}x [{low:.2f}, {high:.2f}] (geometric mean over "
              f"{len(ratios)} clips; mesh steadier on {int((np.array(ratios) < 1).sum())})")  # fmt: skip
    if correlations:
        pairs = np.array(correlations)
        rng = np.random.default_rng(0)
        draws = [pairs[rng.integers(0, len(pairs), len(pairs))] for _ in range(2000)]
        low, high = np.quantile([(d[:, 1] - d[:, 0]).mean() for d in draws], [0.025, 0.975])
        print(f"mouth opening vs log audio RMS, mean Pearson r over {len(pairs)} clips: dlib {pairs[:, 0].mean():.3f}, "
              f"mesh {pairs[:, 1].mean():.3f} (paired difference {(pairs[:, 1] - pairs[:, 0]).mean():+.3f} "
              f"[{low:+.3f}, {high:+.3f}])")  # fmt: skip


def calibrate(paths: list[Path], every: int = 5) -> None:
    """Median box of the mesh's 68 points relative to BlazeFace's raw box (module docstring)."""
    from unittest import mock

    from avsync.features import mesh

    backend = mesh.MeshLandmarks()
    square = mock.patch.object(mesh, "BLAZE_TO_HOG", np.array([-0.5, -0.5, 0.5, 0.5]))
    crop = mock.patch.object(mesh, "MESH_ROI_SCALE", 1.5)  # MediaPipe's crop: 1.5 detection boxes
    shift = mock.patch.object(mesh, "MESH_ROI_SHIFT", (0.0, 0.0))
    square.start(), crop.start(), shift.start()
    rows = []
    for path in paths:
        for frame in frames_of(path)[::every]:
            boxes, _ = backend.detect(frame)  # BlazeFace's box made square
            if not len(boxes):
                continue
            box = boxes[0]
            centre, side = (box[:2] + box[2:]) / 2, box[2] - box[0]
            points = backend.predict(frame, box)
            if not np.isfinite(points).all():
                continue
            found = box_from_landmarks(points)
            rows.append([*(((found[:2] + found[2:]) / 2 - centre) / side), (found[2] - found[0]) / side])
    rows = np.array(rows)
    dx, dy, size = np.median(rows, axis=0)
    print(f"{len(rows)} frames: landmark box centre {dx:+.3f}, {dy:+.3f} and side {size:.3f} detection sides "
          f"(5-95 %: side {np.quantile(rows[:, 2], 0.05):.3f}-{np.quantile(rows[:, 2], 0.95):.3f}, "
          f"dy {np.quantile(rows[:, 1], 0.05):+.3f}-{np.quantile(rows[:, 1], 0.95):+.3f})")  # fmt: skip
    print(f"BLAZE_TO_HOG = [{dx - size / 2:.3f}, {dy - size / 2:.3f}, {dx + size / 2:.3f}, {dy + size / 2:.3f}]; "
          f"MESH_ROI_SCALE = {1.5 / size:.2f}; MESH_ROI_SHIFT = ({-dx / size:.3f}, {-dy / size:.3f})")


def fit_mapping(paths: list[Path], every: int = 5) -> None:
    """The mesh vertex nearest each dlib point on real frames, against `MESH_TO_IBUG` (module docstring)."""
    from avsync.features import mesh

    dlib, backend = make_backend("dlib"), make_backend("mesh")
    distances = []  # per frame [68, 468] in inter-ocular units
    for path in paths:
        for frame in frames_of(path)[::every]:
            boxes, scores = dlib.detect(frame)
            if not len(boxes):
                continue
            box = boxes[int(np.argmax(scores))]
            reference = dlib.predict(frame, box)
            points, presence = backend.mesh(frame, box)
            roll = mesh.eye_roll(points)
            if abs(np.degrees(roll)) > mesh.REALIGN_DEGREES:
                points, presence = backend.mesh(frame, box, roll)
            if presence < mesh.PRESENCE_SCORE:
                continue
            unit = np.linalg.norm(reference[45] - reference[36])
            distances.append(np.linalg.norm(reference[:, None] - points[None], axis=2) / unit)
    median = np.median(np.array(distances), axis=0)  # [68, 468]
    best = median.argmin(axis=1)
    used = median[np.arange(68), mesh.MESH_TO_IBUG]
    print(f"{len(distances)} frames; median distance to dlib's point (inter-ocular units)")
    for index in range(68):
        flag = "" if best[index] == mesh.MESH_TO_IBUG[index] else "  <- nearest differs"
        print(f"{index:2d}: used {mesh.MESH_TO_IBUG[index]:3d} {used[index]:.3f}   nearest {best[index]:3d} "
              f"{median[index, best[index]]:.3f}{flag}")  # fmt: skip
    print(f"mean over the 68: used {used.mean():.3f}, nearest {median.min(axis=1).mean():.3f}; "
          f"lips 48-67: used {used[48:].mean():.3f}, nearest {median.min(axis=1)[48:].mean():.3f}")
    print("nearest:", ", ".join(str(int(v)) for v in best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=list(FOLDERS))
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--fit-mapping", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="first N clips only")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    paths = clips(args.folders)[: args.limit]
    (calibrate if args.calibrate else fit_mapping if args.fit_mapping else measure)(paths)


if __name__ == "__main__":
    main()
