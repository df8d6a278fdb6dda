"""`avsync check`: is a video in sync with its own audio (or another track)? Two witnesses.

1. The model-free reference (`avsync.truth`): lip releases of /p b m/ paired with the onsets they
   make; an offset with its interval and a verdict (in sync, off, undecided). It reads dlib's
   landmarks (`avsync.truth.lips.REFERENCE_BACKEND`, on which its thresholds were set), a second
   reading of the video when the model reads others.
2. The model: the same analysis `avsync align` runs (`avsync.pipeline.sync.analyse`, i.e.
   `avsync.align.analysis.sync_features`), its constant offset and confidence.

Both offsets are ``t_video - t_audio`` (positive: the picture is late), as in `avsync align`,
in frames of the video's own rate. The verdict's tolerance is one frame at the model's 25 fps
(40 ms, `avsync.truth.estimate.TOLERANCE_FRAMES`), whatever the video's rate. The report says
whether the two agree within `AGREE_FRAMES` (at 25 fps).

Report fields (JSON): ``video``, ``audio`` (the track checked against: the video's own unless
AUDIO was given), ``fps`` (the video's own rate; every ``*_frames`` is in its frames),
``events`` {``offset_s``, ``offset_frames``, ``interval_frames``, ``n_events``, ``verdict``,
``off_by_frames``, ``bias_frames``, ``events``: [{``video_s``, ``audio_s``, ``lag_frames``}] (each
release's raw lag, before the bias is removed)},
``model`` {``offset_s``, ``offset_frames``, ``confidence``, ``confidence_level``,
``checkpoint``}, ``agreement`` (``agree``, ``disagree`` or ``events undecided``),
``difference_frames`` (events minus model, or null), ``warnings``, ``runtime_s``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from avsync.conventions import FPS, SAMPLE_RATE
from avsync.features.cache import visual_features
from avsync.features.extract import VisualParams
from avsync.io.media import atomic_path, read_audio
from avsync.models.checkpoints import LoadedModel
from avsync.pipeline.checks import SyncInputs
from avsync.pipeline.report import confidence_level
from avsync.pipeline.sync import SyncAnalysis, analyse
from avsync.truth.estimate import TOLERANCE_FRAMES, EventEstimate
from avsync.truth.events import EventLag
from avsync.truth.lips import REFERENCE_BACKEND
from avsync.truth.reference import event_sync

AGREE_FRAMES = 1.0
"""The two witnesses agree when their offsets differ by at most this many frames."""


@dataclass
class CheckReport:
    """What `avsync check` found (fields: the module docstring)."""

    video: str
    audio: str
    fps: float
    events: dict
    model: dict
    agreement: str
    difference_frames: float | None
    warnings: list[str] = field(default_factory=list)
    runtime_s: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the report as indented JSON, atomically.

        Args:
            path: the ``.json`` file.
        """
        with atomic_path(path) as temporary:
            Path(temporary).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _frames(seconds: float | None, fps: float) -> float | None:
    return None if seconds is None else round(seconds * fps, 2)


def events_section(estimate: EventEstimate, events: list[EventLag], features_fps: float, video_fps: float) -> dict:
    """The reference's answer in the video's frames.

    Args:
        estimate: from `avsync.truth.reference.event_sync` (frames at `features_fps`).
        events: its paired events.
        features_fps: the features' rate (25).
        video_fps: the video's own rate.
    """
    to_seconds = 1.0 / features_fps
    offset_s = None if estimate.offset_frames is None else estimate.offset_frames * to_seconds
    interval = None if estimate.interval_frames is None else [_frames(value * to_seconds, video_fps) for value in estimate.interval_frames]
    return {
        "offset_s": None if offset_s is None else round(offset_s, 4),
        "offset_frames": _frames(offset_s, video_fps),
        "interval_frames": interval,
        "n_events": estimate.n_events,
        "verdict": estimate.verdict,
        "off_by_frames": None if estimate.verdict != "off" else int(round(offset_s * video_fps)),
        "bias_frames": _frames(estimate.bias_frames * to_seconds, video_fps),
        "events": [{"video_s": round(e.video_s, 4), "audio_s": round(e.audio_s, 4), "lag_frames": _frames(e.lag_s, video_fps)}
                   for e in events],  # fmt: skip
    }


def build_check_report(analysis: SyncAnalysis, estimate: EventEstimate, events: list[EventLag], runtime_s: float = 0.0) -> CheckReport:
    """Both witnesses' answers and whether they agree.

    Args:
        analysis: the model's analysis (`avsync.pipeline.sync.analyse`).
        estimate: the reference's answer, in frames at the features' rate.
        events: the reference's paired events.
        runtime_s: wall time of the command.
    """
    inputs, features_fps = analysis.inputs, analysis.visual.fps
    video_fps = float(inputs.video_info.fps or features_fps)
    model_offset_s = analysis.sync.offset_frames / features_fps
    model = {"offset_s": round(model_offset_s, 4), "offset_frames": _frames(model_offset_s, video_fps),
             "confidence": round(analysis.sync.confidence, 3), "confidence_level": confidence_level(analysis.sync.confidence),
             "checkpoint": analysis.model.get("checkpoint")}  # fmt: skip
    section = events_section(estimate, events, features_fps, video_fps)
    warnings = []
    difference = None
    if estimate.decided:
        difference = round(section["offset_frames"] - model["offset_frames"], 2)
        agreement = "agree" if abs(difference) <= AGREE_FRAMES * video_fps / features_fps else "disagree"
        if agreement == "disagree":
            warnings.append(f"the lip releases and the model disagree by {difference:+.1f} frames: check by eye")
    else:
        agreement = "events undecided"
        warnings.append(f"too few clear lip releases ({estimate.n_events} paired) for a model-free verdict; only the model answers")
    if model["confidence_level"] != "reliable":
        warnings.append(f"the model's confidence is {model['confidence_level']} ({model['confidence']:.2f})")
    return CheckReport(os.fspath(inputs.video), os.fspath(inputs.music), round(video_fps, 6), section, model, agreement,
                       difference, warnings, round(runtime_s, 3))  # fmt: skip


def check_sync(inputs: SyncInputs, model: LoadedModel, *, cache_dir: str | os.PathLike[str] | None = None,
               visual_params: VisualParams = VisualParams(), progress: bool = True) -> tuple[SyncAnalysis, EventEstimate, list[EventLag]]:  # fmt: skip
    """Run both witnesses on a video and the audio it should be in sync with.

    Args:
        inputs: from `avsync.pipeline.checks.check_inputs` (``music``: the audio checked against).
        model: the network (`avsync.models.checkpoints.load_model`).
        cache_dir: feature cache folder, or None.
        visual_params: extraction parameters (which face to follow).
        progress: show progress bars.

    Returns:
        ``(analysis, estimate, events)``: the model's analysis, the reference's answer (frames at
        the features' 25 fps) and its events.

    Raises:
        MediaError: unreadable or unusable inputs (silent audio, no face).
    """
    analysis = analyse(inputs, model, cache_dir=cache_dir, visual_params=visual_params, progress=progress)
    reference_visual = analysis.visual
    if visual_params.backend != REFERENCE_BACKEND:
        reference_visual = visual_features(inputs.video, cache_dir, replace(visual_params, backend=REFERENCE_BACKEND), progress)
    samples = read_audio(inputs.reference, sample_rate=SAMPLE_RATE)
    estimate, events = event_sync(reference_visual, samples, SAMPLE_RATE)
    return analysis, estimate, events


def summarise_check(report: CheckReport) -> str:
    """The human summary: one line per witness and one on their agreement."""
    events, model = report.events, report.model
    if events["offset_frames"] is None:
        first = "events: no lip release paired with a sound: undecided"
    else:
        low, high = events["interval_frames"]
        verdict = events["verdict"]
        if verdict == "off":
            verdict = f"off by {events['off_by_frames']:+d} frames ({'picture late' if events['off_by_frames'] > 0 else 'picture early'})"
        elif verdict == "in sync":
            verdict = f"in sync (within +-{1000 * TOLERANCE_FRAMES / FPS:.0f} ms)"
        first = (f"events: {events['offset_frames']:+.2f} frames [{low:+.2f}, {high:+.2f}] from {events['n_events']} lip "
                 f"releases: {verdict}")  # fmt: skip
    second = f"model:  {model['offset_frames']:+.2f} frames, confidence {model['confidence']:.2f} ({model['confidence_level']})"
    if report.agreement == "agree":
        third = f"the two agree (within {AGREE_FRAMES:g} frame)"
    elif report.agreement == "disagree":
        third = f"the two DISAGREE ({report.difference_frames:+.2f} frames)"
    else:
        third = "only the model decides"
    return "\n".join([first, second, third, *(f"warning: {warning}" for warning in report.warnings)])
