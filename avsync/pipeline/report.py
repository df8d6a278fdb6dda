"""The `avsync align` report: a JSON document with a fixed schema, and its human summary.

Fields (all times in seconds; other fields may be added, these never change meaning):

* ``video``, ``reference``: the input paths as given (``reference``: MUSIC).
* ``vocal``: the vocal stem the alignment used instead of MUSIC (``--vocal``), else null.
* ``fps``: the video's own frame rate (the output MP4's rate).
* ``offset_s``: the best constant offset, ``t_video - t_ref`` for the same event. Positive: the
  video is late (advance it by ``offset_s`` to fix); negative: the video is early.
* ``offset_frames``: ``offset_s`` in frames of the video's own rate (rounded).
* ``confidence``: how far the best constant offset stands out from a typical one, SyncNet style:
  the median of the mean normalised cost along each candidate offset minus its value at the chosen
  offset, in units of that curve's robust spread (`avsync.align.robust.offset_confidence`; see
  `CONFIDENCE_RELIABLE`, `CONFIDENCE_UNCERTAIN`).
* ``confidence_level``: ``"reliable"``, ``"uncertain"`` or ``"unreliable"`` by those thresholds.
* ``time_map``: ``[[t_ref, t_video], ...]``, both columns non-decreasing: the input video's
  content at ``t_video`` belongs at reference (music) time ``t_ref``; linear between knots; it
  covers the whole video (first knot at video time 0, last at its last frame).
* ``retimed_fraction``: share of video frames the time map puts more than one frame (at 25 fps)
  away from where the constant offset would put them.
* ``dtw_cost``: mean normalised cost of the cells on the alignment path (lower is a better match;
  0 is an uninformative cell, negative is a match).
* ``frames_without_face``: video frames (at the model's 25 fps) without a usable face.
* ``unreliable_spans``: ``[[t_video_start, t_video_end, reason], ...]``: stretches of the video
  the path bridges instead of following, with the reason (`avsync.align.analysis.REASON_NO_FACE`, `REASON_NO_MATCH`).
* ``warnings``: sentences for the user.
* ``model``: the checkpoint used and its network.
* ``runtime_s``: wall time of the whole command.
* ``output``, ``mode``: the synced video written (``-o``) and how (``warp`` or ``offset``), else null.
* ``output_start_s``, ``output_duration_s``: for a warped output, the music time of its first
  frame (0 unless ``--span video``) and its length; else null.
* ``output_copied``: whether the synced video's picture is the input's own packets, copied without
  re-encoding (``--mode offset`` where the codec allows it; warp mode with ``--span video`` when
  nothing needs re-timing), or encoded; null without ``-o``.
* ``placed_by``: what placed the video in the music: ``"lips"``, ``"camera audio"`` (the video's own
  sound, where the lips could not: then the offset and time map are the sound's constant offset) or
  null (no match: nothing stands out).
* ``camera_audio``: the video's own audio matched against the music (`avsync.pipeline.camera_audio`),
  null with ``--ignore-camera-audio``: ``status`` (``matched``, ``not the music``, ``no audio``, ``too
  short``, ``unreadable``) and, where it was compared, ``offset_s``, ``offset_frames``, ``confidence``
  (robust z; matched at `avsync.align.tuning.AUDIO_MATCH_CONFIDENCE`), ``candidates_s`` (every offset
  the sound fits, best first), ``agrees_with_lips`` (within a frame) and ``lips_minus_audio_frames``
  (positive: the singer is late against the playback; null unless the lips placed the video).
* ``timings_s``: seconds per stage of the command (checks, imports, model, music features,
  video features, camera audio, cost, dtw, write video, plot), for finding where the time goes.
  When the lips were read in a process of their own beside the model work
  (`avsync.pipeline.shot_features`), ``music embedding`` and ``camera audio`` are done meanwhile
  and ``video features (waited)`` is the time spent waiting for the lips after them.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from avsync.io.files import atomic_path

CONFIDENCE_RELIABLE = 3.2
"""Confidence above which the offset is reliable. On the real-face benchmark (5 leave-speakers-out
folds, 204 warped cases, the shipped ensemble) 23 of the 24 cases above 3.2 had their offset within
+-1 frame (above 2.0: 83%); on the synthetic test songs every case above 1.5 was right, and songs
aligned to another song's mix stayed below 2.6."""
CONFIDENCE_UNCERTAIN = 1.0
"""Confidence below which the offset is unreliable; in between it is uncertain. On the real-face
benchmark 72% of the 79 cases below 1.0 had a wrong offset; synthetic songs aligned to another
song's mix had a median of 0.44."""
SHORT_LIST = re.compile(r"\[\s+([^\[\]{}]{0,100}?)\s+\]")
"""An innermost JSON list short enough to print on one line."""


def confidence_level(confidence: float) -> str:
    """``"reliable"``, ``"uncertain"`` or ``"unreliable"`` for a confidence value."""
    if confidence > CONFIDENCE_RELIABLE:
        return "reliable"
    if confidence >= CONFIDENCE_UNCERTAIN:
        return "uncertain"
    return "unreliable"


@dataclass
class SyncReport:
    """What `avsync align` found (the schema is the module docstring)."""

    video: str
    reference: str
    fps: float
    offset_s: float
    offset_frames: int
    confidence: float
    confidence_level: str
    time_map: list[list[float]]
    retimed_fraction: float
    dtw_cost: float
    frames_without_face: int
    unreliable_spans: list[list[float | str]]
    warnings: list[str] = field(default_factory=list)
    model: dict = field(default_factory=dict)
    runtime_s: float = 0.0
    video_duration_s: float = 0.0
    reference_duration_s: float = 0.0
    output: str | None = None
    mode: str | None = None
    vocal: str | None = None
    output_start_s: float | None = None
    output_duration_s: float | None = None
    output_copied: bool | None = None
    placed_by: str | None = None
    camera_audio: dict | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict with the fields in schema order."""
        return asdict(self)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the report as indented JSON, atomically.

        Args:
            path: the ``.json`` file.
        """
        with atomic_path(path) as temporary:
            Path(temporary).write_text(to_json(self.to_dict()) + "\n")


def to_json(data: dict) -> str:
    """Indented JSON with short innermost lists (time-map knots, spans) kept on one line each."""
    text = json.dumps(data, indent=2)
    return SHORT_LIST.sub(lambda match: "[" + re.sub(r"\s*\n\s*", " ", match.group(1)) + "]", text)


def song_span(report: dict, mode: str) -> tuple[float, float]:
    """The stretch of the song a shot covers once synced (seconds of music, clipped to the song).

    Args:
        report: a shot's report (`avsync.pipeline.report.SyncReport` as a dict).
        mode: ``offset``: the shot shifted by its constant offset; ``warp``: re-timed by its time map.
    """
    music = report["reference_duration_s"]
    if mode == "offset":
        start, end = -report["offset_s"], report["video_duration_s"] - report["offset_s"]
    else:
        knots = report["time_map"]
        start, end = knots[0][0], knots[-1][0] + 1.0 / report["fps"]
    return min(max(0.0, start), music), min(max(0.0, end), music)


def describe_offset(offset_s: float, fps: float) -> str:
    """One line: the offset in seconds and frames and what it means.

    Args:
        offset_s: ``t_video - t_ref`` in seconds.
        fps: the video's frame rate.

    Returns:
        e.g. ``offset: +0.28 s (+7 frames): the video is 0.28 s late``.
    """
    frames = round(offset_s * fps)
    head = f"offset: {offset_s:+.2f} s ({frames:+d} frames)"
    if frames == 0:
        return f"{head}: the video is in sync"
    direction = "late" if offset_s > 0 else "early"
    return f"{head}: the video is {abs(offset_s):.2f} s {direction}"


def describe_camera_audio(block: dict, lips_offset_s: float, placed_by: str | None) -> str:
    """One line: what the video's own audio says (`avsync.pipeline.camera_audio.report_block`) and how the lips compare.

    Args:
        block: the report's ``camera_audio``.
        lips_offset_s: the reported offset.
        placed_by: the report's ``placed_by``.
    """
    status = block["status"]
    if status != "matched":
        fit = f" (best fit: confidence {block['confidence']:.1f})" if "confidence" in block else ""
        return f"camera audio: {status}{fit}; " + ("placed by the lips alone" if placed_by else "not placed")
    head = f"camera audio: {block['offset_s']:+.2f} s (confidence {block['confidence']:.1f})"
    others = block["candidates_s"][1:]
    also = f"; the sound also fits at {', '.join(f'{offset:+.2f}' for offset in others)} s" if others else ""
    difference = block["lips_minus_audio_frames"]
    if difference is None:
        return f"{head}: placed by it (the lips could not place the video){also}"
    if block["agrees_with_lips"]:
        return f"{head}: the lips agree ({lips_offset_s:+.2f} s){also}"
    direction = "late" if difference > 0 else "early"
    return (f"{head}; lips {lips_offset_s:+.2f} s: the singer is {abs(difference)} frame{'s' if abs(difference) != 1 else ''} "
            f"{direction} against the playback{also}")  # fmt: skip


def summarise(report: SyncReport) -> str:
    """The short human summary `avsync align` prints.

    Args:
        report: the report.

    Returns:
        Several lines (no trailing newline): offset, confidence, re-timed share, unreliable
        spans, warnings, outputs.
    """
    lines = [
        describe_offset(report.offset_s, report.fps),
        f"confidence: {report.confidence:.2f} ({report.confidence_level}; reliable > {CONFIDENCE_RELIABLE:g}, "
        f"unreliable < {CONFIDENCE_UNCERTAIN:g})",
        f"re-timed: {math.floor(100 * report.retimed_fraction + 0.5):.0f}% of frames moved off the constant offset",
    ]
    if report.frames_without_face:
        lines.append(f"frames without a face: {report.frames_without_face}")
    for start, end, reason in report.unreliable_spans:
        lines.append(f"unreliable: video {start:.2f}-{end:.2f} s ({reason}), bridged")
    if report.camera_audio is not None:
        lines.append(describe_camera_audio(report.camera_audio, report.offset_s, report.placed_by))
    lines += [f"warning: {warning}" for warning in report.warnings]
    if report.output:
        lines.append(f"wrote {report.output}" + (" (video copied, not re-encoded)" if report.output_copied else ""))
    return "\n".join(lines)
