"""CMX 3600 edit decision lists of an avsync timeline, written as editors' tools expect them.

One EDL holds one video track (and its audio events): `edl_texts` gives one text per video
track of a timeline from `avsync.pipeline.timeline.build_timeline`, each with the music as an
audio event (channel ``A``) and the track's takes' own sound where they have one (``A2``). Each text has

* ``TITLE:`` and an ``FCM:`` line (``DROP FRAME`` at 29.97 and 59.94 fps, with ``;`` before the
  frames of every timecode, else ``NON-DROP FRAME``);
* events numbered in record order (the music and the video track together); a ``BL`` (black)
  event from the timeline's start to the first shot, so every track starts at the timeline's
  start and a reader places each event where its record timecode says;
* reel names of at most 8 capitals and digits, one per media file and unique within the list
  (``verse_take01`` and ``verse take02`` become ``VERSETAK`` and ``VERSETA2``), each event
  followed by ``* FROM CLIP NAME:``, ``* FROM FILE:`` (the media's path) and ``* REEL <reel> IS
  <file>`` comments;
* source timecodes from the media's own timecode (the camera's, `avsync.io.timecode`) in
  timeline frames (CMX 3600 has one rate);
* a shot's confidence marker as ``* LOC:`` at its record timecode (where it is on the cut), with
  its colour.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import opentimelineio as otio

EDL_RESERVED_REELS = frozenset({"AX", "BL", "BLACK", "BARS", "AUX"})
"""Reel names CMX 3600 gives a meaning of their own (black, bars, auxiliary source)."""
NO_MATCH_TRACK = "No match"
"""The name of the timeline's track of takes that were not placed (not part of any EDL)."""
CAMERA_AUDIO_TRACK = "Camera audio"
"""The name (before `` Vk``) of the audio track holding the own sound of video track k's takes;
channel ``A2`` of that track's EDL."""


def is_drop_frame(rate: float) -> bool:
    """Whether timecode at `rate` is drop-frame (29.97 and 59.94 fps)."""
    return any(abs(rate - base * 1000 / 1001) < 1e-6 for base in (30, 60))


def timecode(frames: int, rate: float) -> str:
    """`frames` of `rate` as SMPTE timecode (drop-frame, ``;``, at 29.97 and 59.94)."""
    return otio.opentime.to_timecode(otio.opentime.RationalTime(frames, rate), rate, drop_frame=is_drop_frame(rate))


def media_path(reference: otio.schema.ExternalReference) -> str:
    """The file an external reference names: a ``file://`` URL's path, or a relative URL as a relative path."""
    url = reference.target_url
    return unquote(urlparse(url).path) if url.startswith("file:") else unquote(url)


def reel_names(paths: list[str]) -> dict[str, str]:
    """A unique CMX 3600 reel name (at most 8 capitals and digits) for each distinct path, in order."""
    reels: dict[str, str] = {}
    taken: set[str] = set()
    for path in paths:
        if path in reels:
            continue
        base = re.sub(r"[^A-Z0-9]", "", Path(path).stem.upper())[:8] or "REEL"
        reel, count = base, 1
        while reel in taken or reel in EDL_RESERVED_REELS:
            count += 1
            reel = base[: 8 - len(str(count))] + str(count)
        reels[path] = reel
        taken.add(reel)
    return reels


def edl_texts(timeline: otio.schema.Timeline, rate: float, start: int) -> list[str]:
    """One CMX 3600 text per video track of `timeline` (at least one), each with the music's audio events.

    Args:
        timeline: from `build_timeline` (video tracks ``V1``, ``V2``, ..., the music's audio track,
            the camera-audio tracks ``Camera audio Vk``; the ``No match`` track is left out).
        rate: the timeline's frame rate.
        start: the timeline's start in frames of `rate` (its record timecode at time 0).

    Returns:
        The texts, in the order of the video tracks.
    """
    video = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video and t.name != NO_MATCH_TRACK]
    audio = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
    every_clip = [clip for track in video + audio for clip in track.find_clips()]
    reels = reel_names([media_path(clip.media_reference) for clip in every_clip])
    heard = {t.name: t for t in audio if t.name.startswith(CAMERA_AUDIO_TRACK)}
    music_events = [event for track in audio if track.name not in heard for event in _events(track, "A", rate, start)]
    texts = []
    for number, track in enumerate(video or [otio.schema.Track()], start=1):
        camera = heard.get(f"{CAMERA_AUDIO_TRACK} V{number}")
        audio_events = music_events + ([] if camera is None else _events(camera, "A2", rate, start))
        events = _events(track, "V", rate, start)
        first = min((record for record, *_ in events), default=None)
        if first is not None and first > start:
            events.append((start, "V", None, start, first - start))
        lines = [f"TITLE: {timeline.name if number == 1 else f'{timeline.name} V{number}'}",
                 f"FCM: {'DROP FRAME' if is_drop_frame(rate) else 'NON-DROP FRAME'}", ""]  # fmt: skip
        ordered = sorted(events + audio_events, key=lambda event: (event[0], event[1] != "V"))
        for index, (record, channel, clip, source, frames) in enumerate(ordered, start=1):
            lines += _event_lines(index, record, channel, clip, source, frames, rate, reels)
        texts.append("\n".join(lines) + "\n")
    return texts


def _events(track: otio.schema.Track, channel: str, rate: float, start: int) -> list[tuple]:
    """(record in, channel, clip, source in, frames) of each clip of a track, in timeline frames."""
    events = []
    for clip in track.find_clips():
        placed = clip.range_in_parent()
        record = start + round(placed.start_time.rescaled_to(rate).value)
        frames = round(placed.duration.rescaled_to(rate).value)
        source = round(clip.source_range.start_time.to_seconds() * rate + 1e-9)
        events.append((record, channel, clip, source, frames))
    return events


def _event_lines(index: int, record: int, channel: str, clip: otio.schema.Clip | None, source: int, frames: int, rate: float,
                 reels: dict[str, str]) -> list[str]:  # fmt: skip
    """The event line of one cut and its comments."""
    path = None if clip is None else media_path(clip.media_reference)
    reel = "BL" if path is None else reels[path]
    times = " ".join(timecode(value, rate) for value in (source, source + frames, record, record + frames))
    lines = [f"{index:03d}  {reel:<8} {channel:<5} C        {times}"]
    if clip is None:
        return lines
    lines += [f"* FROM CLIP NAME: {clip.name}", f"* FROM FILE: {path}", f"* REEL {reel} IS {path}"]
    for marker in clip.markers:
        colour = str(marker.color).upper()
        lines.append(f"* LOC: {timecode(record, rate)} {colour:<7} {marker.name}")
    return lines
