"""Accuracy on real faces (issue 7): warped clips of held-out speakers aligned as `avsync align` does.

Protocol:

1. Speakers: clips of one person share a speaker (`speaker_groups`: dlib face descriptors of three
   frames per clip, average-linkage clusters closer than `SAME_SPEAKER_DISTANCE`); whole speakers
   are held out (the ``test`` split of the manifest).
2. Cases (`make_cases`): each held-out clip of at least `MIN_CLIP_FRAMES` frames is warped as a
   user would meet it, with the known truth kept (`avsync.evaluation.warp.FrameMap`):

   * ``shift``: a constant shift of 1-15 frames either way;
   * ``tempo``: a tempo drift 0.9-1.1x, then a shift;
   * ``cutfreeze``: a cut (10-50 frames) and a freeze (10-40 frames), then a shift.

   The warped video is written as an H.264 MP4 without audio (`avsync.evaluation.warp.warp_video_file`);
   the reference is the original clip itself (its own audio, in sync with the unwarped picture).
3. Methods, every one through the same features of the warped file (its mouth crops and
   landmarks are extracted from the re-encoded video, as `avsync align` would):

   * a model: `avsync.pipeline.sync.analyse` (exactly the analysis of `avsync align`);
   * ``classical``: lip opening vs speech-band energy (`avsync.evaluation.baseline`): its cost matrix goes
     through the same robust DTW and time map as a model's; the constant offset is the
     cross-correlation lag;
   * ``constant``: the perfect constant-offset aligner, the true best constant offset applied to
     every frame (what any offset-only tool could reach at best).

4. Scores per case (`CaseScore`): offset error and accuracy (within +-1 frame), frame error of the
   time map and the share of frames within +-1 frame; the table (`summarise`, `format_markdown`)
   gives, per method, the offset accuracy on the shift cases and the share of frames within +-1
   frame per kind and over all cases, beside the issue's targets.

Run: ``python -m avsync.evaluation.realeval DATA --cache cache --out outputs/realeval --model NAME=CKPT ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avsync.align.timemap import TimeMap, path_to_time_map
from avsync.conventions import FPS
from avsync.errors import AvsyncError
from avsync.evaluation.baseline import baseline_cost, speech_band_envelope, xcorr_offset
from avsync.evaluation.metrics import frame_errors, offset_accuracy
from avsync.evaluation.warp import FrameMap, make_warp, warp_video_file
from avsync.features.audio import MelConfig, voiced_frames
from avsync.features.cache import FeatureCache
from avsync.features.extract import VisualParams
from avsync.features.landmarks import mouth_opening
from avsync.features.manifest import ClipRecord, read_manifest
from avsync.io.media import atomic_path
from avsync.models.checkpoints import LoadedModel, load_model
from avsync.pipeline.retime import constant_time_map
from avsync.pipeline.sync import (
    analyse,
    path_offset_frames,
    robust_alignment,
    scored_rows,
)

KINDS = ("shift", "tempo", "cutfreeze")
MIN_CLIP_FRAMES = 200
"""Shortest held-out clip that is warped (8 s): a cut of 50 frames must leave the 150 `make_warp` needs."""
SAME_SPEAKER_DISTANCE = 0.57
"""Face-descriptor distance under which two clips are one speaker (dlib's own rule is 0.6)."""
TARGETS = {"offset_acc_shift": 0.95, "within1_all": 0.85, "within1_tempo": 0.75, "within1_cutfreeze": 0.75}
BASELINE_METHODS = ("classical", "constant")


@dataclass(frozen=True)
class RealCase:
    """A warped held-out clip and its truth.

    Attributes:
        name: ``<clip id>:<kind>:<seed>``.
        kind: one of `KINDS`.
        video: the warped video (no audio).
        source: the original video it was warped from.
        reference: the audio the original video is in sync with (`ClipRecord.reference_audio`:
            for a real clip, the clip itself).
        frame_map: warped frame ``i`` shows original (= reference) frame ``src_index[i]``.
    """

    name: str
    kind: str
    video: Path
    source: Path
    reference: Path
    frame_map: FrameMap


@dataclass
class CaseScore:
    """One method on one case (frames at 25 fps; offsets positive = video late).

    Attributes:
        case, kind, method: which.
        offset_true, offset_found, offset_err: best constant offset, found and true, and the error.
        offset_acc: 1.0 when ``offset_err <= 1``.
        frame_err_mean: mean ``|found - true|`` reference frame over the warped video's frames.
        within1: share of those frames within +-1 frame.
    """

    case: str
    kind: str
    method: str
    offset_true: float
    offset_found: float
    offset_err: float
    offset_acc: float
    frame_err_mean: float
    within1: float


def compose(first: FrameMap, second: FrameMap, kind: str) -> FrameMap:
    """Apply warp `second` (drawn over ``len(first)`` frames) to the output of warp `first`.

    Args:
        first: warp of the original clip.
        second: warp of `first`'s output (``second.n_source == len(first)``).
        kind: the name of the composed warp.

    Returns:
        The composed map (``src_index = first.src_index[second.src_index]``).
    """
    if second.n_source != len(first):
        raise ValueError(f"second warp expects {second.n_source} frames, the first gives {len(first)}")
    return FrameMap(first.src_index[second.src_index], first.n_source, kind, {**first.params, **second.params})


def draw_warp(kind: str, n_frames: int, seed: int) -> FrameMap:
    """A warp of one of `KINDS`, deterministic from `seed`.

    Args:
        kind: ``shift``, ``tempo`` (drift then shift) or ``cutfreeze`` (cut, freeze, then shift).
        n_frames: frames of the clip (at least `MIN_CLIP_FRAMES`).
        seed: the random seed.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    if kind == "shift":
        return make_warp("shift", n_frames, rng)
    if kind == "tempo":
        base = make_warp("tempo", n_frames, rng)
    else:
        cut = make_warp("cut", n_frames, rng)
        base = compose(cut, make_warp("freeze", len(cut), rng), kind)
    return compose(base, make_warp("shift", len(base), rng), kind)


def speaker_groups(videos: Sequence[str | os.PathLike[str]], threshold: float = SAME_SPEAKER_DISTANCE) -> list[int]:
    """Group clips by the person on screen (dlib face descriptors, average-linkage clusters).

    Each clip's descriptor is the mean of its largest face's descriptor at 20, 50 and 80 % of its
    length; clips without a detected face get a group of their own.

    Args:
        videos: the clips.
        threshold: descriptor distance under which clusters merge.

    Returns:
        A group label per clip (equal labels: same speaker).
    """
    import dlib
    import face_recognition_models
    from scipy.cluster.hierarchy import fcluster, linkage

    from avsync.io.media import read_video

    models = Path(face_recognition_models.__file__).parent / "models"
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    descriptors: list[np.ndarray | None] = []
    for video in videos:
        frames = read_video(video).frames
        found = []
        for share in (0.2, 0.5, 0.8):
            image = np.ascontiguousarray(frames[int(share * (len(frames) - 1))])
            faces = detector(image, 1)
            if faces:
                face = max(faces, key=lambda box: box.area())
                found.append(np.array(encoder.compute_face_descriptor(image, shape(image, face))))
        descriptors.append(np.mean(found, axis=0) if found else None)
    known = [i for i, d in enumerate(descriptors) if d is not None]
    labels = [0] * len(descriptors)
    if len(known) > 1:
        clusters = fcluster(linkage(np.stack([descriptors[i] for i in known]), "average"), threshold, "distance")
        for index, cluster in zip(known, clusters, strict=True):
            labels[index] = int(cluster)
    elif known:
        labels[known[0]] = 1
    next_label = max(labels) + 1
    for index, descriptor in enumerate(descriptors):
        if descriptor is None:
            labels[index], next_label = next_label, next_label + 1
    return labels


def make_cases(records: Sequence[ClipRecord], cache: FeatureCache, out_dir: str | os.PathLike[str], *,
               seeds: Sequence[int] = (0, 1), progress: bool = True) -> list[RealCase]:
    """Warp the long enough clips of `records` (every kind, every seed) into `out_dir`.

    Existing warped files with the same truth are kept (the step is idempotent).

    Args:
        records: the held-out clips (videos in sync with their reference audio).
        cache: feature cache (the clip's frame count comes from its cached features).
        out_dir: where ``<clip>_<kind>_<seed>.mp4`` and ``.truth.json`` go.
        seeds: one warp per kind and seed.
        progress: tqdm bar.

    Returns:
        The cases, by clip, kind and seed.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for record in records:
        n_frames = len(cache.visual(record.video))
        if n_frames < MIN_CLIP_FRAMES:
            continue
        for kind in KINDS:
            for seed in seeds:
                clip_seed = int.from_bytes(record.id.encode(), "little") % 100_000 * 100 + seed
                video = folder / f"{record.id.replace('/', '_')}_{kind}_{seed}.mp4"
                cases.append(RealCase(f"{record.id}:{kind}:{seed}", kind, video, record.video, record.reference_audio,
                                      draw_warp(kind, n_frames, clip_seed)))
    for case in tqdm(cases, desc="warp", unit="case", disable=not progress):
        truth = case.video.with_suffix(".truth.json")
        if case.video.is_file() and truth.is_file():
            if json.loads(truth.read_text())["src_index"] == case.frame_map.src_index.tolist():
                continue
        warp_video_file(case.source, case.video, case.frame_map, fps=FPS)
    return cases


def _score(case: RealCase, method: str, time_map: TimeMap, offset_found: float) -> CaseScore:
    errors = frame_errors(time_map, case.frame_map.src_index)
    offset_true = case.frame_map.true_offset_frames
    offset_err = abs(offset_found - offset_true)
    return CaseScore(case.name, case.kind, method, offset_true, float(offset_found), float(offset_err),
                     offset_accuracy([offset_found], [offset_true]), errors.mean, errors.within1)


def score_model(case: RealCase, name: str, model: LoadedModel, cache_dir: str | os.PathLike[str]) -> CaseScore:
    """Align a case exactly as `avsync align` does (`avsync.pipeline.sync.analyse`) and score it."""
    analysis = analyse(case.video, case.reference, model, cache_dir=cache_dir, progress=False)
    return _score(case, name, analysis.sync.time_map, analysis.sync.offset_frames)


def _score_cost(case: RealCase, method: str, cost: np.ndarray, rows: np.ndarray, offset_found: float | None = None) -> CaseScore:
    """The robust DTW and time map of `avsync.pipeline.sync` over a cost; offset: the path's unless given."""
    _, alignment, weak = robust_alignment(cost, rows)
    offset = path_offset_frames(alignment, rows & ~weak) if offset_found is None else offset_found
    return _score(case, method, path_to_time_map(alignment, FPS), offset)


def score_classical(case: RealCase, cache: FeatureCache) -> CaseScore:
    """Align a case with the classical baseline (same robust DTW and time map) and score it."""
    visual = cache.visual(case.video, VisualParams())
    audio = cache.audio(case.reference, MelConfig())
    rows = scored_rows(visual.valid)
    opening = mouth_opening(visual.landmarks)
    envelope = speech_band_envelope(audio.log_mel)
    cost = baseline_cost(opening, envelope, video_valid=rows, ref_active=voiced_frames(audio.log_mel))
    return _score_cost(case, "classical", cost, rows, xcorr_offset(opening, envelope).offset_frames)


def score_precomputed(case: RealCase, name: str, cost: np.ndarray, cache: FeatureCache) -> CaseScore:
    """Score a model from its normalised cost matrix computed elsewhere (`avsync.align.cost.cost_matrix`
    on this case's features, e.g. a pair model on a GPU), through the same robust DTW and time map.

    Args:
        case: the case.
        name: the method's name.
        cost: float [N, M] normalised cost of the warped video against the reference.
        cache: the feature cache (for the face mask of the warped video).
    """
    rows = scored_rows(cache.visual(case.video, VisualParams()).valid)
    if cost.shape[0] != len(rows):
        raise AvsyncError(f"{name}: cost of {case.name} has {cost.shape[0]} rows, the video {len(rows)} frames")
    return _score_cost(case, name, np.asarray(cost, np.float64), rows)


def score_constant(case: RealCase) -> CaseScore:
    """The perfect constant-offset aligner: the true best constant offset for every frame."""
    offset = case.frame_map.true_offset_frames
    return _score(case, "constant", constant_time_map(offset / FPS, (len(case.frame_map) - 1) / FPS, FPS), offset)


def summarise(scores: Sequence[CaseScore]) -> dict[str, dict[str, float]]:
    """Per method: offset accuracy on the shift cases and on all, within +-1 frame per kind and overall.

    Returns:
        ``{method: {"offset_acc_shift", "offset_acc_all", "within1_<kind>", "within1_all",
        "frame_err_mean", "cases"}}``, methods in first-seen order.
    """
    table: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(score.method for score in scores):
        rows = [score for score in scores if score.method == method]
        shift = [score for score in rows if score.kind == "shift"]
        entry = {"offset_acc_shift": float(np.mean([s.offset_acc for s in shift])) if shift else float("nan"),
                 "offset_acc_all": float(np.mean([s.offset_acc for s in rows]))}
        for kind in KINDS:
            chosen = [score.within1 for score in rows if score.kind == kind]
            entry[f"within1_{kind}"] = float(np.mean(chosen)) if chosen else float("nan")
        entry["within1_all"] = float(np.mean([score.within1 for score in rows]))
        entry["frame_err_mean"] = float(np.mean([score.frame_err_mean for score in rows]))
        entry["cases"] = float(len(rows))
        table[method] = entry
    return table


COLUMNS = (("offset_acc_shift", "offset acc (shift)"), ("within1_shift", "within 1 (shift)"), ("within1_tempo", "within 1 (tempo)"),
           ("within1_cutfreeze", "within 1 (cut+freeze)"), ("within1_all", "within 1 (all)"), ("frame_err_mean", "mean frame err"))


def format_markdown(table: dict[str, dict[str, float]]) -> str:
    """The summary as a Markdown table (percentages; frame error in frames), with a target row."""
    lines = ["| method | cases | " + " | ".join(title for _, title in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for method, entry in table.items():
        cells = [f"{entry[key]:.2f}" if key == "frame_err_mean" else f"{100 * entry[key]:.0f}%" for key, _ in COLUMNS]
        lines.append(f"| {method} | {int(entry['cases'])} | " + " | ".join(cells) + " |")
    targets = [f">= {100 * TARGETS[key]:.0f}%" if key in TARGETS else "" for key, _ in COLUMNS]
    lines.append("| target | | " + " | ".join(targets) + " |")
    return "\n".join(lines)


def plot_summary(table: dict[str, dict[str, float]], out_png: str | os.PathLike[str]) -> Path:
    """Bar chart of the share of frames within +-1 frame per kind and method (PNG, atomic)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from avsync.pipeline.plots import save_figure

    keys = [f"within1_{kind}" for kind in KINDS] + ["within1_all"]
    figure = Figure(figsize=(9, 3.5))
    axes = figure.subplots()
    width = 0.8 / max(1, len(table))
    colours = colormaps["tab20"].colors
    for index, (method, entry) in enumerate(table.items()):
        axes.bar(np.arange(len(keys)) + index * width, [100 * entry[key] for key in keys], width, label=method,
                 color=colours[index % len(colours)])
    axes.axhline(85, color="k", lw=0.8, ls="--")
    axes.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, [key.removeprefix("within1_") for key in keys])
    axes.set_ylabel("frames within +-1 frame (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes.set_title("held-out speakers, warped real clips")
    figure.tight_layout()
    return save_figure(figure, out_png, dpi=90)


def run(cases: Sequence[RealCase], models: dict[str, LoadedModel], cache_dir: str | os.PathLike[str], *,
        costs: dict[str, dict[str, np.ndarray]] | None = None, baselines: bool = True, progress: bool = True) -> list[CaseScore]:
    """Score every method on every case.

    Args:
        cases: from `make_cases`.
        models: name -> loaded model (each aligned through `avsync.pipeline.sync.analyse`).
        costs: name -> {case name -> normalised cost matrix} (`score_precomputed`).
        cache_dir: the feature cache (features of warped files are computed once, then reused).
        baselines: also score ``classical`` and ``constant``.
        progress: tqdm bar.
    """
    cache = FeatureCache(cache_dir)
    scores = []
    for case in tqdm(cases, desc="evaluate", unit="case", disable=not progress):
        for name, model in models.items():
            scores.append(score_model(case, name, model, cache_dir))
        for name, matrices in (costs or {}).items():
            if case.name not in matrices:
                raise AvsyncError(f"{name}: no cost matrix for case {case.name}")
            scores.append(score_precomputed(case, name, matrices[case.name], cache))
        if baselines:
            scores += [score_classical(case, cache), score_constant(case)]
    return scores


def _named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def _load_costs(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError) as exc:
        raise AvsyncError(f"cannot read cost matrices ({exc})", path) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avsync.evaluation.realeval``: warp the held-out clips, evaluate, write the table."""
    parser = argparse.ArgumentParser(prog="python -m avsync.evaluation.realeval", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="manifest or folder of real clips; its test split is held out")
    parser.add_argument("--cache", type=Path, default=Path("cache"), help="feature cache (default cache)")
    parser.add_argument("--out", type=Path, default=Path("outputs/realeval"), help="warped clips, scores, table, plot")
    parser.add_argument("--cases", type=Path, help="where the warped clips go (default OUT/cases; reused when present)")
    parser.add_argument("--model", action="append", type=_named_path, default=[], metavar="NAME=CKPT", help="a model to evaluate (repeatable)")
    parser.add_argument("--costs", action="append", type=_named_path, default=[], metavar="NAME=NPZ",
                        help="precomputed normalised cost matrices of a model, one array per case name (repeatable)")
    parser.add_argument("--seeds", type=int, default=2, help="warps per clip and kind (default 2)")
    parser.add_argument("--split", default="test", help="which split is held out (default test)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    try:
        if args.seeds < 1:
            raise AvsyncError(f"--seeds must be at least 1, got {args.seeds}")
        records = [record for record in read_manifest(args.data) if record.split == args.split]
        if not records:
            raise AvsyncError(f"no clips in the {args.split!r} split", args.data)
        models = {name: load_model(path, args.device) for name, path in args.model}
        cases = make_cases(records, FeatureCache(args.cache), args.cases or args.out / "cases", seeds=range(args.seeds))
        if not cases:
            raise AvsyncError(f"no held-out clip is {MIN_CLIP_FRAMES} frames long", args.data)
        costs = {name: _load_costs(path) for name, path in args.costs}
        scores = run(cases, models, args.cache, costs=costs)
    except AvsyncError as exc:
        print(f"avsync realeval: {exc}", file=sys.stderr)
        return 2
    table = summarise(scores)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "scores.json") as temporary:
        temporary.write_text(json.dumps({"cases": [asdict(s) for s in scores], "summary": table}, indent=1))
    markdown = format_markdown(table)
    with atomic_path(args.out / "table.md") as temporary:
        temporary.write_text(markdown + "\n")
    plot_summary(table, args.out / "within1.png")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
