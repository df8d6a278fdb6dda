"""The `avsync align` pipeline: check the inputs once, features, analysis, report.

1. `avsync.pipeline.checks.check_inputs` reads every input's header once (`SyncInputs`): a
   missing or unreadable file, a video without pictures or a reference without sound ends there,
   before any heavy work (or import);
2. `analyse` loads the reference's log-mel and the video's mouth crops and landmarks
   (`avsync.features`, through the feature cache when one is given; a silent reference or a
   video without any face is a user error; the lips may be read meanwhile in a process of their
   own, `avsync.pipeline.shot_features`) and aligns them (`avsync.align.analysis.sync_features`:
   cost matrix, robust DTW, time map, offset and confidence);
3. `build_report` turns the analysis into the `avsync.pipeline.report.SyncReport`, once, with
   the outputs the command wrote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from avsync.align.analysis import FeatureSync, load_kernels, sync_features
from avsync.align.cost import VideoEmbedder, embed_reference
from avsync.align.dtw import DTWConfig, alignment_cost
from avsync.align.place import is_match, needs_placement
from avsync.align.robust import retimed_fraction, unreliable_spans
from avsync.align.tuning import CAMERA_LIPS_RADIUS
from avsync.conventions import MELS_PER_FRAME
from avsync.errors import MediaError
from avsync.features.extract import AudioFeatures, VisualFeatures, VisualParams
from avsync.models.checkpoints import LoadedModel
from avsync.pipeline.camera_audio import CameraAudio, listen, placed_by_sound, report_block
from avsync.pipeline.checks import SyncInputs
from avsync.pipeline.report import SyncReport, confidence_level
from avsync.pipeline.shot_features import load_shot

if TYPE_CHECKING:
    from avsync.features.cache import FeatureCache

SILENCE_POWER = 1e-3
"""Summed mel power of the loudest reference frame below which the reference is silent (a
full-scale sine gives about 1e4, so this is about -70 dB)."""
LOW_FACE_SHARE = 0.2
"""Warn when more than this share of the video has no usable face."""
VOCAL_LENGTH_TOLERANCE_S = 1.0
"""A vocal stem whose length differs from the music's by more than this gets a warning."""


@dataclass
class SyncAnalysis:
    """What `analyse` found: the inputs, the alignment, the features behind it and the seconds each stage took."""

    inputs: SyncInputs
    sync: FeatureSync
    visual: VisualFeatures
    audio: AudioFeatures
    model: dict
    timings: dict[str, float] = field(default_factory=dict)
    camera: CameraAudio | None = None

    @property
    def n_frames(self) -> int:
        """Video frames at the model's rate."""
        return len(self.visual)

    @property
    def n_ref(self) -> int:
        """Reference frames at the model's rate."""
        return self.audio.log_mel.shape[1] // MELS_PER_FRAME

    @property
    def placed(self) -> bool:
        """Whether the video is a take inside a much longer reference, placed before it was aligned."""
        return needs_placement(self.n_frames, self.n_ref)

    @property
    def placed_by(self) -> str | None:
        """``lips`` when the lips place the video (`avsync.align.place.is_match`), else ``camera audio``
        when its own sound does (`avsync.pipeline.camera_audio`), else None: no match."""
        if is_match(self.sync.confidence):
            return "lips"
        if self.camera is not None and self.camera.matched:
            return "camera audio"
        return None


def check_not_silent(log_mel: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Raise unless some reference frame is louder than `SILENCE_POWER`.

    Args:
        log_mel: float [80, 4M], natural-log mel power.
        path: the reference (for the message).

    Raises:
        MediaError: the reference is silent.
    """
    peak = float(np.exp(log_mel.astype(np.float64)).sum(axis=0).max()) if log_mel.size else 0.0
    if peak < SILENCE_POWER:
        raise MediaError("is silent (its audio has no sound to align to)", path)


def load_reference(reference: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | FeatureCache | None) -> AudioFeatures:
    """The reference's log-mel, checked for silence (several shots against one song load it once).

    Args:
        reference: the music (or its vocal).
        cache_dir: feature cache folder (or the `avsync.features.cache.FeatureCache`), or None to
            compute without caching.

    Raises:
        MediaError: unreadable or silent reference.
    """
    from avsync.features.cache import audio_features

    audio = audio_features(reference, cache_dir)
    check_not_silent(audio.log_mel, reference)
    return audio


def analyse(
    inputs: SyncInputs,
    model: LoadedModel,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    dtw_config: DTWConfig | None = None,
    visual_params: VisualParams = VisualParams(),
    audio: AudioFeatures | None = None,
    shot: Callable[..., VisualFeatures] | None = None,
    camera_audio: bool = False,
    music_audio: AudioFeatures | None = None,
    song_cache: FeatureCache | None = None,
    progress: bool = True,
) -> SyncAnalysis:
    """Align a video to its reference: features, then `avsync.align.analysis.sync_features`.

    Args:
        inputs: from `check_inputs`.
        model: the network (`avsync.models.checkpoints.load_model`).
        cache_dir: feature cache folder, or None.
        visual_params: extraction parameters (`VisualParams`; e.g. which face to follow).
        dtw_config: DTW constraints (see `avsync.align.analysis.align_cost`).
        audio: the reference's features when already loaded (`load_reference`), else loaded here.
        shot: returns the video's features when they are being read elsewhere
            (`avsync.pipeline.shot_features.shot_in_background`'s ``result``); the reference is
            embedded meanwhile, and the video's mouth crops while they arrive (its ``on_crops``).
            None: they are loaded here.
        camera_audio: match the video's own audio against the music too
            (`avsync.pipeline.camera_audio`): where it is the music, it narrows where the lips are
            searched, and places a take the lips cannot.
        music_audio: the music's features when `audio` is the vocal's (loaded here when needed).
        song_cache: the feature cache for the music's features and the model's embedding of it
            (`avsync align` without ``--cache``: the user's, `avsync.commands.checks.song_cache`);
            None: `cache_dir`'s.
        progress: show progress bars.

    Raises:
        MediaError: unreadable or unusable inputs (see `load_reference`, `load_shot`).
        AvsyncError: a pair model asked to score too many pairs.
    """
    from avsync.features.cache import FeatureCache

    started = time.perf_counter()
    if song_cache is None and cache_dir is not None:
        song_cache = FeatureCache(cache_dir)
    if audio is None:
        audio = load_reference(inputs.reference, song_cache)  # first: a silent reference is found cheaply
    loaded = time.perf_counter()
    timings = {"music features": loaded - started}
    if shot is None:
        visual = load_shot(inputs.video, cache_dir, visual_params, progress)
        timings["video features"] = time.perf_counter() - loaded
    embedding = time.perf_counter()  # with a shot read in the background: meanwhile
    embed_reference(model.network, audio.log_mel, store=None if song_cache is None else song_cache.embedding)
    timings["music embedding"] = time.perf_counter() - embedding
    camera = None
    if camera_audio:
        heard = time.perf_counter()
        if music_audio is None:
            music_audio = audio if inputs.vocal is None else load_reference(inputs.music, song_cache)
        camera = listen(inputs, music_audio, cache_dir)
        timings["camera audio"] = time.perf_counter() - heard
    if shot is not None:
        kernels = time.perf_counter()
        load_kernels()  # numba's compiled DTW, a first call's set-up spent while the lips are still being read
        waiting = time.perf_counter()
        timings["kernels"] = waiting - kernels
        visual = shot(on_crops=VideoEmbedder(model.network).add)  # embedded while the rest of the video is read
        timings["video features (waited)"] = time.perf_counter() - waiting
    candidates = None if camera is None else camera.candidate_frames(visual.fps)
    sync = sync_features(visual.mouth_crops, visual.valid, audio.log_mel, model.network, landmarks=visual.landmarks,
                         fps=visual.fps, dtw_config=dtw_config, candidates=candidates, progress=progress)  # fmt: skip
    timings.update(sync.timings)
    analysis = SyncAnalysis(inputs, sync, visual, audio, model.describe(), timings, camera)
    if analysis.placed_by == "camera audio":
        assert camera is not None and camera.match is not None
        analysis.sync = placed_by_sound(sync, camera.match.offset_s, visual.fps)
    return analysis


def build_report(analysis: SyncAnalysis, *, output: str | os.PathLike[str] | None = None, mode: str | None = None,
                 output_warnings: list[str] | None = None, runtime_s: float = 0.0,
                 output_start_s: float | None = None, output_duration_s: float | None = None,
                 output_copied: bool | None = None) -> SyncReport:
    """The report of an analysis (and of the synced video written from it, if any).

    Args:
        analysis: from `analyse`.
        output: the synced video written, or None.
        mode: how it was written (``warp`` or ``offset``).
        output_warnings: what writing it found to say.
        runtime_s: wall time of the whole command.
        output_start_s: music time of a re-timed output's first frame.
        output_duration_s: its length.
        output_copied: whether its video is the input's packets, copied (None without output).
    """
    inputs, sync, fps = analysis.inputs, analysis.sync, analysis.visual.fps
    offset_s = sync.offset_frames / fps
    video_fps = float(inputs.video_info.fps or fps)
    return SyncReport(
        video=os.fspath(inputs.video),
        reference=os.fspath(inputs.music),
        fps=round(video_fps, 6),
        offset_s=round(offset_s, 4),
        offset_frames=round(offset_s * video_fps),
        confidence=round(sync.confidence, 3),
        confidence_level=confidence_level(sync.confidence),
        time_map=sync.time_map.to_list(),
        retimed_fraction=round(retimed_fraction(sync.time_map, analysis.n_frames, sync.offset_frames), 4),
        dtw_cost=round(alignment_cost(sync.cost, sync.alignment.path), 4),
        frames_without_face=int((~analysis.visual.valid).sum()),
        unreliable_spans=unreliable_spans(sync.reasons(), fps),
        warnings=_warnings(analysis) + list(output_warnings or []),
        model=analysis.model,
        runtime_s=round(runtime_s, 3),
        video_duration_s=round(analysis.n_frames / fps, 3),
        reference_duration_s=round(analysis.n_ref / fps, 3),
        output=None if output is None else os.fspath(output),
        mode=mode,
        vocal=None if inputs.vocal is None else os.fspath(inputs.vocal),
        output_start_s=None if output_start_s is None else round(output_start_s, 6),
        output_duration_s=None if output_duration_s is None else round(output_duration_s, 6),
        output_copied=output_copied,
        placed_by=analysis.placed_by,
        camera_audio=None if analysis.camera is None else report_block(analysis.camera, offset_s, analysis.placed_by, video_fps),
        timings_s={stage: round(seconds, 3) for stage, seconds in analysis.timings.items()},
    )


def _warnings(analysis: SyncAnalysis) -> list[str]:
    """Sentences about what makes the result less trustworthy."""
    warnings = []
    sync, valid, fps = analysis.sync, analysis.visual.valid, analysis.visual.fps
    n_frames, n_ref = analysis.n_frames, analysis.n_ref
    level = confidence_level(sync.confidence)
    camera = analysis.camera
    heard = camera is not None and (analysis.placed_by == "camera audio" or camera.agrees_with(sync.offset_frames / fps, fps))
    if level != "reliable" and not heard:  # the take's own sound at that place is the check by ear done
        advice = "; --mode offset applies only the constant offset" if level == "unreliable" else ""
        warnings.append(f"confidence is {level} ({sync.confidence:.2f}): check the result by eye{advice}")
    if analysis.visual.faces_seen > 1 and analysis.visual.followed_at is not None:
        x, y = analysis.visual.followed_at
        rule = analysis.visual.params.get("tracker", {}).get("face", "largest")
        warnings.append(f"{analysis.visual.faces_seen} faces in the picture: followed the {rule} one "
                        f"(at {100 * x:.0f}% across, {100 * y:.0f}% down); choose another with --face left|right|largest|X,Y")  # fmt: skip
    no_face = 1.0 - float(valid.mean())
    if no_face > LOW_FACE_SHARE:
        warnings.append(f"{100 * no_face:.0f}% of the video shows no usable face; those stretches follow their neighbours")
    if sync.weak.sum() > 0.25 * max(1, sync.scored.sum()):
        warnings.append(f"the lips do not follow the vocal in {100 * sync.weak.sum() / n_frames:.0f}% of the video")
    if n_frames > n_ref:
        warnings.append(f"the video ({n_frames / fps:.2f} s, {n_frames} frames at {fps:g} fps) is longer than the music "
                        f"({n_ref / fps:.2f} s, {n_ref} frames)")  # fmt: skip
    knots = sync.time_map.knots
    start, end = float(knots[0, 0]), float(knots[-1, 0]) + 1.0 / fps
    if start < -1.0 / fps or end > n_ref / fps + 1.0 / fps:
        covered = sync.time_map.video_time(np.array([0.0, n_ref / fps]))
        warnings.append(f"the music covers only video {max(0.0, covered[0]):.1f}-{min(n_frames / fps, covered[1]):.1f} s of "
                        f"{n_frames / fps:.1f} s; the rest of the video has no music")  # fmt: skip
    if (start > 1.0 or end < n_ref / fps - 1.0) and not analysis.placed:  # a take covers part of the song by nature
        warnings.append(f"the video covers music {max(0.0, start):.1f}-{end:.1f} s of {n_ref / fps:.1f} s; "
                        "the first/last frame is held outside it")  # fmt: skip
    if analysis.placed_by == "camera audio":
        warnings.append(f"the lips could not place the video (confidence {sync.confidence:.2f}); it is placed by its own "
                        "audio, at that constant offset")  # fmt: skip
    elif analysis.placed_by == "lips" and camera is not None and camera.matched and camera.match is not None:
        apart = abs(sync.offset_frames / fps - camera.match.offset_s)
        if apart > CAMERA_LIPS_RADIUS / fps:  # only a clip covering the music is searched this far from its sound
            warnings.append(f"the lips place the video {apart:.2f} s from where its own audio does: check it by ear")
    inputs = analysis.inputs
    if inputs.vocal_info is not None and abs(inputs.vocal_info.duration - inputs.music_info.duration) > VOCAL_LENGTH_TOLERANCE_S:
        warnings.append(f"the vocal ({inputs.vocal_info.duration:.1f} s) and the music ({inputs.music_info.duration:.1f} s) differ "
                        "in length; the time map follows the vocal, which must start with the music")  # fmt: skip
    return warnings


def default_plot_title(report: SyncReport) -> str:
    """A one-line title for the alignment plot."""
    return (f"{Path(report.video).name} vs {Path(report.vocal or report.reference).name}: offset {report.offset_s:+.2f} s, "
            f"confidence {report.confidence:.2f} ({report.confidence_level})")  # fmt: skip
