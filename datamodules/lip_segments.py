"""Segments for sequence networks (LipSync): lip geometry and frame log-mel of the same stretch.

A segment is `segment_frames` video frames of one clip; its item holds their lip geometry with
`HALF_FIELD` frames of context on each side, the frame log-mel of the same frames with
`max_offset` more on each side, and a mask of which (frame, offset) pairs can be scored: the
audio frame exists and the video frame shows a face. Every frame is trained against every offset
at once, its own (0: the clips are in sync, audited offsets corrected by `load_clip`) being right.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from avsync.features.audio import frame_log_mel
from avsync.features.cache import ClipFeatures
from avsync.features.lips import lip_geometry
from avsync.models.lip_sync import HALF_FIELD


class SegmentSource:
    """The lip geometry and frame log-mel of each clip, and segments cut from them.

    Args:
        clips: the clips (with landmarks).
        segment_frames: video frames per segment.
        max_offset: offsets ``-max_offset .. max_offset`` are scored.

    Raises:
        ValueError: a clip without landmarks, or no clip with a face in a whole segment's length.
    """

    def __init__(self, clips: Sequence[ClipFeatures], segment_frames: int = 48, max_offset: int = 15) -> None:
        self.segment_frames, self.max_offset = segment_frames, max_offset
        self.lips, self.frames, self.valid, self.ids = [], [], [], []
        for clip in clips:
            if clip.landmarks is None:
                raise ValueError(f"clip {clip.id} has no landmarks to make lip geometry from")
            if not clip.valid.any():
                continue
            self.lips.append(lip_geometry(clip.landmarks))
            self.frames.append(frame_log_mel(clip.log_mel))
            self.valid.append(np.asarray(clip.valid, bool))
            self.ids.append(clip.id)
        if not self.lips:
            raise ValueError("no clip shows a face")
        lengths = np.array([len(valid) for valid in self.valid], np.float64)
        self.weights = lengths / lengths.sum()

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """A clip (by length) and a segment start in it."""
        clip = int(rng.choice(len(self.lips), p=self.weights))
        return clip, int(rng.integers(0, max(1, len(self.valid[clip]) - self.segment_frames + 1)))

    def item(self, clip: int, start: int) -> dict[str, np.ndarray]:
        """The arrays of one segment.

        Returns:
            ``lips`` float32 ``[S + 14, C]``, ``audio_frames`` float32 ``[S + 2K + 14, 80]`` and
            ``offset_mask`` bool ``[S, 2K + 1]`` (index ``K + d``: video frame ``i`` with audio
            frame ``i - d``; rows whose own offset cannot be scored are all False).
        """
        lips, frames, valid = self.lips[clip], self.frames[clip], self.valid[clip]
        size, reach = self.segment_frames, self.max_offset
        video = np.arange(start, start + size)
        lip_index = np.clip(np.arange(start - HALF_FIELD, start + size + HALF_FIELD), 0, len(lips) - 1)
        audio_index = np.clip(np.arange(start - reach - HALF_FIELD, start + size + reach + HALF_FIELD), 0, len(frames) - 1)
        audio_of = video[:, None] - np.arange(-reach, reach + 1)[None, :]
        mask = (audio_of >= 0) & (audio_of < len(frames)) & (video < len(valid))[:, None]
        mask &= np.concatenate([valid, np.zeros(size, bool)])[video][:, None]
        mask[~mask[:, reach]] = False
        return {"lips": lips[lip_index], "audio_frames": frames[audio_index], "offset_mask": mask}


class RandomSegments(Dataset):
    """Training segments drawn at random; key `k` gives the same segment every time (see `RandomPairs`).

    Args:
        source: the clips.
        length: segments per epoch.
        seed: base seed.
    """

    def __init__(self, source: SegmentSource, length: int, seed: int) -> None:
        self.source, self.length, self.seed = source, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int) -> dict[str, np.ndarray]:
        return self.source.item(*self.source.draw(np.random.default_rng([self.seed, int(key)])))


class FixedSegments(Dataset):
    """A deterministic set of segments (validation and test).

    Args:
        source: the clips.
        count: segments.
        seed: the set depends on nothing else (and on the clips).
    """

    def __init__(self, source: SegmentSource, count: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.source = source
        self.segments = [source.draw(rng) for _ in range(count)]

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.source.item(*self.segments[index])
