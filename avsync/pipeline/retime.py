"""Write the synced MP4: the video re-timed by a time map, with the reference audio.

Warp mode (`write_retimed`): the output runs on the reference (music) timeline at the input
video's own frame rate and resolution. Output frame ``n`` stands for music time
``[n/fps, (n+1)/fps)`` and shows the input frame on screen at ``time_map.video_time`` of that
interval's middle (the latest input frame whose time is not after it): frames are repeated or
dropped as the map requires, and where the video does not cover the music the first or last
frame is held. The input is decoded once, at full resolution, streaming: the map is monotone, so
only the current and the next input frame are held in memory. Decoded frames go to the encoder
in their own pixel format (`avsync.io.media.iter_video_frames`), never through RGB arrays, and a
held frame is the same object each time, so `avsync.io.media.write_video` writes a long hold at the
start or end as repeated groups of pictures instead of encoding every copy.

Output span (``span``):

* ``"music"`` (default): the whole reference track; the first/last video frame is held where the
  video does not reach.
* ``"video"``: only the part of the music the video covers (the music is cut to it); the fast
  choice when a short clip is synced against a long track. When the map is one constant offset
  (nothing to re-time), the video lies inside the music and its frame rate is constant, the
  output is the video itself: its packets are copied, not re-encoded (`constant_offset`).

Offset mode (`write_offset`): only the constant offset is applied. The video packets are copied
with their timestamps shifted by ``-offset_s`` (no re-encode; an MP4 edit list hides frames
that fall before music time 0) and the reference audio is muxed as AAC from time 0. Streams the
output container cannot hold (e.g. MPEG-1 video from a ``.mpg``) fall back to re-encoding with a
constant time map, and say so (only H.264, HEVC, MPEG-4 part 2, AV1 and VP9 are copied).

Audio is the reference's audio at its own sample rate, mixed down to mono, encoded as AAC.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
from tqdm import tqdm

from avsync.align.timemap import TimeMap, constant_time_map
from avsync.errors import AvsyncError, MediaError
from avsync.io import media
from avsync.io.media import FrameT
from avsync.pipeline.checks import SPANS

TIME_EPSILON_S = 1e-6
# Fallback audio rate when the reference's header does not declare one.
DEFAULT_AUDIO_RATE = 48000
REMUX_CODECS = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9"})
"""Video codecs `write_offset` copies into MP4/MOV/MKV; others are re-encoded (MPEG-1/2 video in
MP4, for one, came out a frame off in tests)."""


class Retimed(NamedTuple):
    """What `write_retimed` wrote.

    Attributes:
        start_s: music time of the output's first frame (0 unless ``span="video"``).
        frames: video frames written.
        copied: the video's own packets were copied (nothing to re-time), not encoded.
    """

    start_s: float
    frames: int
    copied: bool


def output_times(time_map: TimeMap, reference_duration: float, fps: float, span: str = "music") -> np.ndarray:
    """Music times of the output frames.

    Args:
        time_map: the alignment.
        reference_duration: seconds of music.
        fps: the output frame rate (the input video's).
        span: ``"music"`` or ``"video"`` (module docstring).

    Returns:
        float64 [F] times ``n / fps`` (music timeline), at least one.
    """
    if span not in SPANS:
        raise AvsyncError(f"span must be one of {', '.join(SPANS)}, got {span!r}")
    start, end = 0.0, reference_duration
    if span == "video":
        map_step = 1.0 / time_map.fps
        start = max(start, float(time_map.knots[0, 0]))
        end = min(end, float(time_map.knots[-1, 0]) + map_step)
    first = math.ceil(start * fps - TIME_EPSILON_S)
    last = max(first + 1, math.ceil(end * fps - TIME_EPSILON_S))
    return np.arange(first, last, dtype=np.float64) / fps


def source_times(time_map: TimeMap, times: np.ndarray, fps: float) -> np.ndarray:
    """Input-video time to show for each output frame: the map at the middle of the frame's interval.

    Args:
        time_map: the alignment.
        times: float [F] output frame times (music timeline).
        fps: the output frame rate.

    Returns:
        float64 [F], non-decreasing.
    """
    return time_map.video_time(np.asarray(times, np.float64) + 0.5 / fps)


def pick_frames(frames: Iterable[tuple[float, FrameT]], wanted: Iterable[float]) -> Iterator[FrameT]:
    """For each wanted time, the frame on screen then: the latest frame whose time is not after it.

    Streams: both sequences are consumed once, in order.

    Args:
        frames: ``(time, frame)`` in increasing time (e.g. `avsync.io.media.iter_video`).
        wanted: non-decreasing times; times before the first frame get the first frame.

    Yields:
        One frame per wanted time (repeated frames are the same object).

    Raises:
        ValueError: `frames` is empty or `wanted` decreases.
    """
    source = iter(frames)
    current = next(source, None)
    if current is None:
        raise ValueError("no frames to pick from")
    upcoming = next(source, None)
    previous = -math.inf
    for time in wanted:
        if time < previous - TIME_EPSILON_S:
            raise ValueError(f"wanted times must not decrease ({time} after {previous})")
        previous = time
        while upcoming is not None and upcoming[0] <= time + TIME_EPSILON_S:
            current, upcoming = upcoming, next(source, None)
        yield current[1]


def _reference_audio(reference: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """The reference's audio (mono float32 [N]) at its own rate."""
    rate = media.probe(reference).audio_rate or DEFAULT_AUDIO_RATE
    return media.read_audio(reference, sample_rate=rate), rate


def write_retimed(
    video: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    time_map: TimeMap,
    *,
    span: str = "music",
    crf: int = 20,
    preset: str = "veryfast",
    progress: bool = True,
) -> Retimed:
    """Re-time a video by a time map and write it with the reference audio (H.264 + AAC); atomic.

    With ``span="video"`` a video that needs no re-timing is copied instead (`_copy_inside_music`).

    Args:
        video: the input video (any file PyAV opens).
        reference: the music (any file with an audio stream).
        out_path: the output ``.mp4``.
        time_map: maps reference time to input-video time (`avsync.align.timemap.TimeMap`).
        span: ``"music"`` or ``"video"`` (module docstring).
        crf: x264 quality.
        preset: x264 speed preset.
        progress: show a tqdm bar.

    Returns:
        Where the output starts in the music, its frames, and whether the video was copied.

    Raises:
        MediaError: unreadable inputs.
        AvsyncError: the output cannot be written.
    """
    info = media.probe(video)
    if not info.has_video or not info.fps:
        raise MediaError("has no video stream", video)
    fps = float(info.fps)
    samples, rate = _reference_audio(reference)
    if span == "video":
        copied = _copy_inside_music(video, out_path, time_map, samples, rate)
        if copied is not None:
            return copied
    times = output_times(time_map, len(samples) / rate, fps, span)
    wanted = source_times(time_map, times, fps)
    first_sample = round(times[0] * rate)
    clip = samples[first_sample : first_sample + round(len(times) / fps * rate)]
    frames = pick_frames(media.iter_video_frames(video), wanted)
    bar = tqdm(frames, total=len(times), desc="write video", unit="frame", disable=not progress, leave=False)
    media.write_video(out_path, bar, fps=fps, times=times - times[0], audio=clip, sample_rate=rate, crf=crf, preset=preset)
    return Retimed(float(times[0]), len(times), copied=False)


def constant_offset(time_map: TimeMap) -> float | None:
    """The map's ``t_video - t_ref`` when it is one constant offset (nothing re-timed), else None.

    Args:
        time_map: the alignment.
    """
    offsets = time_map.knots[:, 1] - time_map.knots[:, 0]
    return float(offsets[0]) if np.ptp(offsets) <= TIME_EPSILON_S else None


def _copy_inside_music(video: str | os.PathLike[str], out_path: str | os.PathLike[str], time_map: TimeMap,
                       samples: np.ndarray, rate: int) -> Retimed | None:  # fmt: skip
    """`write_retimed` of ``span="video"`` without re-encoding, where re-timing would change nothing.

    When the map is one constant offset, the whole video lies inside the music and its frames come
    at a constant rate, the re-timed output is the video itself with the music of the part it
    covers: its packets are copied (no generation loss; seconds of x264 saved) and the music
    from ``-offset`` is encoded beside them. Frames keep their own times, so an offset that is
    not a whole number of frames places them exactly where re-timing would round them to the frame.

    Returns:
        What was written, or None where a re-encode is needed
        (re-timed map, video reaching outside the music, variable frame rate, codec or stream the
        output cannot hold).
    """
    offset = constant_offset(time_map)
    if offset is None:
        return None
    start, end = -offset, float(time_map.knots[-1, 0]) + 1.0 / time_map.fps
    if start < -TIME_EPSILON_S or end > len(samples) / rate + TIME_EPSILON_S:
        return None
    start = max(start, 0.0)
    clip = samples[round(start * rate) : round(end * rate)]
    try:
        return Retimed(start, _remux(video, out_path, 0.0, clip, rate, constant_rate=True), copied=True)
    except (av.FFmpegError, ValueError):
        return None


def write_offset(
    video: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    offset_s: float,
    *,
    progress: bool = True,
) -> list[str]:
    """Apply a constant offset without re-encoding the video where possible; atomic.

    Args:
        video: the input video.
        reference: the music.
        out_path: the output file (MP4, MOV or MKV by its extension).
        offset_s: ``t_video - t_ref`` in seconds (positive: the video is late and is advanced).
        progress: show a progress bar when falling back to re-encoding.

    Returns:
        Warnings for the report (empty when the video was copied).

    Raises:
        MediaError: unreadable inputs.
        AvsyncError: the output cannot be written.
    """
    samples, rate = _reference_audio(reference)
    try:
        _remux(video, out_path, offset_s, samples, rate)
        return []
    except (av.FFmpegError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Long enough to cover the music whatever the header says (MPEG-PS durations are estimates);
    # frames past the video's real end are held by `pick_frames` anyway.
    extent = max(media.probe(video).duration, len(samples) / rate + abs(offset_s))
    time_map = constant_time_map(offset_s, extent)
    write_retimed(video, reference, out_path, time_map, progress=progress)
    return [f"--mode offset: the video could not be copied into {Path(out_path).suffix or 'the output'} ({reason}); re-encoded it instead"]


def _remux(video: str | os.PathLike[str], out_path: str | os.PathLike[str], offset_s: float, samples: np.ndarray, rate: int,
           *, constant_rate: bool = False) -> int:  # fmt: skip
    """Copy the video packets shifted by ``-offset_s`` and encode the audio from time 0.

    Args:
        constant_rate: refuse (ValueError, nothing written) a video whose frames do not come at
            one constant rate.

    Returns:
        The number of video frames copied.
    """
    with av.open(os.fspath(video)) as source:
        if not source.streams.video:
            raise MediaError("has no video stream", video)
        stream = source.streams.video[0]
        if stream.codec_context.name not in REMUX_CODECS:
            raise ValueError(f"{stream.codec_context.name} video cannot be copied, only {', '.join(sorted(REMUX_CODECS))}")
        time_base = stream.time_base
        origin = stream.start_time if stream.start_time is not None else 0
        shift = origin + round(Fraction(offset_s).limit_denominator(1_000_000) / time_base)
        with media.atomic_path(out_path) as temporary, av.open(os.fspath(temporary), "w") as target:
            copied = target.add_stream_from_template(stream)
            with media.AacWriter(target, samples, rate, 0.0) as audio:
                last_dts = None
                presentation: list[int] = []
                for packet in source.demux(stream):
                    if packet.dts is None or packet.pts is None:
                        if packet.size == 0:
                            continue  # the demuxer's end-of-stream marker
                        raise ValueError("the video has packets without timestamps")
                    packet.pts -= shift
                    packet.dts -= shift
                    if last_dts is not None and packet.dts <= last_dts:
                        raise ValueError("the video's packet timestamps are not increasing")
                    last_dts = packet.dts
                    packet.stream = copied
                    target.mux(packet)
                    audio.write_until(float((packet.dts or 0) * time_base) + 1.0)
                    presentation.append(packet.pts)
                if constant_rate and not _evenly_spaced(presentation):
                    raise ValueError("the video's frames do not come at a constant rate")
                audio.finish()
    return len(presentation)


def _evenly_spaced(times: list[int]) -> bool:
    """Whether presentation times (any order) step by one duration, within 1% of it."""
    steps = np.diff(np.sort(np.asarray(times, np.int64)))
    return len(steps) == 0 or bool(np.ptp(steps) <= 0.01 * steps.mean())
