"""A camera file's start timecode, read from its container with PyAV.

Cameras and recorders stamp the first frame with a timecode: a QuickTime/MP4 ``tmcd`` track (FFmpeg
shows it as a data stream, and copies it onto the video stream, with ``timecode`` metadata), or a
container-level ``timecode`` tag (MXF, some MKV). `start_timecode` returns it as written
(``HH:MM:SS:FF``, ``;`` before the frames for drop-frame), or None when the file has none.
"""

from __future__ import annotations

import os
import re

import av

from avsync.errors import MediaError

TIMECODE_PATTERN = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")
"""``HH:MM:SS:FF`` (``;``, ``.`` or ``,`` before the frames mark drop-frame, as FFmpeg writes them)."""


def start_timecode(path: str | os.PathLike[str]) -> str | None:
    """The timecode of a media file's first frame, as its container states it.

    Args:
        path: the media file.

    Returns:
        ``HH:MM:SS:FF`` or ``HH:MM:SS;FF`` (drop-frame), or None when the file carries no timecode
        (or one that is not a timecode).

    Raises:
        MediaError: the file cannot be opened.
    """
    try:
        with av.open(os.fspath(path)) as container:
            streams = [s for s in container.streams if s.type == "data"] + list(container.streams.video)
            candidates = [s.metadata.get("timecode") for s in streams] + [container.metadata.get("timecode")]
    except (OSError, av.FFmpegError) as exc:
        raise MediaError(f"cannot read its timecode ({exc})", path) from exc
    for text in candidates:
        match = TIMECODE_PATTERN.match((text or "").strip())
        if match:
            hours, minutes, seconds, separator, frames = match.groups()
            drop = separator != ":"
            return f"{int(hours):02d}:{minutes}:{seconds}{';' if drop else ':'}{frames}"
    return None
