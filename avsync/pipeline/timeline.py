"""An editor's timeline of a whole shoot: every matched shot placed on the song's time line.

The batch command aligns many shots against one song; this module turns the per-shot reports
into an OpenTimelineIO timeline and writes it as ``.otio``, ``.edl``, ``.xml`` or ``.fcpxml``.

Placement (``offset_s = t_video - t_ref``: the shot's content at video time ``t`` belongs at
music time ``t - offset_s``):

* offset mode: the clip plays the original shot. It lands at ``record_start_s = max(0,
  -offset_s)`` and starts ``source_start_s = max(0, offset_s)`` seconds into the shot; it lasts
  until the shot or the song ends, whichever comes first.
* warp mode: the clip plays the re-timed MP4, which already runs on the music's time line from
  music time ``output_start_s`` for ``output_duration_s``: it lands there and is used whole.

Timeline: it starts at 01:00:00:00 (``start``: any timecode; drop-frame at 29.97 and 59.94); the
music on an audio track from that start; each shot on a video track at its record start, gaps
between clips; a shot that overlaps one already placed goes to the first video track where it fits
(greedy, in order of record start), opening a new track when none does. Takes that matched nothing
go on a disabled video track of their own, ``No match``, after the song's end (out of the cut,
where an editor finds them). Times are quantised by rounding to the nearest frame (halves up): the
record start and end at the timeline rate, the source start at the media's own rate, so each clip
reproduces its report's times to half a frame. A clip's source times are on the media's own
timecode (a camera's start timecode, `avsync.io.timecode`, ``media_start_s``). Each clip has a
marker at its first frame named ``"confidence 3.41 (reliable)"``, coloured by level (GREEN
reliable, YELLOW uncertain, RED unreliable), whose comment joins the report's warnings that apply
to the clip (`marker_warnings`); the clip's metadata ``["avsync"]`` holds the same numbers.
Unplaced shots are listed in ``timeline.metadata["avsync"]["unplaced"]``. Media references are
``file://`` URLs of absolute paths, or with ``relative_paths`` URLs relative to the timeline's folder.

What each format keeps (measured by ``tests/test_timeline.py`` with the adapters read back at
23.976, 24, 25, 29.97, 30, 50 and 59.94 fps):

* ``.otio``: everything (tracks, exact rates, start timecode, markers with colour and comment, metadata).
* ``.xml`` (FCP 7 XML, Premiere / Resolve / Kdenlive): all tracks, the start timecode, record and
  source times to the frame, marker names (no colour, no comment), no timeline metadata, and no
  disabled tracks (the ``No match`` track is an ordinary one, after the song).
* ``.fcpxml`` (FCP X, via ``otio-fcpx-xml-adapter``, finished by `_fcpx_finish`): the format with
  the picture's width and height, the sequence's ``tcStart``/``tcFormat``, every time a whole
  number of frames; the first video track is the primary storyline (padded to the timeline's
  end), further tracks and the music are connected clips on lanes. Two adapter writer bugs are
  worked around (exact NTSC frame durations; exact connected-clip offsets). The adapter's *reader*
  ignores ``tcStart``, truncates float products (a frame short at times) and at NTSC rates takes
  int(rate) (29 for frameDuration 1001/30000 s) as the rate: the tests check the XML's own times
  there. Markers: names kept, GREEN/RED become completed/to-do markers.
* ``.edl`` (CMX 3600, `avsync.pipeline.edl`): one video track per EDL (``NAME.edl``,
  ``NAME.V2.edl``, ...), each with the music as an audio event; title, FCM line, events in record
  order from a black lead-in at the start, unique 8-character reels with ``* REEL ... IS FILE``,
  ``* FROM CLIP NAME`` and ``* FROM FILE`` comments, markers as ``* LOC`` at record time (the
  adapter's reader skips drop-frame LOC lines). No timeline metadata, no ``No match`` track.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import quote, unquote, urlparse
from xml.etree import ElementTree as ET

import opentimelineio as otio

from avsync.errors import AvsyncError
from avsync.io.files import atomic_path

TIMELINE_SUFFIXES = (".otio", ".edl", ".xml", ".fcpxml")
"""Timeline file suffixes `write_timeline` accepts."""

_ADAPTERS = {".otio": "otio_json", ".edl": "cmx_3600", ".xml": "fcp_xml", ".fcpxml": "fcpx_xml"}
_LEVEL_COLOURS = {
    "reliable": otio.schema.MarkerColor.GREEN,
    "uncertain": otio.schema.MarkerColor.YELLOW,
    "unreliable": otio.schema.MarkerColor.RED,
}


@dataclass(frozen=True)
class ShotPlacement:
    """One matched shot as a clip of the timeline (all times in seconds).

    Args:
        name: clip name (the shot's file name).
        media: the media file the clip plays (the shot, or its re-timed MP4 in warp mode).
        media_fps: frame rate of `media`.
        media_duration_s: length of `media`.
        source_start_s: first second of `media` used.
        record_start_s: where that lands on the song's time line (music time from 0).
        duration_s: how long the clip plays.
        confidence: the report's confidence.
        confidence_level: "reliable", "uncertain" or "unreliable".
        warnings: the report's warnings that apply to the clip (`marker_warnings`).
        media_start_s: the timecode of `media`'s first frame, in seconds (the camera's start
            timecode, `avsync.io.timecode.start_timecode`; 0 without one).
        camera: the original take placed at its offset (`placement_from_report` in offset mode)
            when it has its own audio: that sound goes on the camera-audio track under the clip.
    """

    name: str
    media: str
    media_fps: float
    media_duration_s: float
    source_start_s: float
    record_start_s: float
    duration_s: float
    confidence: float
    confidence_level: str
    warnings: tuple[str, ...] = ()
    media_start_s: float = 0.0
    camera: ShotPlacement | None = None


@dataclass(frozen=True)
class UnplacedShot:
    """A shot that was not placed on the timeline.

    Args:
        name: the shot's file name.
        media: the shot's path.
        reason: why it was not placed, e.g. "no match (best score 0.42)" or an error.
        score: the best score when there was one.
        media_fps: the shot's frame rate when it could be read (a "no match" take): it then goes
            on the timeline's own ``No match`` track; None (a failed shot): metadata only.
        media_duration_s: its length (with `media_fps`).
        media_start_s: the timecode of its first frame in seconds (0 without one).
    """

    name: str
    media: str
    reason: str
    score: float | None = None
    media_fps: float | None = None
    media_duration_s: float | None = None
    media_start_s: float = 0.0


DEFAULT_START_TIMECODE = "01:00:00:00"
"""Where an editor's timeline starts unless told otherwise (``--timeline-start``)."""
HELD_FRAME_WARNING = "the first/last frame is held outside it"
"""The end of a report's warning about held frames in a single ``--span music`` video: no clip of a
timeline holds a frame (offset mode plays the shot, warp mode the part of the music it covers)."""
OFFSET_ADVICE = "; --mode offset applies only the constant offset"
"""Advice a report's low-confidence warning ends with: moot on a timeline of ``--mode offset``."""


def marker_warnings(warnings: Sequence[str], mode: str) -> tuple[str, ...]:
    """The report's warnings that apply to the shot's clip on a timeline of `mode`.

    Args:
        warnings: the report's warnings.
        mode: "offset" or "warp".
    """
    kept = []
    for warning in warnings:
        if warning.endswith(HELD_FRAME_WARNING):
            continue
        kept.append(warning.replace(OFFSET_ADVICE, "") if mode == "offset" else warning)
    return tuple(kept)


def start_frames(text: str, fps: float) -> int:
    """A start timecode (``HH:MM:SS:FF``; ``;`` or ``:`` before the frames) in frames of the timeline's rate.

    At 29.97 and 59.94 fps the timecode is read as drop-frame (what the timeline writes there).

    Args:
        text: the timecode, e.g. ``01:00:00:00``.
        fps: the timeline's frame rate.

    Raises:
        AvsyncError: not a timecode at that rate.
    """
    from avsync.io.timecode import TIMECODE_PATTERN
    from avsync.pipeline.edl import is_drop_frame

    rate = _exact_rate(fps)
    match = TIMECODE_PATTERN.match(text.strip())
    nominal = round(rate)
    if not match or int(match.group(2)) > 59 or int(match.group(3)) > 59 or int(match.group(5)) >= nominal:
        raise AvsyncError(f"--timeline-start must be a timecode HH:MM:SS:FF with frames below {nominal}, got {text!r}")
    hours, minutes, seconds, _, frames = match.groups()
    separator = ";" if is_drop_frame(rate) else ":"
    return round(otio.opentime.from_timecode(f"{int(hours):02d}:{minutes}:{seconds}{separator}{frames}", rate).value)


def media_start_seconds(timecode: str | None, fps: float) -> float:
    """A media file's start timecode (`avsync.io.timecode.start_timecode`) in seconds at its frame rate; 0 for None."""
    if timecode is None:
        return 0.0
    rate = _exact_rate(fps)
    try:
        return otio.opentime.from_timecode(timecode, rate).to_seconds()
    except ValueError:  # a drop-frame timecode at a rate without drop-frame: count it as written
        return otio.opentime.from_timecode(timecode.replace(";", ":"), rate).to_seconds()


def placement_from_report(report: dict, mode: str, media_start_s: float = 0.0) -> ShotPlacement:
    """Place one shot from its `avsync align` report (see the module docstring for the rules).

    Args:
        report: the shot's report dict (`video`, `fps`, `offset_s`, `confidence`,
            `confidence_level`, `warnings`, `video_duration_s`, `reference_duration_s`; in warp
            mode also `output`, `output_start_s`, `output_duration_s`).
        mode: "offset" (the clip plays the original shot) or "warp" (its re-timed MP4).
        media_start_s: the start timecode of the media the clip plays, in seconds (`media_start_seconds`).

    Returns:
        The placement.

    Raises:
        ValueError: unknown mode, a warp report without its output, or a shot that does not
            overlap the song.
    """
    name = Path(report["video"]).name
    if mode == "offset":
        offset = float(report["offset_s"])
        media, media_duration = str(report["video"]), float(report["video_duration_s"])
        record_start = max(0.0, -offset)
        source_start = record_start + offset
        duration = min(media_duration - source_start, float(report["reference_duration_s"]) - record_start)
    elif mode == "warp":
        if not report.get("output") or report.get("output_start_s") is None:
            raise ValueError(f"{name}: the report has no re-timed output to place")
        media = str(report["output"])
        media_duration = duration = float(report["output_duration_s"])
        record_start, source_start = float(report["output_start_s"]), 0.0
    else:
        raise ValueError(f"unknown mode {mode!r} (expected 'offset' or 'warp')")
    if duration <= 0:
        raise ValueError(f"{name}: the shot does not overlap the song (offset {report['offset_s']} s)")
    return ShotPlacement(
        name=name,
        media=media,
        media_fps=float(report["fps"]),
        media_duration_s=media_duration,
        source_start_s=source_start,
        record_start_s=record_start,
        duration_s=duration,
        confidence=float(report["confidence"]),
        confidence_level=str(report["confidence_level"]),
        warnings=marker_warnings(report.get("warnings") or (), mode),
        media_start_s=media_start_s,
    )


def build_timeline(
    music: str,
    music_duration_s: float,
    placements: Sequence[ShotPlacement],
    unplaced: Sequence[UnplacedShot],
    fps: float,
    name: str,
    start: int | None = None,
    frame_size: tuple[int, int] | None = None,
) -> otio.schema.Timeline:
    """Lay the music and the placed shots out on an OpenTimelineIO timeline.

    Args:
        music: the song's path.
        music_duration_s: its length.
        placements: the matched shots.
        unplaced: shots left off the cut (listed in its metadata); those that could be read
            (`UnplacedShot.media_fps`) also go on a track of their own, ``No match``, after the song's end.
        fps: timeline frame rate (23.976, 29.97 and friends mean their exact NTSC rates).
        name: timeline name.
        start: the timeline's start timecode in frames of its rate (`start_frames`); None: 01:00:00:00.
        frame_size: the picture's (width, height), for the formats that state it (FCP X); None: unknown.

    Returns:
        The timeline: video tracks "V1", "V2", ..., the audio track "Music", the audio tracks
        "Camera audio V1", ... (when any shot has its own sound, `ShotPlacement.camera`: under
        each clip of video track Vk, its take's own audio at the same offset, for checking sync by
        ear), then (when any) the disabled video track "No match".
    """
    from avsync.pipeline.edl import CAMERA_AUDIO_TRACK, NO_MATCH_TRACK

    rate = _exact_rate(fps)
    start = start_frames(DEFAULT_START_TIMECODE, rate) if start is None else start
    timeline = otio.schema.Timeline(name=name, global_start_time=otio.opentime.RationalTime(start, rate))
    timeline.metadata["avsync"] = {
        "music": str(music),
        "fps": rate,
        "start_frames": start,
        "frame_size": list(frame_size) if frame_size else None,
        "unplaced": [
            {"name": shot.name, "media": str(shot.media), "reason": shot.reason, "score": shot.score}
            for shot in unplaced
        ],
    }
    tracks: list[tuple[otio.schema.Track, int]] = []  # (track, its end in timeline frames)
    heard: dict[int, tuple[otio.schema.Track, int]] = {}  # video track index -> its camera-audio track and end
    ordered = sorted(placements, key=lambda shot: (_frames(shot.record_start_s, rate), shot.name))
    for shot in ordered:
        begin = _frames(shot.record_start_s, rate)
        end = max(begin + 1, _frames(shot.record_start_s + shot.duration_s, rate))
        index = next((i for i, (_, track_end) in enumerate(tracks) if track_end <= begin), len(tracks))
        if index == len(tracks):
            tracks.append((otio.schema.Track(name=f"V{index + 1}", kind=otio.schema.TrackKind.Video), 0))
        track, track_end = tracks[index]
        _append_clip(track, track_end, begin, _shot_clip(shot, end - begin, rate), rate)
        tracks[index] = (track, end)
        if shot.camera is not None:
            sound, sound_end = heard.get(index) or (otio.schema.Track(name=f"{CAMERA_AUDIO_TRACK} V{index + 1}",
                                                                      kind=otio.schema.TrackKind.Audio), 0)  # fmt: skip
            heard[index] = (sound, _append_camera_audio(sound, sound_end, shot.camera, (begin, end), rate))
    for track, _ in tracks:
        timeline.tracks.append(track)

    music_frames = max(1, _frames(music_duration_s, rate))
    audio = otio.schema.Track(name="Music", kind=otio.schema.TrackKind.Audio)
    audio.append(
        otio.schema.Clip(
            name=Path(music).name,
            media_reference=otio.schema.ExternalReference(
                target_url=_file_url(music), available_range=_range(0, music_frames, rate)
            ),
            source_range=_range(0, music_frames, rate),
        )
    )
    timeline.tracks.append(audio)
    for index in sorted(heard):
        timeline.tracks.append(heard[index][0])

    readable = [shot for shot in unplaced if shot.media_fps and shot.media_duration_s]
    if readable:  # where an editor finds them: after the song's end, out of the cut, the track switched off
        no_match = otio.schema.Track(name=NO_MATCH_TRACK, kind=otio.schema.TrackKind.Video)
        no_match.enabled = False
        no_match.append(otio.schema.Gap(source_range=_range(0, music_frames, rate)))
        for shot in readable:
            media_rate = _exact_rate(shot.media_fps)
            first = _frames(shot.media_start_s, media_rate)
            frames = max(1, _frames(shot.media_duration_s, rate))
            clip = otio.schema.Clip(
                name=Path(shot.media).name,
                media_reference=_media_reference(shot.media, media_rate, first, shot.media_duration_s),
                source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(first, media_rate),
                                                     otio.opentime.RationalTime(frames, rate)),  # fmt: skip
                metadata={"avsync": {"status": "no match", "reason": shot.reason, "confidence": shot.score}},
            )
            no_match.append(clip)
        timeline.tracks.append(no_match)
    return timeline


def check_timeline_path(path: str | Path) -> None:
    """Refuse a timeline path whose suffix names no format `write_timeline` knows.

    Args:
        path: the timeline file to write.

    Raises:
        AvsyncError: the suffix is not one of `TIMELINE_SUFFIXES`.
    """
    if Path(path).suffix.lower() not in TIMELINE_SUFFIXES:
        raise AvsyncError(
            f"unknown timeline format {Path(path).suffix or '(no suffix)'!r}: "
            f"use one of {', '.join(TIMELINE_SUFFIXES)}",
            path,
        )


def edl_track_files(path: str | Path) -> list[Path]:
    """The existing per-track siblings ``NAME.V<n>.edl`` (n >= 2) of an EDL path, by track number.

    An EDL holds one video track, so `write_timeline` writes track n of a stacked timeline to
    ``NAME.V<n>.edl``; those files belong to the timeline ``NAME.edl`` and are replaced with it.

    Args:
        path: the timeline file (any suffix: only an ``.edl`` has siblings).
    """
    target = Path(path)
    if target.suffix.lower() != ".edl" or not target.parent.is_dir():
        return []
    pattern = re.compile(re.escape(target.stem) + r"\.V(\d+)" + re.escape(target.suffix) + "$")
    numbered = [(int(match.group(1)), sibling) for sibling in target.parent.iterdir()
                if (match := pattern.match(sibling.name)) and int(match.group(1)) >= 2]  # fmt: skip
    return [sibling for _, sibling in sorted(numbered)]


def write_timeline(timeline: otio.schema.Timeline, path: str | Path, relative_paths: bool = False) -> list[Path]:
    """Write `timeline` in the format its suffix names; nothing half-written is left on failure.

    Args:
        timeline: a timeline from `build_timeline`.
        path: ``.otio``, ``.edl`` (CMX 3600), ``.xml`` (FCP 7 XML) or ``.fcpxml`` (FCP X XML).
        relative_paths: name the media by paths relative to `path`'s folder (relative URLs), so
            the timeline and its media can move together; else by absolute ``file://`` URLs.

    Returns:
        The files written: `path`, then for an EDL with several video tracks the siblings
        ``NAME.V2.edl``, ``NAME.V3.edl``, ... (one video track per EDL). Siblings of an earlier
        timeline with more tracks (`edl_track_files`) are removed: they would describe another cut.

    Raises:
        AvsyncError: unknown suffix, or the adapter cannot express the timeline.
    """
    check_timeline_path(path)
    target = Path(path)
    suffix = target.suffix.lower()
    if relative_paths:
        timeline = _relative_references(timeline, target.absolute().parent)
    try:
        if suffix == ".edl":
            texts = _edl_texts(timeline, target)
        elif suffix == ".fcpxml":
            texts = {target: _fcpx_text(timeline)}
        else:
            texts = {target: otio.adapters.write_to_string(timeline, _ADAPTERS[suffix])}
    except Exception as exc:  # the adapters raise all kinds; report them as one line
        raise AvsyncError(f"cannot write the timeline as {suffix} ({type(exc).__name__}: {exc})", path) from exc
    stale = [sibling for sibling in edl_track_files(target) if sibling not in texts]
    with ExitStack() as stack:
        for destination, text in texts.items():
            temporary = stack.enter_context(atomic_path(destination))
            temporary.write_text(text, encoding="utf-8")
    for sibling in stale:
        sibling.unlink(missing_ok=True)
    return list(texts)


def _append_clip(track: otio.schema.Track, track_end: int, begin: int, clip: otio.schema.Clip, rate: float) -> None:
    """Append `clip` to `track` at timeline frame `begin` (after a gap from the track's end, if any)."""
    if begin > track_end:
        track.append(otio.schema.Gap(source_range=_range(0, begin - track_end, rate)))
    track.append(clip)


def _append_camera_audio(track: otio.schema.Track, track_end: int, take: ShotPlacement, picture: tuple[int, int],
                         rate: float) -> int:  # fmt: skip
    """Put a take's own sound on its camera-audio track at its offset, kept under its `picture`
    (timeline frames [begin, end) of the clip it belongs to); returns the track's new end."""
    begin = _frames(take.record_start_s, rate)
    end = min(picture[1], max(begin + 1, _frames(take.record_start_s + take.duration_s, rate)))
    trimmed = max(0, track_end - begin, picture[0] - begin)  # a re-timed picture may start later than the take's offset
    if end - begin - trimmed <= 0:
        return track_end
    media_rate = _exact_rate(take.media_fps)
    first = _frames(take.media_start_s, media_rate)
    source_start = otio.opentime.RationalTime(first + _frames(take.source_start_s + trimmed / rate, media_rate), media_rate)
    clip = otio.schema.Clip(
        name=take.name,
        media_reference=_media_reference(take.media, media_rate, first, take.media_duration_s),
        source_range=otio.opentime.TimeRange(source_start, otio.opentime.RationalTime(end - begin - trimmed, rate)),
        metadata={"avsync": {"camera_audio": True}},
    )
    _append_clip(track, track_end, begin + trimmed, clip, rate)
    return end


def _media_reference(media: str, media_rate: float, first: int, duration_s: float) -> otio.schema.ExternalReference:
    """A media file as a timeline references it: its URL and its frames from `first` (its start timecode) at `media_rate`."""
    return otio.schema.ExternalReference(target_url=_file_url(media),
                                         available_range=_range(first, max(1, _frames(duration_s, media_rate)), media_rate))  # fmt: skip


def _shot_clip(shot: ShotPlacement, frames: int, rate: float) -> otio.schema.Clip:
    """A clip playing `shot` for `frames` timeline frames, with its confidence marker."""
    media_rate = _exact_rate(shot.media_fps)
    first = _frames(shot.media_start_s, media_rate)
    source_start = otio.opentime.RationalTime(first + _frames(shot.source_start_s, media_rate), media_rate)
    level = shot.confidence_level
    marker = otio.schema.Marker(
        name=f"confidence {shot.confidence:.2f} ({level})",
        marked_range=otio.opentime.TimeRange(source_start, otio.opentime.RationalTime(0, media_rate)),
        color=_LEVEL_COLOURS.get(level, otio.schema.MarkerColor.RED),
        comment="; ".join(shot.warnings),
        metadata={"avsync": {"confidence": shot.confidence, "level": level, "warnings": list(shot.warnings)}},
    )
    clip = otio.schema.Clip(
        name=shot.name,
        media_reference=_media_reference(shot.media, media_rate, first, shot.media_duration_s),
        source_range=otio.opentime.TimeRange(source_start, otio.opentime.RationalTime(frames, rate)),
        metadata={
            "avsync": {
                "confidence": shot.confidence,
                "confidence_level": level,
                "warnings": list(shot.warnings),
                "media_fps": shot.media_fps,
            }
        },
    )
    clip.markers.append(marker)
    return clip


def _edl_texts(timeline: otio.schema.Timeline, target: Path) -> dict[Path, str]:
    """CMX 3600 text per video track (`avsync.pipeline.edl`), keyed by file: ``NAME.edl``, ``NAME.V2.edl``, ..."""
    from avsync.pipeline.edl import edl_texts

    rate = _timeline_rate(timeline)
    texts = edl_texts(timeline, rate, _timeline_start(timeline, rate))
    return {target if number == 1 else target.with_name(f"{target.stem}.V{number}{target.suffix}"): text
            for number, text in enumerate(texts, start=1)}  # fmt: skip


def _relative_references(timeline: otio.schema.Timeline, folder: Path) -> otio.schema.Timeline:
    """A copy whose ``file://`` media references are URLs relative to `folder`."""
    timeline = copy.deepcopy(timeline)
    for clip in timeline.find_clips():
        reference = clip.media_reference
        if isinstance(reference, otio.schema.ExternalReference) and reference.target_url.startswith("file:"):
            absolute = unquote(urlparse(reference.target_url).path)
            reference.target_url = quote(os.path.relpath(absolute, folder))
    return timeline


def _fcpx_text(timeline: otio.schema.Timeline) -> str:
    """FCP X XML by the adapter, with exact NTSC frame durations and connected-clip offsets."""
    rate = _timeline_rate(timeline)
    timeline = _sources_on_timeline_grid(timeline, rate)
    video = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    if video:  # FCP X connects the other tracks to the first: it must last the whole timeline
        missing = timeline.tracks.duration() - video[0].duration()
        if missing.value > 0:
            video[0].append(otio.schema.Gap(source_range=otio.opentime.TimeRange(duration=missing)))

    class Writer(otio.adapters.from_name("fcpx_xml").module().FcpxOtio):
        @staticmethod
        def _framerate_to_frame_duration(framerate: float) -> str:
            # the adapter knows 23.98 and 29.97 but not the exact 24000/1001 and 30000/1001
            duration = 1 / Fraction(framerate).limit_denominator(1001)
            return f"{duration.numerator}/{duration.denominator}s"

        def _offset_based_on_parent(self, child, parent, default_format_id):
            # the adapter computes this in whole frames of int(rate), off by frames at NTSC rates
            seconds = _fcpx_seconds(child.get("offset")) - _fcpx_seconds(parent.get("offset"))
            seconds += _fcpx_seconds(parent.get("start"))
            return otio.opentime.RationalTime(seconds.numerator, seconds.denominator)

    return _fcpx_finish(Writer(timeline).to_xml(), timeline, rate)


def _fcpx_finish(text: str, timeline: otio.schema.Timeline, rate: float) -> str:
    """The adapter's FCP X XML made whole by the format's rules (FCPXML 1.8 DTD):

    * the ``format`` states the picture's ``width`` and ``height`` (the adapter writes an empty ``name``
      and no size, which FCP X needs to make the project);
    * the ``sequence`` starts at the timeline's start timecode (``tcStart``, ``tcFormat`` DF/NDF);
      the spine's own items lie on that time line (their ``offset``s move with it);
    * every time is a whole number of frame durations: positions and trims rounded to the nearest
      frame, assets' durations down to a whole frame (the adapter writes media lengths as they are).
    """
    from avsync.pipeline.edl import is_drop_frame

    header, _, body = text.partition("<fcpxml")
    root = ET.fromstring("<fcpxml" + body)
    frame = 1 / Fraction(rate).limit_denominator(1001)
    start = _timeline_start(timeline, rate) * frame
    size = timeline.metadata.get("avsync", {}).get("frame_size")
    for element in root.iter("format"):
        if not element.get("name"):
            element.attrib.pop("name", None)
        if size:
            element.set("width", str(size[0]))
            element.set("height", str(size[1]))
    for element in root.iter():
        for attribute in ("offset", "start", "duration"):
            if element.get(attribute) is not None:
                value = _fcpx_seconds(element.get(attribute)) / frame
                whole = math.floor(value) if element.tag == "asset" and attribute == "duration" else math.floor(value + Fraction(1, 2))
                element.set(attribute, _fcpx_time(whole * frame))
    for sequence in root.iter("sequence"):
        sequence.set("tcStart", _fcpx_time(start))
        sequence.set("tcFormat", "DF" if is_drop_frame(rate) else "NDF")
        for spine in sequence.findall("spine"):
            for item in spine:
                item.set("offset", _fcpx_time(_fcpx_seconds(item.get("offset")) + start))
    ET.indent(root, space="    ")
    return header + ET.tostring(root, encoding="unicode") + "\n"


def _fcpx_time(seconds: Fraction) -> str:
    """An FCP X time attribute: ``0s``, ``3600s`` or ``1001/30000s``."""
    return f"{seconds.numerator}s" if seconds.denominator == 1 else f"{seconds.numerator}/{seconds.denominator}s"


def _fcpx_seconds(value: str | None) -> Fraction:
    """An FCP X time attribute ("0s", "63/25s", "40s") in seconds."""
    return Fraction(value.rstrip("s")) if value else Fraction(0)


def _sources_on_timeline_grid(timeline: otio.schema.Timeline, rate: float) -> otio.schema.Timeline:
    """A copy whose clips' source ranges (and markers) are in whole timeline frames."""
    timeline = copy.deepcopy(timeline)
    for clip in timeline.find_clips():
        source = clip.source_range
        start = _frames(source.start_time.to_seconds(), rate)
        clip.source_range = _range(start, round(source.duration.rescaled_to(rate).value), rate)
        for marker in clip.markers:
            marker.marked_range = _range(start, 0, rate)
    return timeline


def _timeline_rate(timeline: otio.schema.Timeline) -> float:
    return timeline.metadata.get("avsync", {}).get("fps") or timeline.duration().rate


def _exact_rate(fps: float) -> float:
    """`fps`, snapped to the exact NTSC rate (24000/1001, ...) or integer rate it approximates."""
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.005:
            return base * 1000 / 1001
    return float(round(fps)) if abs(fps - round(fps)) < 1e-3 else float(fps)


def _timeline_start(timeline: otio.schema.Timeline, rate: float) -> int:
    """The timeline's start timecode in frames of `rate` (`build_timeline`'s ``start``)."""
    start = timeline.global_start_time
    return 0 if start is None else round(start.rescaled_to(rate).value)


def _frames(seconds: float, rate: float) -> int:
    """`seconds` in frames of `rate`, rounded to the nearest frame (halves up)."""
    return math.floor(seconds * rate + 0.5 + 1e-9)


def _range(start: int, frames: int, rate: float) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(
        otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(frames, rate)
    )


def _file_url(path: str | Path) -> str:
    return Path(path).absolute().as_uri()
