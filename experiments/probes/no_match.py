"""How far a shot's best offset stands out when the song does / does not contain it.

Measures what `avsync.align.tuning.NO_MATCH_CONFIDENCE` rests on: each clip's video aligned
(the shipped model, the analysis `avsync align` runs) against a 3-minute track made of other
clips' audio, once with the clip's own audio inserted at a random place (a match: the offset
must come out at that place) and once without (no match: any placement is wrong).

Usage (from the repository root; features through the cache folder `cache`):
    .venv/bin/python experiments/probes/no_match.py real   # experiments/real_clips.jsonl, clips >= 4 s (needs ../shared/data)
    .venv/bin/python experiments/probes/no_match.py synth  # the 10 test songs of data/synth (make synth)
Prints one line per case and, at the end, how many matches and non-matches each threshold places.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from avsync.align.analysis import sync_features
from avsync.features.audio import MelConfig
from avsync.features.cache import FeatureCache
from avsync.features.extract import extract_audio
from avsync.features.manifest import read_manifest
from avsync.io import media
from avsync.models.checkpoints import load_model

SAMPLE_RATE = 16000
TRACK_S = 180.0
MIN_CLIP_S = 4.0
THRESHOLDS = (2.0, 2.5, 2.8, 3.0, 3.2)


def filler(pool: list[tuple[str, np.ndarray]], exclude: str, rng: np.random.Generator) -> np.ndarray:
    """TRACK_S seconds of the other clips' audio, in random order."""
    parts, total = [], 0
    while total < TRACK_S * SAMPLE_RATE:
        for index in rng.permutation(len(pool)):
            if pool[index][0] != exclude:
                parts.append(pool[index][1])
                total += len(pool[index][1])
    return np.concatenate(parts)[: int(TRACK_S * SAMPLE_RATE)]


def main(kind: str) -> None:
    rng = np.random.default_rng(0)
    cache = FeatureCache("cache")
    network = load_model(None, "cpu").network
    if kind == "real":
        records = read_manifest("experiments/real_clips.jsonl")
        pool_records = records
    else:
        every = sorted(read_manifest("data/synth"), key=lambda record: record.id)
        records = [record for record in every if record.split == "test"]
        pool_records = every[:40]
    pool = [(record.id, media.read_audio(record.audio or record.video, sample_rate=SAMPLE_RATE)) for record in pool_records]
    matches, strangers = [], []
    for record in records:
        own = media.read_audio(record.audio or record.video, sample_rate=SAMPLE_RATE)
        if len(own) < MIN_CLIP_S * SAMPLE_RATE:
            continue
        visual = cache.visual(record.video)
        other = filler(pool, record.id, rng)
        start_s = float(rng.uniform(10, TRACK_S - 10 - len(own) / SAMPLE_RATE))
        cut = int(start_s * SAMPLE_RATE)
        with_clip = np.concatenate([other[:cut], own, other[cut : len(other) - len(own)]])
        for track, truth in ((with_clip, record.av_offset - round(start_s * 25)), (other, None)):
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "track.wav"
                media.write_audio(path, track.astype(np.float32), SAMPLE_RATE)
                audio = extract_audio(path, MelConfig())
            sync = sync_features(visual.mouth_crops, visual.valid, audio.log_mel, network, landmarks=visual.landmarks, fps=visual.fps)
            if truth is None:
                strangers.append(sync.confidence)
                print(f"{record.id}: not in the track, confidence {sync.confidence:.2f}", flush=True)
            else:
                right = abs(sync.offset_frames - truth) <= 1
                matches.append((sync.confidence, right))
                print(f"{record.id}: in the track, confidence {sync.confidence:.2f}, offset {'right' if right else 'wrong'}", flush=True)
    confidences = np.array([confidence for confidence, _ in matches])
    right = np.array([ok for _, ok in matches])
    print(f"{len(matches)} clips; offset right (+-1 frame) in the track: {right.sum()}; "
          f"not in the track: max confidence {max(strangers):.2f}, median {np.median(strangers):.2f}")
    for threshold in THRESHOLDS:
        placed = confidences >= threshold
        print(f"threshold {threshold}: placed {placed.sum()} of {len(matches)} in the track ({(placed & right).sum()} right), "
              f"{sum(c >= threshold for c in strangers)} of {len(strangers)} not in it")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "synth")
