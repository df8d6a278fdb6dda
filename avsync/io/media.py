"""Media I/O with PyAV: probe, decode video and audio on one timeline, encode MP4 and WAV.

Timeline rule (shared by every reader): time 0 is the first presentation time of the video
stream (for an audio-only file, of the audio stream). `read_video` reports frame times and
`read_audio` places sample 0 on this timeline, so a stream that starts later or earlier than the
other never shifts the audio-visual relation: audio that starts late is padded with zeros at the
front, audio that starts early loses the samples before time 0.

Frame-rate resampling (`fps=` in `read_video`/`iter_video`) works by timestamp and is safe for
variable frame rate: output frame ``n`` stands for the interval ``[n/fps, (n+1)/fps)`` and is the
source frame on screen at the middle of it, i.e. the latest decoded frame whose time is below
``(n + 0.5) / fps`` (frames before the first decoded one repeat it). Output frames run while
``n / fps`` is before the end of the last source frame.

Every reader raises `avsync.errors.MediaError` (one line, with the path) for user mistakes:
missing file, not a media file, missing stream, zero duration, truncated or corrupt data (a file
that fails to decode, or whose streams end more than 0.5 s before their headers say). Damage the
decoder conceals (a glitch inside otherwise decodable video) is not reported.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from avsync.errors import AvsyncError, MediaError
from avsync.io.background import prefetch
from avsync.io.files import (  # noqa: F401  (file safety lives in avsync.io.files; these names stay importable from here)
    STALE_TEMP_AGE_S,
    TEMPORARY_NAME_EXTRA,
    atomic_path,
    check_media_path,
    keep_existing,
    remove_stale_temporaries,
)

PathLike = str | os.PathLike[str]
FrameT = TypeVar("FrameT")

# Decoded media that ends this much earlier than its header says counts as truncated.
TRUNCATION_TOLERANCE_S = 0.5
# Frame times closer than this are equal (finest common time base, 1/90000 s, is 11 us).
TIME_EPSILON_S = 1e-6
# Demuxers that accept text files by extension; never media for avsync.
NON_MEDIA_FORMATS = frozenset({"tty"})
# File signatures (offset, bytes, name) of common containers, to recognise damaged media files.
CONTAINER_SIGNATURES = (
    (4, b"ftyp", "an MP4/MOV file"),
    (0, b"\x1aE\xdf\xa3", "a Matroska/WebM file"),
    (0, b"RIFF", "a RIFF (WAV/AVI) file"),
    (0, b"OggS", "an Ogg file"),
    (0, b"fLaC", "a FLAC file"),
    (0, b"ID3", "an MP3 file"),
    (0, b"\x00\x00\x01\xba", "an MPEG program stream"),
)
# Time base of written video timestamps: exact for 24, 25, 30, 50, 60 and 30000/1001 fps.
WRITE_TIME_BASE = Fraction(1, 90000)
AAC_FRAME_SAMPLES = 1024
HOLD_GOP_FRAMES = 125
"""Frames of the group of pictures that `write_video` repeats for a held frame (5 s at 25 fps)."""
MIN_HOLD_FRAMES = 2 * HOLD_GOP_FRAMES
"""A frame held at least this long at the start or end of a video is written by repeating groups."""
# AAC packets encoded ahead of the muxer (about 6 s at 44.1 kHz).
AAC_PREFETCH_PACKETS = 256
# MP4/MOV muxer: index first (playable while downloading, and a cut file keeps its header);
# edit lists in 1/90000 s, since the default 1/1000 s shifts late-starting AAC audio by up to 1 ms.
MP4_OPTIONS = {"movflags": "+faststart", "movie_timescale": "90000"}


@dataclass
class MediaInfo:
    """What `probe` learns from a file's headers (no decoding).

    Attributes:
        path: the file.
        duration: seconds, the longest stream.
        has_video: whether there is a video stream.
        has_audio: whether there is an audio stream.
        fps: the video stream's average frame rate (None without video).
        width: displayed video width in pixels, after `rotation` (None without video).
        height: displayed video height in pixels, after `rotation` (None without video).
        audio_rate: audio sample rate in Hz (None without audio).
        video_start: first presentation time of the video stream in container seconds.
        audio_start: first presentation time of the audio stream in container seconds, as the
            header says (AAC encoder priming can put it up to 1024 samples before the first
            audible sample; `read_audio` places audio by its decoded start instead).
        rotation: counter-clockwise display rotation in degrees (0, 90, 180, 270) that the
            readers apply to the stored frames (phone videos shot upright store 90 or 270).
    """

    path: str
    duration: float
    has_video: bool
    has_audio: bool
    fps: float | None
    width: int | None
    height: int | None
    audio_rate: int | None
    video_start: float | None
    audio_start: float | None
    rotation: int = 0


@dataclass
class VideoFrames:
    """Decoded video.

    Attributes:
        frames: uint8 ``[T, H, W, 3]`` RGB, or ``[T, H, W]`` gray.
        times: float64 ``[T]``, seconds on the timeline (time 0 = first video presentation time).
        fps: the resampled rate, or the stream's average rate when not resampled.
    """

    frames: np.ndarray
    times: np.ndarray
    fps: float

    def __len__(self) -> int:
        return len(self.times)


def _open_input(path: PathLike) -> av.container.InputContainer:
    """Open a media file for reading, turning every failure into a one-line `MediaError`."""
    check_media_path(path)
    try:
        container = av.open(os.fspath(path), metadata_errors="replace")
    except PermissionError as exc:
        raise MediaError("cannot be read (permission denied)", path) from exc
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        container_name = _container_signature(path)
        if container_name is not None:
            problem = f"is truncated or corrupt ({container_name} whose header PyAV could not read)"
            raise MediaError(problem, path) from exc
        raise MediaError("not a media file (PyAV could not open it)", path) from exc
    if container.format.name in NON_MEDIA_FORMATS:
        container.close()
        raise MediaError("not a media file (PyAV could not open it)", path)
    if not (container.streams.video or container.streams.audio):
        container.close()
        raise MediaError("has no audio or video stream (empty, truncated or corrupt)", path)
    return container


def _container_signature(path: PathLike) -> str | None:
    """Name of the container a file's first bytes announce (e.g. "an MP4/MOV file"), else None.

    Tells a damaged media file (signature present, header unreadable) from a file that is not
    media at all.
    """
    with open(path, "rb") as handle:
        head = handle.read(12)
    for offset, magic, name in CONTAINER_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _stream_end(stream: av.stream.Stream) -> float | None:
    """End of a stream in container seconds, from its header, or None when not declared."""
    start = _seconds(stream.start_time, stream.time_base)
    length = _seconds(stream.duration, stream.time_base)
    if length is None:
        return None
    return (start or 0.0) + length


def _first_frame(container: av.container.InputContainer, stream: av.stream.Stream, path: PathLike) -> av.frame.Frame:
    """The first decoded frame of `stream` that has a time; the caller seeks back if needed."""
    try:
        for frame in container.decode(stream):
            if frame.time is not None:
                return frame
    except av.FFmpegError as exc:
        raise MediaError("is truncated or corrupt (decoding failed at 0.0 s)", path) from exc
    raise MediaError("is empty (zero duration)", path)


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0-3) the display matrix asks for (portrait phone videos)."""
    return round(frame.rotation / 90) % 4


def _origin(container: av.container.InputContainer, path: PathLike) -> float:
    """Container time of timeline 0: the video stream's first presentation time (else audio's)."""
    stream = container.streams.video[0] if container.streams.video else container.streams.audio[0]
    start = _seconds(stream.start_time, stream.time_base)
    if start is not None:
        return start
    origin = float(_first_frame(container, stream, path).time)
    container.seek(0)
    return origin


def probe(path: PathLike) -> MediaInfo:
    """Read a media file's headers (and decode its first video frame, for the display rotation).

    Args:
        path: the media file.

    Returns:
        The file's `MediaInfo`.

    Raises:
        MediaError: missing file, not a media file, or zero duration.
    """
    with _open_input(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is not None and audio is None and (container.format.name.endswith("_pipe") or container.format.name == "image2"):
            raise MediaError(f"is a still image ({video.codec_context.name}), not a video", path)
        if container.format.name == "wav":
            _check_wav_length(path)
        duration = container.duration / av.time_base if container.duration else None
        if not duration:
            stream_lengths = [_seconds(s.duration, s.time_base) for s in (video, audio) if s is not None]
            duration = max((d for d in stream_lengths if d is not None), default=None)
        if not duration:
            duration = _demuxed_duration(container)
        if duration <= 0:
            raise MediaError("is empty (zero duration)", path)
        rate = (video.average_rate or video.guessed_rate or video.base_rate) if video is not None else None
        rotation = 90 * _quarter_turns(_first_frame(container, video, path)) if video is not None else 0
        width, height = (video.codec_context.width, video.codec_context.height) if video is not None else (None, None)
        if rotation in (90, 270):
            width, height = height, width
        return MediaInfo(
            path=os.fspath(path),
            duration=float(duration),
            has_video=video is not None,
            has_audio=audio is not None,
            fps=float(rate) if rate else None,
            width=width,
            height=height,
            audio_rate=audio.codec_context.sample_rate if audio is not None else None,
            video_start=_seconds(video.start_time, video.time_base) if video is not None else None,
            audio_start=_seconds(audio.start_time, audio.time_base) if audio is not None else None,
            rotation=rotation,
        )


def _demuxed_duration(container: av.container.InputContainer) -> float:
    """Duration in seconds from packet timestamps, for files whose headers declare none."""
    start, end = math.inf, -math.inf
    try:
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            time = float(packet.pts * packet.time_base)
            start = min(start, time)
            end = max(end, time + float((packet.duration or 0) * packet.time_base))
    except av.FFmpegError:
        pass
    return max(0.0, end - start) if end > -math.inf else 0.0


def _check_wav_length(path: PathLike) -> None:
    """Raise when a WAV file holds fewer bytes than its data chunk declares (cut off in a copy or a
    download: FFmpeg then reads what is there and reports the shorter length as the duration)."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    position = 12
    while position + 8 <= len(head):
        chunk, size = head[position : position + 4], int.from_bytes(head[position + 4 : position + 8], "little")
        if chunk == b"data":
            available = os.path.getsize(path) - (position + 8)
            if size not in (0, 0xFFFFFFFF) and available < size - 4096:  # 0 and 0xFFFFFFFF: streamed, size unknown
                raise MediaError(f"is truncated (its header declares {size:,} bytes of audio, the file holds {max(available, 0):,})", path)
            return
        position += 8 + size + (size & 1)


def _check_complete(path: PathLike, decoded_end: float, declared_end: float | None) -> None:
    """Raise when decoding stopped well before the end the header declares (a truncated file)."""
    if declared_end is not None and decoded_end < declared_end - TRUNCATION_TOLERANCE_S:
        raise MediaError(
            f"is truncated or corrupt (decoding stopped at {decoded_end:.1f} s of {declared_end:.1f} s)", path
        )


def iter_video(
    path: PathLike,
    *,
    fps: float | None = None,
    gray: bool = False,
    size: tuple[int, int] | None = None,
    threads: int = 0,
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode a video stream frame by frame.

    Args:
        path: the media file.
        fps: resample to this rate by timestamp (see the module docstring for the rule); None
            keeps every decoded frame at its own time.
        gray: decode to one luma channel instead of RGB.
        size: ``(width, height)`` of the output frames, scaled in the decoder's reformatter
            (area filter).
        threads: the decoder's threads; 0: FFmpeg's choice (frame and slice threads, about one
            per core), 1: decode in the calling thread only.

    Frames come upright: a display rotation in the file (portrait phone videos) is applied.

    Yields:
        ``(time, frame)``: seconds on the timeline, uint8 ``[H, W, 3]`` (or ``[H, W]`` gray).
        A frame repeated by resampling is the same array object each time: copy before
        modifying it in place.

    Raises:
        MediaError: missing file, not a media file, no video stream, zero duration, or
            truncated/corrupt data.
    """
    if size is not None and min(size) <= 0:
        raise AvsyncError(f"size must be a positive (width, height), got {size}")
    # One reformatter for the whole stream: it keeps its swscale context (`frame.to_ndarray(...)`
    # builds a new one for every frame, 0.13-0.18 ms of a 720p frame's 0.4-0.55 ms of scaling).
    convert = functools.partial(_frame_array, gray=gray, size=size, reformatter=VideoReformatter())
    yield from _timed_frames(path, fps, convert, threads)


def iter_video_frames(path: PathLike, *, fps: float | None = None) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decode a video stream to PyAV frames in the decoder's own pixel format (no conversion).

    For re-encoding (`write_video` takes these frames as they are): skipping the round trip
    through RGB arrays saves two full-resolution colour conversions per frame (about 11 ms at
    720p, measured on the 2-core CPU). Same timeline, resampling and errors as `iter_video`.

    Args:
        path: the media file.
        fps: resample to this rate by timestamp; None keeps every decoded frame.

    Yields:
        ``(time, frame)``: seconds on the timeline and an upright ``av.VideoFrame`` (a frame that
        the file's display rotation turns is converted to an RGB frame, turned). Repeated frames
        are the same object.

    Raises:
        MediaError: as `iter_video`.
    """
    yield from _timed_frames(path, fps, _upright_frame)


def _timed_frames(path: PathLike, fps: float | None, convert: Callable[[av.VideoFrame], FrameT],
                  threads: int = 0) -> Iterator[tuple[float, FrameT]]:  # fmt: skip
    """Decode `path`'s video on `threads` threads (0: FFmpeg's choice), resample to `fps` (None:
    every frame) and `convert` each frame once."""
    if threads < 0:
        raise AvsyncError(f"decoder threads must be 0 (automatic) or more, got {threads}")
    if fps is not None and fps <= 0:
        raise AvsyncError(f"frame rate must be positive, got {fps}")
    with _open_input(path) as container:
        if not container.streams.video:
            raise MediaError("has no video stream", path)
        stream = container.streams.video[0]
        if threads == 0:
            stream.thread_type = "AUTO"
        else:
            stream.thread_count = threads
        origin = _origin(container, path)
        declared_end = _stream_end(stream)
        nominal_rate = stream.average_rate or stream.guessed_rate
        nominal_step = 1.0 / float(nominal_rate) if nominal_rate else None
        frame_times = _decoded_frames(container, stream, path, origin, nominal_step)
        if fps is None:
            last_time, last_step = -math.inf, nominal_step
            for time, frame in frame_times:
                if last_time > -math.inf:
                    last_step = time - last_time
                last_time = time
                yield time, convert(frame)
            if last_time == -math.inf:
                raise MediaError("is empty (zero duration)", path)
            decoded_end = last_time + (last_step or 0.0)
        else:
            decoded_end = yield from _resample(frame_times, float(fps), convert, nominal_step, path)
        if declared_end is not None:
            _check_complete(path, decoded_end, declared_end - origin)


def _upright_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """`frame` itself, or an RGB copy turned upright when the display matrix rotates it."""
    if not _quarter_turns(frame):
        return frame
    return av.VideoFrame.from_ndarray(_frame_array(frame, gray=False, size=None), format="rgb24")


def _frame_array(frame: av.VideoFrame, *, gray: bool, size: tuple[int, int] | None,
                 reformatter: VideoReformatter | None = None) -> np.ndarray:
    """One decoded frame as uint8 ``[H, W, 3]`` RGB (or ``[H, W]`` gray), upright, scaled to `size`.

    `reformatter`: reused from frame to frame of a stream (the same pixels as a fresh one, without
    setting up swscale again); None: the frame's own.
    """
    turns = _quarter_turns(frame)
    # One swscale thread: the decoder's threads already use the cores, and on 2 cores automatic
    # swscale threading measured 1.5-2x slower (benchmarks/bench_media.py).
    options = {"format": "gray" if gray else "rgb24", "threads": 1}
    if size is not None:
        width, height = (size[1], size[0]) if turns % 2 else size
        options.update(width=int(width), height=int(height), interpolation="AREA")
    array = frame.to_ndarray(**options) if reformatter is None else reformatter.reformat(frame, **options).to_ndarray()
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def _decoded_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: PathLike,
    origin: float,
    nominal_step: float | None,
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames with their times on the timeline; decoding errors become `MediaError`."""
    time = -math.inf
    try:
        for frame in container.decode(stream):
            if frame.time is not None:
                time = float(frame.time) - origin
            elif time == -math.inf:
                time = 0.0
            else:
                time += nominal_step or 0.0
            yield time, frame
    except av.FFmpegError as exc:
        where = max(time, 0.0)
        raise MediaError(f"is truncated or corrupt (decoding failed at {where:.1f} s)", path) from exc


def _resample(
    frame_times: Iterator[tuple[float, av.VideoFrame]],
    fps: float,
    convert: Callable[[av.VideoFrame], FrameT],
    nominal_step: float | None,
    path: PathLike,
) -> Generator[tuple[float, FrameT], None, float]:
    """Yield frames on the grid ``n / fps``; returns the decoded end time (last frame + its length)."""
    index = 0
    current: av.VideoFrame | None = None
    current_array: FrameT | None = None
    last_time, last_step = -math.inf, nominal_step
    for time, frame in frame_times:
        if last_time > -math.inf:
            last_step = time - last_time
        last_time = time
        # Emit every output frame whose middle lies before this new frame.
        while (index + 0.5) / fps <= time + TIME_EPSILON_S:
            if current_array is None:
                current_array = convert(current or frame)
            yield index / fps, current_array
            index += 1
        current, current_array = frame, None
    if current is None:
        raise MediaError("is empty (zero duration)", path)
    decoded_end = last_time + (last_step or 1.0 / fps)
    while index / fps < decoded_end - TIME_EPSILON_S:
        if current_array is None:
            current_array = convert(current)
        yield index / fps, current_array
        index += 1
    return decoded_end


def read_video(
    path: PathLike,
    *,
    fps: float | None = None,
    gray: bool = False,
    size: tuple[int, int] | None = None,
) -> VideoFrames:
    """Decode a whole video stream into memory.

    Args:
        path: the media file.
        fps: resample to this rate by timestamp (module docstring); None keeps the source frames.
        gray: decode to one luma channel instead of RGB.
        size: ``(width, height)`` to scale to in the decoder's reformatter.

    Returns:
        `VideoFrames` with frames uint8 ``[T, H, W, 3]`` (``[T, H, W]`` gray) and times ``[T]``.

    Raises:
        MediaError: as `iter_video`.
    """
    times: list[float] = []
    frames: list[np.ndarray] = []
    for time, frame in iter_video(path, fps=fps, gray=gray, size=size):
        times.append(time)
        frames.append(frame)
    time_array = np.asarray(times, dtype=np.float64)
    if fps is None:
        rate = probe(path).fps
        steps = np.diff(time_array)
        out_fps = rate if rate else (1.0 / float(np.median(steps)) if len(steps) else 0.0)
    else:
        out_fps = float(fps)
    return VideoFrames(frames=np.stack(frames), times=time_array, fps=out_fps)


def read_audio(path: PathLike, *, sample_rate: int = 16000) -> np.ndarray:
    """Decode the audio stream to mono float32 on the timeline.

    Sample ``i`` is at time ``i / sample_rate`` on the timeline, whose 0 is the video stream's
    first presentation time when the file has video: audio that starts later is padded with
    zeros in front, audio that starts earlier loses its samples before time 0. Codec padding
    after the stream's declared end is dropped.

    Args:
        path: the media file.
        sample_rate: output rate in Hz (resampled by libswresample).

    Returns:
        float32 ``[N]``, mono (the mean of the channels), roughly in ``[-1, 1]``.

    Raises:
        MediaError: missing file, not a media file, no audio stream, zero duration, or
            truncated/corrupt data.
    """
    if sample_rate <= 0:
        raise AvsyncError(f"sample rate must be positive, got {sample_rate}")
    with _open_input(path) as container:
        if not container.streams.audio:
            raise MediaError("has no audio stream", path)
        origin = _origin(container, path)
        stream = container.streams.audio[0]
        declared_end = _stream_end(stream)
        # Planar float at the target rate, channels kept: mixed down below by averaging.
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        decoded = 0.0
        try:
            for frame in container.decode(stream):
                if first_time is None:
                    first_time = float(frame.time) if frame.time is not None else origin
                decoded += frame.samples / frame.sample_rate
                chunks.extend(out.to_ndarray().mean(axis=0) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().mean(axis=0) for out in resampler.resample(None))
        except av.FFmpegError as exc:
            where = (origin if first_time is None else first_time) - origin + decoded
            raise MediaError(f"is truncated or corrupt (decoding failed at {where:.1f} s)", path) from exc
    if first_time is None or decoded == 0.0:
        raise MediaError("is empty (zero duration)", path)
    if declared_end is not None:
        _check_complete(path, first_time + decoded, declared_end)
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    if declared_end is not None:
        # The last codec frame is padded (AAC: up to 1023 samples); the header knows the true end.
        samples = samples[: max(1, round((declared_end - first_time) * sample_rate))]
    shift = round((first_time - origin) * sample_rate)
    if shift > 0:
        return np.concatenate([np.zeros(shift, dtype=np.float32), samples])
    return samples[-shift:]


def _as_frame_array(frame: np.ndarray) -> tuple[np.ndarray, str]:
    """Check one frame, pad it to even width/height (edge pixels), and name its pixel format."""
    array = np.asarray(frame)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"frames must be uint8 [H, W, 3] or [H, W], got {array.dtype} {array.shape}")
    pad_rows, pad_cols = array.shape[0] % 2, array.shape[1] % 2
    if pad_rows or pad_cols:
        padding = [(0, pad_rows), (0, pad_cols)] + [(0, 0)] * (array.ndim - 2)
        array = np.pad(array, padding, mode="edge")
    return np.ascontiguousarray(array), ("gray" if array.ndim == 2 else "rgb24")


def _as_video_frame(frame: np.ndarray | av.VideoFrame) -> av.VideoFrame:
    """One frame ready for the encoder: even-sized PyAV frames as they are (the encoder converts
    their pixel format), arrays and odd-sized frames padded to even size (`_as_frame_array`)."""
    if isinstance(frame, av.VideoFrame):
        if frame.width % 2 == 0 and frame.height % 2 == 0:
            # A decoded frame keeps its I/P/B type, which libx264 would obey (a held keyframe
            # would be re-sent as a keyframe each time): let the encoder decide.
            frame.pict_type = PictureType.NONE
            return frame
        frame = frame.to_ndarray(format="rgb24")
    array, pixel_format = _as_frame_array(frame)
    return av.VideoFrame.from_ndarray(array, format=pixel_format)


def write_video(
    path: PathLike,
    frames: Iterable[np.ndarray | av.VideoFrame],
    *,
    fps: float,
    times: Iterable[float] | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    audio_start: float = 0.0,
    crf: int = 20,
    preset: str = "fast",
    reproducible: bool = False,
    timecode: str | None = None,
) -> None:
    """Encode frames to an H.264 MP4 (yuv420p, faststart), optionally with AAC audio; atomic.

    Odd widths/heights are padded by one edge pixel (H.264 4:2:0 needs even sizes).

    Args:
        path: output file (``.mp4``/``.mov``/``.mkv``); replaced only when writing succeeds.
        frames: uint8 ``[T, H, W, 3]`` RGB or ``[T, H, W]`` gray: an array or any iterable of
            frames (streamed, never held in memory all at once); an iterable may also yield
            ``av.VideoFrame`` (e.g. from `iter_video_frames`), encoded without a detour through
            RGB. The same object may come again (a held frame; held for 10 s or more at the
            start or the end, it is written as repeated groups of pictures, see `_VideoSink`).
        fps: frame rate; the frame times when `times` is None (``i / fps``), else the nominal rate.
        times: float ``[T]``, strictly increasing presentation times in seconds (variable frame
            rate allowed); stored in a 1/90000 s time base.
        audio: float ``[N]`` mono samples in ``[-1, 1]`` to mux as AAC.
        sample_rate: rate of `audio` in Hz (required with `audio`).
        audio_start: time of audio sample 0 on the same clock as `times` (negative: audio starts
            before time 0; everything is shifted so no timestamp is negative).
        crf: x264 constant rate factor (0 lossless, 18-23 visually good).
        preset: x264 preset (speed/size trade-off).
        reproducible: the same bytes for the same input on every run. x264's MB-tree analysis of
            B-frames reads uninitialised memory (the output changes with glibc's
            ``MALLOC_PERTURB_``), so this encodes without B-frames (files about 1.4x larger).
        timecode: the first frame's timecode (``HH:MM:SS:FF``, ``;`` for drop-frame), stored as a
            ``tmcd`` track as cameras do; None: no timecode.

    Raises:
        ValueError: bad arrays or times (no output is left behind).
        AvsyncError: the output folder cannot be written.
    """
    if audio is not None and not sample_rate:
        raise ValueError("sample_rate is required with audio")
    frame_iter = iter(frames)
    time_iter = (index / fps for index in itertools.count()) if times is None else iter(times)
    first_frame = next(frame_iter, None)
    first_time = next(time_iter, None)
    if first_frame is None or first_time is None:
        raise ValueError("write_video needs at least one frame (and one time)")
    shift = -min(0.0, float(first_time), audio_start if audio is not None else 0.0)
    first = _as_video_frame(first_frame)
    with (
        atomic_path(path) as temporary,
        av.open(os.fspath(temporary), "w", container_options=MP4_OPTIONS) as container,
        ExitStack() as cleanup,
    ):
        options = {"crf": str(crf), "preset": preset, **({"bf": "0"} if reproducible else {})}
        video = _add_h264_stream(container, first.width, first.height, Fraction(fps).limit_denominator(1001), options)
        if timecode is not None:
            video.metadata["timecode"] = timecode
        audio_writer = None
        if audio is not None:
            samples = np.asarray(audio, dtype=np.float32)
            audio_writer = cleanup.enter_context(AacWriter(container, samples, int(sample_rate), audio_start + shift))
        sink = _VideoSink(container, video, options, audio_writer, shift)
        # Runs of one frame object (a frame `avsync.pipeline.retime` holds) are collected, so that a long
        # run at the start or the end can be written as repeated groups of pictures.
        run_frame, run_times = first, [float(first_time)]
        for frame in frame_iter:
            time = next(time_iter, None)
            if time is None:
                raise ValueError("times has fewer entries than there are frames")
            video_frame = _as_video_frame(frame)
            if (video_frame.width, video_frame.height) != (first.width, first.height):
                raise ValueError(f"all frames must have one size, got {first.width}x{first.height} and {video_frame.width}x{video_frame.height}")
            if video_frame is run_frame:
                run_times.append(float(time))
                continue
            sink.write_run(run_frame, run_times, last=False)
            run_frame, run_times = video_frame, [float(time)]
        if times is not None and next(time_iter, None) is not None:
            raise ValueError("times has more entries than there are frames")
        sink.write_run(run_frame, run_times, last=True)
        if audio_writer is not None:
            audio_writer.finish()


def _add_h264_stream(container: av.container.OutputContainer, width: int, height: int, rate: Fraction,
                     options: dict[str, str]) -> av.video.stream.VideoStream:  # fmt: skip
    """An x264 yuv420p stream with timestamps in `WRITE_TIME_BASE`."""
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = WRITE_TIME_BASE
    stream.codec_context.time_base = WRITE_TIME_BASE
    stream.options = dict(options)
    return stream


class _VideoSink:
    """The video stream of `write_video`: frames through the stream's encoder, except held frames.

    A frame held for at least `MIN_HOLD_FRAMES` frames at the start or at the end of the video
    (the music before and after the clip, in `avsync.pipeline.retime`) is encoded once as a group of
    pictures of `HOLD_GOP_FRAMES` frames (an IDR frame and skipped frames, by a second x264 with
    the stream's settings) whose packets are then repeated with shifted timestamps: each copy is a
    closed group that starts with an IDR frame, so decoding is exact. x264 spends about 3.5 ms of
    CPU on each held 720p frame otherwise. When the second encoder's parameter sets differ from
    the stream's (they should not), the run is encoded frame by frame.
    """

    def __init__(self, container: av.container.OutputContainer, stream: av.video.stream.VideoStream, options: dict[str, str],
                 audio_writer: AacWriter | None, shift: float) -> None:  # fmt: skip
        self.container = container
        self.stream = stream
        self.options = options  # the stream's own are consumed when its encoder opens
        self.audio_writer = audio_writer
        self.shift = shift
        self.step = round(1 / (stream.codec_context.framerate * WRITE_TIME_BASE))  # one frame in time-base units
        self.previous_pts = -1
        self.started = False  # any frame written
        container.start_encoding()  # opens the stream's encoder: its parameter sets are compared below

    def _pts(self, time: float) -> int:
        pts = round((time + self.shift) / WRITE_TIME_BASE)
        if pts <= self.previous_pts:
            raise ValueError(f"times must be strictly increasing (at least 1/90000 s apart), got {time}")
        self.previous_pts = pts
        return pts

    def _audio_until(self, pts: int) -> None:
        if self.audio_writer is not None:
            self.audio_writer.write_until(float(pts * WRITE_TIME_BASE) + 1.0)

    def write_run(self, frame: av.VideoFrame, times: list[float], *, last: bool) -> None:
        """Write one frame shown at `times` (seconds, increasing); `last`: no frame follows.

        A held run at the start is written as groups, then its remainder (fewer than
        `HOLD_GOP_FRAMES` frames) through the stream's encoder; at the end, the remainder first,
        then the encoder is flushed, then the groups: the groups' B-frame delay equals the
        encoder's, so decoding timestamps keep increasing across the joins (a group shorter than
        the delay would break that).
        """
        group = self._held_group(frame, times) if (last or not self.started) and len(times) >= MIN_HOLD_FRAMES else None
        if group is None:
            self._encode(frame, times)
        else:
            held = len(times) - len(times) % HOLD_GOP_FRAMES
            if self.started:  # the end of the video
                self._encode(frame, times[: len(times) - held])
                self.container.mux(self.stream.encode(None))
                self._repeat(group, times[len(times) - held :])
            else:
                self._repeat(group, times[:held])
                self._encode(frame, times[held:])
        if last and (group is None or not self.started):
            self.container.mux(self.stream.encode(None))
        self.started = True

    def _encode(self, frame: av.VideoFrame, times: list[float]) -> None:
        """`frame` at each of `times` through the stream's encoder."""
        for time in times:
            frame.pts = self._pts(time)
            frame.time_base = WRITE_TIME_BASE
            self.container.mux(self.stream.encode(frame))
            self._audio_until(frame.pts)

    def _repeat(self, group: list[av.Packet], times: list[float]) -> None:
        """Copies of a group's packets covering `times` (a multiple of `HOLD_GOP_FRAMES` frames)."""
        offset = self._pts(times[0])
        for _ in range(len(times) // HOLD_GOP_FRAMES):
            for packet in group:
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts = packet.pts + offset, packet.dts + offset
                copy.time_base, copy.stream, copy.is_keyframe = WRITE_TIME_BASE, self.stream, packet.is_keyframe
                self.container.mux(copy)
            offset += HOLD_GOP_FRAMES * self.step
            self._audio_until(offset)
        self.previous_pts = offset - self.step

    def _held_group(self, frame: av.VideoFrame, times: list[float]) -> list[av.Packet] | None:
        """The packets of one group of `frame` from time 0, or None when the run is not at the
        stream's frame rate or the second encoder disagrees with the stream's."""
        pts = np.round((np.asarray(times) + self.shift) / float(WRITE_TIME_BASE)).astype(np.int64)
        if not np.array_equal(pts - pts[0], self.step * np.arange(len(pts))):
            return None
        return self._encode_group(frame)

    def _encode_group(self, frame: av.VideoFrame) -> list[av.Packet] | None:
        """`HOLD_GOP_FRAMES` copies of `frame` through a second x264 set up like the stream's (in a scratch
        MP4 in memory: a bare codec context got other picture parameters); None if its parameter
        sets (SPS/PPS) differ from the stream's."""
        main = self.stream.codec_context
        with av.open(io.BytesIO(), "w", format="mp4") as scratch:
            encoder = _add_h264_stream(scratch, main.width, main.height, main.framerate, self.options)
            scratch.start_encoding()
            if encoder.codec_context.extradata != main.extradata:
                return None
            packets = []
            for index in range(HOLD_GOP_FRAMES):
                frame.pts, frame.time_base = index * self.step, WRITE_TIME_BASE
                packets += encoder.encode(frame)
            packets += encoder.encode(None)
        return packets


class AacWriter:
    """Encode mono float samples as AAC and mux the packets in step with the video (interleaving).

    The encoding runs in a background thread (`avsync.io.background.prefetch`; the encoder releases
    the GIL), overlapping the video encoder; packets are muxed by the calling thread. Add every
    other stream first, then use it as a context manager inside the container's ``with`` block
    (entering writes the header; leaving ends the thread before the container closes, also on
    errors).

    Args:
        container: the output container.
        samples: float32 ``[N]`` mono samples in ``[-1, 1]``.
        sample_rate: their rate in Hz.
        start: container time of sample 0, seconds (not negative).
    """

    def __init__(self, container: av.container.OutputContainer, samples: np.ndarray, sample_rate: int, start: float):
        if samples.ndim != 1:
            raise ValueError(f"audio must be mono float [N], got shape {samples.shape}")
        self.container = container
        self.samples = samples
        self.sample_rate = sample_rate
        self.stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        # Samples count in 1/sample_rate; the muxer may change the stream's own time base when
        # it writes the header (Matroska: 1/1000), so frames and packets keep this one.
        self.time_base = Fraction(1, sample_rate)
        self.stream.time_base = self.time_base
        self.start_pts = round(start * sample_rate)
        self._packets: Iterator[av.Packet] | None = None
        self._pending: av.Packet | None = None

    def __enter__(self) -> AacWriter:
        # Every stream is configured now: open the encoders and write the header here, before the
        # audio thread uses its encoder (the first `mux` would do it, racing that thread).
        self.container.start_encoding()
        self._packets = prefetch(self._encode(), AAC_PREFETCH_PACKETS)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._packets is not None:
            self._packets.close()  # stops and joins the thread

    def _encode(self) -> Iterator[av.Packet]:
        """All packets, in order (runs in the background thread)."""
        for position in range(0, len(self.samples), AAC_FRAME_SAMPLES):
            chunk = self.samples[position : position + AAC_FRAME_SAMPLES]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[None, :]), format="fltp", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self.start_pts + position
            frame.time_base = self.time_base
            yield from self.stream.encode(frame)
        yield from self.stream.encode(None)

    def write_until(self, time: float) -> None:
        """Mux the packets that start before `time` (seconds, container clock)."""
        self._mux_before(round(time * self.sample_rate))

    def finish(self) -> None:
        """Mux the remaining packets."""
        self._mux_before(None)

    def _mux_before(self, end_pts: int | None) -> None:
        if self._packets is None:
            raise RuntimeError("AacWriter is used outside its with block")
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            if end_pts is not None and self._pending.pts is not None and self._pending.pts >= end_pts:
                return
            self.container.mux(self._pending)
            self._pending = None


def write_audio(path: PathLike, samples: np.ndarray, sample_rate: int, *, float32: bool = False) -> None:
    """Write a WAV file (PCM 16-bit, or 32-bit float); atomic.

    Args:
        path: output ``.wav`` file; replaced only when writing succeeds.
        samples: float ``[N]`` mono or ``[C, N]`` channels-first, in ``[-1, 1]`` (16-bit: scaled by 32768 and clipped).
        sample_rate: rate in Hz.
        float32: write 32-bit float PCM instead of 16-bit integers.
    """
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] > 8 or array.shape[1] == 0:
        raise ValueError(f"samples must be [N] or [C, N] with C <= 8 and N > 0, got shape {np.shape(samples)}")
    channels = array.shape[0]
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    if float32:
        codec, sample_format, interleaved = "pcm_f32le", "flt", array.T.reshape(1, -1)
    else:
        codec, sample_format = "pcm_s16le", "s16"
        interleaved = np.clip(np.round(array * 32768.0), -32768, 32767).astype(np.int16).T.reshape(1, -1)
    with atomic_path(path) as temporary, av.open(os.fspath(temporary), "w", format="wav") as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(interleaved), format=sample_format, layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = 0
        frame.time_base = Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
