"""Window pairs for training: a 16-frame mouth window with the audio at the same time or shifted.

A positive pairs the mouth window starting at frame `k` with the audio window starting at `k`; a
negative with the audio starting at `k + shift` of the same clip, `shift != 0`: hard negatives are
1-3 frames off, easy ones up to several seconds, in either direction. Windows containing a frame
without a usable face, and audio windows that are mostly silent, are never used.

Everything here works on in-memory arrays (`avsync.features.extract.ClipFeatures`), so it is testable
without media files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from avsync.features.audio import LOG_OFFSET, SILENCE_DB, voiced_frames
from avsync.features.cache import ClipFeatures
from avsync.models.layers import MELS_PER_FRAME, WINDOW_FRAMES


@dataclass(frozen=True)
class ShiftConfig:
    """Which windows and shifts are drawn.

    Attributes:
        hard_max: hard negatives are shifted by 1..hard_max frames.
        easy_max: easy negatives are shifted by hard_max+1..easy_max frames (75 = 3 s at 25 fps).
        hard_fraction: share of negatives that are hard.
        min_voiced: an audio window is used only if at least this share of its frames is voiced.
        silence_db: a frame is voiced when its power is within this many dB of the clip's loud
            frames (99th percentile).
    """

    hard_max: int = 3
    easy_max: int = 75
    hard_fraction: float = 0.5
    min_voiced: float = 0.5
    silence_db: float = SILENCE_DB


@dataclass(frozen=True)
class WindowPair:
    """A sampled pair: mouth window at `video_start`, audio window at `audio_start` (same clip)."""

    clip_index: int
    video_start: int
    audio_start: int

    @property
    def shift(self) -> int:
        """Audio start minus video start, in frames (0 for a positive)."""
        return self.audio_start - self.video_start

    @property
    def label(self) -> float:
        """1.0 for a positive (in sync), 0.0 for a negative."""
        return float(self.shift == 0)


def window_share(flags: np.ndarray, length: int = WINDOW_FRAMES) -> np.ndarray:
    """Share of True in every window of `length` frames.

    Args:
        flags: bool `[T]`.
        length: window length in frames.

    Returns:
        float `[max(T - length + 1, 0)]`: entry `k` covers frames `k .. k+length-1`.
    """
    if flags.shape[0] < length:
        return np.zeros(0)
    sums = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return (sums[length:] - sums[:-length]) / length


class WindowSampler:
    """Draws positive and shifted-negative window pairs from a set of clips.

    Args:
        clips: the clips to draw from.
        shifts: window and shift rules.
        max_offset: evaluation windows keep +-max_offset frames of audio around them (`item(context=True)`).
    """

    def __init__(self, clips: Sequence[ClipFeatures], shifts: ShiftConfig, max_offset: int = 15) -> None:
        self.clips = list(clips)
        self.shifts = shifts
        self.max_offset = max_offset
        self.video_ok: list[np.ndarray] = []  # bool [T-15]: mouth window usable and its own audio voiced
        self.audio_ok: list[np.ndarray] = []  # bool [T-15]: audio window voiced enough
        for clip in self.clips:
            voiced_share = window_share(voiced_frames(clip.log_mel, shifts.silence_db))
            audio_ok = voiced_share >= shifts.min_voiced
            self.audio_ok.append(audio_ok)
            self.video_ok.append((window_share(clip.valid.astype(bool)) == 1.0) & audio_ok)
        self.starts = [np.flatnonzero(ok) for ok in self.video_ok]

    @property
    def usable_windows(self) -> int:
        """Number of (clip, start) mouth windows that can be drawn."""
        return int(sum(ok.sum() for ok in self.video_ok))

    def _negative_shifts(self) -> tuple[np.ndarray, np.ndarray]:
        hard = np.arange(1, self.shifts.hard_max + 1)
        easy = np.arange(self.shifts.hard_max + 1, self.shifts.easy_max + 1)
        return np.concatenate([hard, -hard]), np.concatenate([easy, -easy])

    def draw(self, rng: np.random.Generator, positive: bool, starts: Sequence[np.ndarray] | None = None) -> WindowPair:
        """Draw one pair.

        Args:
            rng: the random generator (the caller seeds it for reproducibility).
            positive: draw an in-sync pair (True) or a shifted negative (False).
            starts: per clip, the allowed mouth-window starts (default: every usable one).

        Returns:
            The pair. Raises `ValueError` when no usable pair exists.
        """
        starts = self.starts if starts is None else starts
        counts = np.array([len(s) for s in starts], dtype=np.float64)
        if counts.sum() == 0:
            raise ValueError("no usable windows (every window has an invalid mouth frame or silent audio)")
        hard, easy = self._negative_shifts()
        for _ in range(1000):
            clip_index = int(rng.choice(len(starts), p=counts / counts.sum()))
            video_start = int(rng.choice(starts[clip_index]))
            if positive:
                return WindowPair(clip_index, video_start, video_start)
            pool = hard if (rng.random() < self.shifts.hard_fraction or easy.size == 0) else easy
            audio_ok = self.audio_ok[clip_index]
            audio_starts = video_start + pool
            allowed = audio_starts[(audio_starts >= 0) & (audio_starts < audio_ok.size)]
            allowed = allowed[audio_ok[allowed]]
            if allowed.size:
                return WindowPair(clip_index, video_start, int(rng.choice(allowed)))
        raise ValueError("no usable negative pairs (clips too short or mostly silent for the configured shifts)")

    def context_starts(self) -> list[np.ndarray]:
        """Per clip, usable mouth-window starts with +-max_offset frames of audio on both sides."""
        margin = self.max_offset
        result = []
        for clip, starts in zip(self.clips, self.starts):
            result.append(starts[(starts >= margin) & (starts + WINDOW_FRAMES + margin <= len(clip))])
        return result

    def fixed_pairs(self, count: int, seed: int) -> list[WindowPair]:
        """A deterministic, balanced evaluation set (half positives), every window with offset context.

        Args:
            count: number of pairs (rounded down to even).
            seed: the set depends on nothing else (and on the clips).
        """
        rng = np.random.default_rng(seed)
        starts = self.context_starts()
        return [self.draw(rng, positive=index % 2 == 0, starts=starts) for index in range(count - count % 2)]

    def item(self, pair: WindowPair, context: bool = False) -> dict[str, np.ndarray | float | int]:
        """The arrays of one pair.

        Args:
            pair: from `draw` or `fixed_pairs`.
            context: also return `mel_context`, the reference audio from `max_offset` frames before
                to `max_offset` frames after the mouth window (for offset accuracy).

        Returns:
            dict with `mouth` uint8 `[16, 64, 64]`, `log_mel` float32
            `[80, 64]`, `accompaniment` float32 `[80, 64]` (silence when the clip has none), `label`
            float32, `shift` int, and with `context` also `mel_context` and `accompaniment_context`
            float32 `[80, 4 * (16 + 2 * max_offset)]`.
        """
        clip = self.clips[pair.clip_index]
        audio = slice(MELS_PER_FRAME * pair.audio_start, MELS_PER_FRAME * (pair.audio_start + WINDOW_FRAMES))
        item: dict[str, np.ndarray | float | int] = {
            "mouth": np.ascontiguousarray(clip.mouth_crops[pair.video_start : pair.video_start + WINDOW_FRAMES]),
            "log_mel": np.ascontiguousarray(clip.log_mel[:, audio], dtype=np.float32),
            "accompaniment": self._accompaniment(clip, audio),
            "label": np.float32(pair.label),
            "shift": pair.shift,
        }
        if context:
            margin = self.max_offset
            columns = slice(MELS_PER_FRAME * (pair.video_start - margin), MELS_PER_FRAME * (pair.video_start + WINDOW_FRAMES + margin))
            item["mel_context"] = np.ascontiguousarray(clip.log_mel[:, columns], dtype=np.float32)
            item["accompaniment_context"] = self._accompaniment(clip, columns)
        return item

    @staticmethod
    def _accompaniment(clip: ClipFeatures, columns: slice) -> np.ndarray:
        """The accompaniment's log-mel at `columns`, or silence when the clip has none."""
        if clip.accompaniment_mel is None:
            return np.full((clip.log_mel.shape[0], columns.stop - columns.start), np.log(LOG_OFFSET), np.float32)
        return np.ascontiguousarray(clip.accompaniment_mel[:, columns], dtype=np.float32)
