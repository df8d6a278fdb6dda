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

Timeline: the music on an audio track from 0; each shot on a video track at its record start,
gaps between clips; a shot that overlaps one already placed goes to the first video track where
it fits (greedy, in order of record start), opening a new track when none does. Times are
quantised by rounding to the nearest frame (halves up): the record start and end at the timeline
rate, the source start at the media's own rate, so each clip reproduces its report's times to
half a frame. A clip's source range starts at a frame of the media's rate and lasts a whole
number of timeline frames. Each clip has a marker at its first frame named
``"confidence 3.41 (reliable)"``, coloured by level (GREEN reliable, YELLOW uncertain, RED
unreliable), whose comment joins the report's warnings; the clip's metadata ``["avsync"]``
holds the same numbers. Unplaced shots are listed in ``timeline.metadata["avsync"]["unplaced"]``.
Media references are ``file://`` URLs of absolute paths (what FCP 7 XML, FCP X XML and OTIO
expect); the EDL gets plain absolute paths.

What each format keeps (measured by ``tests/test_timeline.py`` with the adapters read back):

* ``.otio``: everything (tracks, exact rates, markers with colour and comment, metadata).
* ``.xml`` (FCP 7 XML, Premiere / Resolve / Kdenlive): all tracks, the music track, record and
  source times to the frame at 23.976/25/29.97/30, marker names (no colour, no comment), no
  timeline metadata (the unplaced shots are not listed).
* ``.fcpxml`` (FCP X, via ``otio-fcpx-xml-adapter``): the first video track is the primary
  storyline (padded with a gap to the song's end), further tracks and the music are clips
  connected to it on lanes 1, 2, ... and -1; times are exact rational seconds on the timeline's
  frame grid (source starts are rounded to timeline frames, as the adapter gives every asset the
  timeline's format). Two adapter bugs are worked around in a subclass of its writer: exact
  NTSC frame durations (it only knows the keys 23.98/29.97) and exact connected-clip offsets (it
  rounds them to whole frames of ``int(rate)``, frames off at 23.976/29.97). Marker names are
  kept, GREEN/RED become completed/to-do markers, YELLOW a plain marker (reads back PURPLE); no
  timeline metadata. The adapter's *reader* works in whole frames of ``int(rate)`` (23, 29), so
  at NTSC rates a read-back file is off by up to seconds late in the song: the tests check the
  XML's own times there, and the reader at 25/30 fps. Its reader also gives a clip the markers
  of the clips connected to it.
* ``.edl`` (CMX 3600, via ``otio-cmx3600-adapter``): one video track per EDL, by the format's
  rules and the adapter's (it refuses several). The first video track goes to the named file,
  video track ``n`` >= 2 to a sibling ``NAME.V<n>.edl`` (as NLEs export one EDL per track);
  each file also carries the music as an audio ("A") event. Source timecodes are in timeline
  frames (CMX 3600 has one rate), so source starts are rounded to the timeline rate. 29.97
  timelines get ``FCM: DROP FRAME`` and drop-frame timecode (``;``). Reels are the first 8
  letters and digits of the media's file name (the clip name and full path are in ``* FROM``
  comments). Markers become ``* LOC`` comments (upper-cased name, colour, no warnings); the
  adapter's reader skips drop-frame LOC lines, so at 29.97 they only survive as text. No
  timeline metadata (the unplaced shots are not listed).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote, urlparse

import opentimelineio as otio

from avsync.errors import AvsyncError
from avsync.io.media import atomic_path

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
        warnings: the report's warnings.
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


@dataclass(frozen=True)
class UnplacedShot:
    """A shot that was not placed on the timeline.

    Args:
        name: the shot's file name.
        media: the shot's path.
        reason: why it was not placed, e.g. "no match (best score 0.42)" or an error.
        score: the best score when there was one.
    """

    name: str
    media: str
    reason: str
    score: float | None = None


def placement_from_report(report: dict, mode: str) -> ShotPlacement:
    """Place one shot from its `avsync align` report (see the module docstring for the rules).

    Args:
        report: the shot's report dict (`video`, `fps`, `offset_s`, `confidence`,
            `confidence_level`, `warnings`, `video_duration_s`, `reference_duration_s`; in warp
            mode also `output`, `output_start_s`, `output_duration_s`).
        mode: "offset" (the clip plays the original shot) or "warp" (its re-timed MP4).

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
        warnings=tuple(report.get("warnings") or ()),
    )


def build_timeline(
    music: str,
    music_duration_s: float,
    placements: Sequence[ShotPlacement],
    unplaced: Sequence[UnplacedShot],
    fps: float,
    name: str,
) -> otio.schema.Timeline:
    """Lay the music and the placed shots out on an OpenTimelineIO timeline.

    Args:
        music: the song's path.
        music_duration_s: its length.
        placements: the matched shots.
        unplaced: shots left off the timeline (listed in its metadata).
        fps: timeline frame rate (23.976, 29.97 and friends mean their exact NTSC rates).
        name: timeline name.

    Returns:
        The timeline: video tracks "V1", "V2", ... then the audio track "Music".
    """
    rate = _exact_rate(fps)
    timeline = otio.schema.Timeline(name=name)
    timeline.metadata["avsync"] = {
        "music": str(music),
        "fps": rate,
        "unplaced": [
            {"name": shot.name, "media": str(shot.media), "reason": shot.reason, "score": shot.score}
            for shot in unplaced
        ],
    }
    tracks: list[tuple[otio.schema.Track, int]] = []  # (track, its end in timeline frames)
    ordered = sorted(placements, key=lambda shot: (_frames(shot.record_start_s, rate), shot.name))
    for shot in ordered:
        start = _frames(shot.record_start_s, rate)
        end = max(start + 1, _frames(shot.record_start_s + shot.duration_s, rate))
        index = next((i for i, (_, track_end) in enumerate(tracks) if track_end <= start), len(tracks))
        if index == len(tracks):
            tracks.append((otio.schema.Track(name=f"V{index + 1}", kind=otio.schema.TrackKind.Video), 0))
        track, track_end = tracks[index]
        if start > track_end:
            track.append(otio.schema.Gap(source_range=_range(0, start - track_end, rate)))
        track.append(_shot_clip(shot, end - start, rate))
        tracks[index] = (track, end)
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


def write_timeline(timeline: otio.schema.Timeline, path: str | Path) -> list[Path]:
    """Write `timeline` in the format its suffix names; nothing half-written is left on failure.

    Args:
        timeline: a timeline from `build_timeline`.
        path: ``.otio``, ``.edl`` (CMX 3600), ``.xml`` (FCP 7 XML) or ``.fcpxml`` (FCP X XML).

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


def _shot_clip(shot: ShotPlacement, frames: int, rate: float) -> otio.schema.Clip:
    """A clip playing `shot` for `frames` timeline frames, with its confidence marker."""
    media_rate = _exact_rate(shot.media_fps)
    source_start = otio.opentime.RationalTime(_frames(shot.source_start_s, media_rate), media_rate)
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
        media_reference=otio.schema.ExternalReference(
            target_url=_file_url(shot.media),
            available_range=_range(0, max(1, _frames(shot.media_duration_s, media_rate)), media_rate),
        ),
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
    """CMX 3600 text per video track (plus the music as audio events), keyed by file."""
    rate = _timeline_rate(timeline)
    timeline = _sources_on_timeline_grid(timeline, rate)
    for clip in timeline.find_clips():
        reference = clip.media_reference
        if isinstance(reference, otio.schema.ExternalReference) and reference.target_url.startswith("file:"):
            reference.target_url = unquote(urlparse(reference.target_url).path)
            reel = re.sub(r"[^A-Za-z0-9]", "", Path(reference.target_url).stem)[:8] or "AX"
            clip.metadata.setdefault("cmx_3600", {})["reel"] = reel
    video = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    audio = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
    audio_text = _edl_events(audio[0], rate) if audio else ""
    texts = {}
    for number, track in enumerate(video or [otio.schema.Track()], start=1):
        events = _edl_events(track, rate) if len(track) else ""
        count = len(re.findall(r"^\d{3}\s", events, flags=re.MULTILINE))
        renumbered = re.sub(
            r"^(\d{3})(?=\s)", lambda m: f"{int(m.group(1)) + count:03d}", audio_text, flags=re.MULTILINE
        )
        title = timeline.name if number == 1 else f"{timeline.name} V{number}"
        header = f"TITLE: {title}\n"
        if _is_drop_frame(rate):
            header += "FCM: DROP FRAME\n"
        path = target if number == 1 else target.with_name(f"{target.stem}.V{number}{target.suffix}")
        texts[path] = header + "\n" + events + renumbered
    return texts


def _edl_events(track: otio.schema.Track, rate: float) -> str:
    """The adapter's event lines for one track."""
    single = otio.schema.Timeline()
    single.tracks.append(copy.deepcopy(track))  # the adapter writes the first track ...
    if track.kind != otio.schema.TrackKind.Video:  # ... and wants exactly one video track
        single.tracks.append(otio.schema.Track(kind=otio.schema.TrackKind.Video))
    text = otio.adapters.write_to_string(single, "cmx_3600", rate=rate)
    return "".join(line + "\n" for line in text.splitlines() if line.strip())


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

    return Writer(timeline).to_xml()


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


def _is_drop_frame(rate: float) -> bool:
    return any(abs(rate - base * 1000 / 1001) < 1e-6 for base in (30, 60))


def _frames(seconds: float, rate: float) -> int:
    """`seconds` in frames of `rate`, rounded to the nearest frame (halves up)."""
    return math.floor(seconds * rate + 0.5 + 1e-9)


def _range(start: int, frames: int, rate: float) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(
        otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(frames, rate)
    )


def _file_url(path: str | Path) -> str:
    return Path(path).absolute().as_uri()
