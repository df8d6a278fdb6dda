"""The take's own audio as a second witness: where the camera's microphone heard the playback.

When a take has an audio stream, it is matched against the music (`avsync.align.audio_match`).
Where it is confidently the music, its place (or its few candidate places, in a song that repeats
itself) narrows where the lips are searched (`avsync.align.analysis.align_cost`'s ``candidates``):
the lips then give the performance's own offset near it, and the report says how the two differ
("the singer is 2 frames late"). A take whose lips cannot be placed (too short, the face turned
away) is placed by its sound alone, at the constant offset the sound gives. Audio that is not the
music (another song, talk, silence) changes nothing: the lips alone decide, as without it.

``--ignore-camera-audio`` turns the witness off; `avsync check` never uses it (there the video's
own audio is what is checked).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from avsync.align.analysis import FeatureSync
from avsync.align.audio_match import COLUMNS_PER_S, AudioMatch, match_audio
from avsync.align.timemap import constant_time_map
from avsync.align.tuning import AUDIO_MIN_SECONDS
from avsync.errors import MediaError
from avsync.features.extract import AudioFeatures
from avsync.pipeline.checks import SyncInputs

STATUSES = ("matched", "not the music", "no audio", "too short", "unreadable")
AGREE_FRAMES = 1
"""Lips and sound within this many video frames agree."""


@dataclass(frozen=True)
class CameraAudio:
    """What the take's own audio says.

    Attributes:
        status: one of `STATUSES`: ``matched`` (confidently the music), ``not the music`` (matched
            nowhere), ``no audio`` (no audio stream, or silent), ``too short`` (under
            `avsync.align.tuning.AUDIO_MIN_SECONDS`), ``unreadable`` (the stream does not decode).
        match: the match (None unless the audio was compared).
    """

    status: str
    match: AudioMatch | None = None

    @property
    def matched(self) -> bool:
        """Whether the take's sound is confidently the music."""
        return self.status == "matched"

    def candidate_frames(self, fps: float) -> list[float]:
        """Offsets (frames at `fps`) where the sound puts the take; empty unless `matched`."""
        if not self.matched or self.match is None:
            return []
        return [offset * fps for offset in self.match.candidates_s]

    def lips_minus_audio_frames(self, lips_offset_s: float, fps: float) -> int | None:
        """How many frames (at `fps`) the lips' offset is later than the sound's; None unless `matched`."""
        if not self.matched or self.match is None:
            return None
        return round((lips_offset_s - self.match.offset_s) * fps)

    def agrees_with(self, lips_offset_s: float, fps: float) -> bool:
        """Whether the sound is the music and puts the video within `AGREE_FRAMES` of the lips' offset."""
        difference = self.lips_minus_audio_frames(lips_offset_s, fps)
        return difference is not None and abs(difference) <= AGREE_FRAMES


def listen(inputs: SyncInputs, music: AudioFeatures, cache_dir: str | os.PathLike[str] | None) -> CameraAudio:
    """Match the take's own audio against the music's log-mel.

    Args:
        inputs: the checked inputs (the take's header says whether it has audio).
        music: the music's features (the full mix: the camera heard the playback, not the vocal).
        cache_dir: feature cache folder, or None.
    """
    if not inputs.video_info.has_audio:
        return CameraAudio("no audio")
    from avsync.features.cache import audio_features

    try:
        take = audio_features(inputs.video, cache_dir)
    except MediaError:
        return CameraAudio("unreadable")
    match = match_audio(take.log_mel, music.log_mel)
    if match is None:
        too_short = take.log_mel.shape[1] < AUDIO_MIN_SECONDS * COLUMNS_PER_S
        return CameraAudio("too short" if too_short else "no audio")
    return CameraAudio("matched" if match.confident else "not the music", match)


def placed_by_sound(sync: FeatureSync, offset_s: float, fps: float) -> FeatureSync:
    """`sync` with the constant offset and time map of the take's sound (the lips could not place it).

    Args:
        sync: the lips' alignment (its cost, path and confidence are kept for the plot and report).
        offset_s: where the sound puts the take (``t_video - t_music``).
        fps: the features' frame rate.
    """
    n_frames = len(sync.cost)
    return replace(sync, offset_frames=offset_s * fps, time_map=constant_time_map(offset_s, (n_frames - 1) / fps, fps))


def report_block(camera: CameraAudio, lips_offset_s: float, placed_by: str | None, video_fps: float) -> dict:
    """The report's ``camera_audio`` block.

    Args:
        camera: from `listen`.
        lips_offset_s: the take's offset as reported (``t_video - t_music``).
        placed_by: ``lips``, ``camera audio`` or None (not placed).
        video_fps: the take's own frame rate (frames in the block are of it).

    Returns:
        ``status``; with a match also ``offset_s``, ``offset_frames``, ``confidence``,
        ``candidates_s`` (every place the sound fits, best first), ``agrees_with_lips`` and
        ``lips_minus_audio_frames`` (positive: the singer is late against the playback; null
        unless the lips placed the take).
    """
    block: dict = {"status": camera.status}
    match = camera.match
    if match is None:
        return block
    difference = camera.lips_minus_audio_frames(lips_offset_s, video_fps) if placed_by == "lips" else None
    block.update(offset_s=round(match.offset_s, 4), offset_frames=round(match.offset_s * video_fps),
                 confidence=round(match.confidence, 2), candidates_s=[round(offset, 3) for offset in match.candidates_s],
                 agrees_with_lips=None if difference is None else abs(difference) <= AGREE_FRAMES,
                 lips_minus_audio_frames=difference)  # fmt: skip
    return block
