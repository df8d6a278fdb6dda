"""Probe: the takes benchmark's synthetic cases when each take also carries its playback as heard by a camera.

The cases of ``make eval-takes`` (seeds 2-3: the reported ones; the take sounds' settings were
chosen on experiments/probes/camera_audio.py's seed 0) are aligned by the shipped model as the
benchmark does, once by the lips alone and once with the take's own sound: the source song's mix
under each of the take's frames (a cut or freeze repeats its sound, as a re-edited clip's would),
through a 0.8-s reverb at 0 dB noise, matched against the reference
(`avsync.align.audio_match`); where it is the music, its candidates go to `align_cost`, and a take
the lips cannot place takes the sound's offset (what `avsync.pipeline.sync.analyse` does).

Prints, per kind: placed within +-1 frame and within 0.5 s, and "no match" (neither witness places
it), each way.

Usage: python experiments/probes/camera_audio_takes.py [TAKES_MANIFEST] [CACHE]   (defaults: data/takes/manifest.jsonl, cache)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from avsync.align.analysis import align_cost
from avsync.align.audio_match import match_audio
from avsync.align.cost import cost_matrix
from avsync.align.place import is_match
from avsync.align.robust import scored_rows
from avsync.conventions import FPS, SAMPLE_RATE
from avsync.evaluation.takes import make_take_cases, take_reference
from avsync.features.audio import log_mel, voiced_frames
from avsync.features.cache import FeatureCache
from avsync.features.manifest import read_manifest
from avsync.io.media import read_audio
from avsync.models.runtime import load_inference_model

sys.path.insert(0, str(Path(__file__).parent))
from camera_audio import degrade  # noqa: E402

SAMPLES_PER_FRAME = SAMPLE_RATE // int(FPS)


def take_sound(song: np.ndarray, src_index: np.ndarray) -> np.ndarray:
    """The song's samples under each of the take's frames, one frame's worth each."""
    pieces = [song[max(0, i) * SAMPLES_PER_FRAME : (max(0, i) + 1) * SAMPLES_PER_FRAME] for i in src_index]
    return np.concatenate([np.pad(p, (0, SAMPLES_PER_FRAME - len(p))) for p in pieces]).astype(np.float32)


def main(manifest: str = "data/takes/manifest.jsonl", cache_dir: str = "cache") -> None:
    cache = FeatureCache(cache_dir)
    network = load_inference_model(None, "cpu").network
    records = read_manifest(manifest)
    songs = {record.id: read_audio(take_reference(record), sample_rate=SAMPLE_RATE) for record in records}
    rng = np.random.default_rng(0)
    rows_out: dict[str, dict[str, list]] = {}
    for case in make_take_cases(records, records, cache, f"{cache_dir}/cases", real=False, seeds=(2, 3)):
        features = case.features(cache)
        rows, voiced = scored_rows(features.valid), voiced_frames(features.log_mel)
        cost = cost_matrix(network, features.mouth_crops, features.log_mel, landmarks=features.landmarks, video_valid=rows,
                           ref_active=voiced)  # fmt: skip
        sound = degrade("reverb+noise", take_sound(songs[case.clip_id], case.frame_map.src_index), rng, songs[case.clip_id])
        match = match_audio(np.asarray(log_mel(sound.astype(np.float32))), features.log_mel)
        heard = match is not None and match.confident
        lips = align_cost(cost, rows, voiced, landmarks=features.landmarks)
        both = align_cost(cost, rows, voiced, landmarks=features.landmarks,
                          candidates=[c * FPS for c in match.candidates_s] if heard else None)  # fmt: skip
        both_offset = both.offset_frames if is_match(both.confidence) or not heard else match.offset_s * FPS
        truth = case.true_offset_frames
        entry = rows_out.setdefault(case.kind, {k: [] for k in ("lips1", "lips05", "both1", "both05", "lipsnm", "bothnm")})
        entry["lips1"].append(abs(lips.offset_frames - truth) <= 1)
        entry["lips05"].append(abs(lips.offset_frames - truth) <= 0.5 * FPS)
        entry["both1"].append(abs(both_offset - truth) <= 1)
        entry["both05"].append(abs(both_offset - truth) <= 0.5 * FPS)
        entry["lipsnm"].append(not is_match(lips.confidence))
        entry["bothnm"].append(not is_match(both.confidence) and not heard)
        print(f"{case.name}: sound {'-' if match is None else f'{match.confidence:.1f}'}", file=sys.stderr)
    print(f"{'kind':<10} {'n':>3}  placed +-1 frame lips / with sound   within 0.5 s lips / with sound   no match lips / with sound")
    for kind, entry in rows_out.items():
        mean = {k: np.mean(v) for k, v in entry.items()}
        print(f"{kind:<10} {len(entry['lips1']):3d}  {mean['lips1']:16.2f} / {mean['both1']:.2f}   {mean['lips05']:14.2f} / "
              f"{mean['both05']:.2f}   {mean['lipsnm']:12.2f} / {mean['bothnm']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:])
