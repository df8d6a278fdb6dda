"""What a user asks `avsync align` for, checked from file headers before any heavy work or import.

Only PyAV is needed here, so a mistake (a missing file, a video without pictures, music without
sound, a file too short) is reported in a fraction of a second, before torch and the model load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from avsync.errors import MediaError
from avsync.io.files import check_media_path

if TYPE_CHECKING:  # PyAV and numpy load only once the files are known to exist (a mistake is reported at once)
    from avsync.io import media

MIN_VIDEO_S = 1.0
"""Shortest video (and reference) that can be aligned."""
SPANS = ("music", "video")
"""What a re-timed video covers: the whole music (first/last frame held), or only what the video covers."""


@dataclass(frozen=True)
class SyncInputs:
    """The checked inputs of one alignment, each probed once.

    Attributes:
        video, video_info: the video and its header.
        music, music_info: the reference track (the output's audio) and its header.
        vocal, vocal_info: the isolated vocal the alignment follows instead of the music, or None.
    """

    video: Path
    video_info: media.MediaInfo
    music: Path
    music_info: media.MediaInfo
    vocal: Path | None = None
    vocal_info: media.MediaInfo | None = None

    @property
    def reference(self) -> Path:
        """What the lips are aligned to: the vocal when given, else the music."""
        return self.vocal or self.music


def check_inputs(video: str | os.PathLike[str], music: str | os.PathLike[str],
                 vocal: str | os.PathLike[str] | None = None) -> SyncInputs:
    """Cheap checks of the inputs from their headers (each file is probed once).

    Args:
        video: the video file.
        music: the music (or any file with an audio stream).
        vocal: the music's isolated vocal, or None.

    Returns:
        The `SyncInputs`.

    Raises:
        MediaError: a missing or unreadable file, no video stream in the video, no audio stream
            in a reference, or a file shorter than `MIN_VIDEO_S`.
    """
    return SyncInputs(Path(video), check_video(video), Path(music), check_reference(music),
                      None if vocal is None else Path(vocal), None if vocal is None else check_reference(vocal))  # fmt: skip


def check_video(video: str | os.PathLike[str]) -> media.MediaInfo:
    """Cheap checks of a video from its header.

    Args:
        video: the video file.

    Returns:
        Its `MediaInfo`.

    Raises:
        MediaError: a missing or unreadable file, no video stream, or shorter than `MIN_VIDEO_S`.
    """
    check_media_path(video)
    from avsync.io import media

    video_info = media.probe(video)
    if not video_info.has_video:
        raise MediaError("has no video stream", video)
    if video_info.duration < MIN_VIDEO_S:
        raise MediaError(f"is too short to align ({video_info.duration:.2f} s; at least {MIN_VIDEO_S:g} s needed)", video)
    return video_info


def check_reference(reference: str | os.PathLike[str]) -> media.MediaInfo:
    """Cheap checks of a reference (the music, or its vocal) from its header.

    Args:
        reference: any file with an audio stream.

    Returns:
        Its `MediaInfo`.

    Raises:
        MediaError: a missing or unreadable file, no audio stream, or shorter than `MIN_VIDEO_S`.
    """
    check_media_path(reference)
    from avsync.io import media

    reference_info = media.probe(reference)
    if not reference_info.has_audio:
        raise MediaError("has no audio stream (the reference must carry the music)", reference)
    if reference_info.duration < MIN_VIDEO_S:
        raise MediaError(f"is too short to align against ({reference_info.duration:.2f} s)", reference)
    return reference_info
