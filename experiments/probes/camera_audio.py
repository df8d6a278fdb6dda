"""Probe: how well a take's own sound places it in the music (`avsync.align.audio_match`, docs/takes.md).

Takes of 3, 5, 10 and 30 s are cut from the synthetic songs of ``make eval-takes`` (their mixes)
and from the real clips' audio in a row (the reference ``make eval-takes-real`` writes), passed
through what a camera microphone does to playback, and matched against the whole song:

* ``clean``: the mix as it is;
* ``quiet+noise``: 30 dB quieter, white noise at 10 dB SNR;
* ``reverb+noise``: a 0.8-s reverb tail (RT60), noise at 0 dB SNR;
* ``phone``: 300-3400 Hz, reverb, noise at -5 dB SNR;
* ``talk``: another song's vocal over it at 0 dB, noise at 5 dB SNR.

Negatives (should not be confident): the same takes of another song, a real clip's speech against
a song, a song against the real clips' reference, and noise alone. Prints, per condition, the
share within 1 and 2 video frames (25 fps) and the confidences; then, for each threshold, the
share of positives above it and of negatives above it.

Usage: python experiments/probes/camera_audio.py [TAKES_MANIFEST] [REAL_REFERENCE_WAV] [--seed N]
(defaults: data/takes/manifest.jsonl, the largest cache/cases/reference_*clips_*.wav)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from avsync.align.audio_match import match_audio
from avsync.conventions import SAMPLE_RATE
from avsync.evaluation.takes import take_reference
from avsync.features.audio import log_mel
from avsync.features.manifest import read_manifest
from avsync.io.media import read_audio

TAKE_SECONDS = (3, 5, 10, 30)
CONDITIONS = ("clean", "quiet+noise", "reverb+noise", "phone", "talk")


def _mel(samples: np.ndarray) -> np.ndarray:
    return np.asarray(log_mel(samples.astype(np.float32)))


def _noise(rng: np.random.Generator, signal: np.ndarray, snr_db: float) -> np.ndarray:
    power = float(np.mean(signal**2)) + 1e-12
    return rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(signal))


def _reverb(rng: np.random.Generator, signal: np.ndarray, rt60: float = 0.8) -> np.ndarray:
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    response = rng.normal(0.0, 1.0, len(t)) * np.exp(-6.9 * t / rt60)
    response[0] = 4.0  # the direct sound
    wet = fftconvolve(signal, response)[: len(signal)]
    return wet / (np.abs(wet).max() + 1e-9) * np.abs(signal).max()


def degrade(condition: str, take: np.ndarray, rng: np.random.Generator, talk: np.ndarray) -> np.ndarray:
    if condition == "clean":
        return take
    if condition == "quiet+noise":
        quiet = take * 10 ** (-30 / 20)
        return quiet + _noise(rng, quiet, 10)
    if condition == "reverb+noise":
        wet = _reverb(rng, take)
        return wet + _noise(rng, wet, 0)
    if condition == "phone":
        band = sosfilt(butter(4, [300, 3400], "bandpass", fs=SAMPLE_RATE, output="sos"), _reverb(rng, take))
        return band + _noise(rng, band, -5)
    if condition == "talk":
        voice = talk[: len(take)] * np.sqrt(np.mean(take**2) / (np.mean(talk[: len(take)] ** 2) + 1e-12))
        mixed = take + voice
        return mixed + _noise(rng, mixed, 5)
    raise ValueError(condition)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default="data/takes/manifest.jsonl")
    parser.add_argument("real", nargs="?", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    records = read_manifest(args.manifest)
    root = Path(args.manifest).parent
    songs = [read_audio(root / take_reference(record), sample_rate=SAMPLE_RATE) for record in records]
    vocals = [read_audio(root / record.vocal, sample_rate=SAMPLE_RATE) for record in records]
    real_path = args.real or max(Path("cache/cases").glob("reference_*clips_*.wav"), key=lambda p: p.stat().st_size)
    real = read_audio(real_path, sample_rate=SAMPLE_RATE)
    references = [("synthetic", index, song) for index, song in enumerate(songs)] + [("real", -1, real)]
    mels = {index: _mel(song) for _, index, song in references}
    errors: dict[tuple[str, str], list[float]] = {}
    positives: dict[tuple[str, str], list[float]] = {}
    negatives: dict[str, list[float]] = {}
    lengths: dict[tuple[str, str], list[int]] = {}
    for source, index, song in references:
        for seconds in TAKE_SECONDS:
            length = seconds * SAMPLE_RATE
            for _ in range(2 if source == "synthetic" else 8):
                start = int(rng.integers(0, len(song) - length))
                take = song[start : start + length]
                talk = vocals[int(rng.integers(len(vocals)))]
                for condition in CONDITIONS:
                    match = match_audio(_mel(degrade(condition, take, rng, talk)), mels[index])
                    key = (source, condition)
                    lengths.setdefault(key, []).append(seconds)
                    if match is None:
                        errors.setdefault(key, []).append(np.inf)
                        positives.setdefault(key, []).append(0.0)
                        continue
                    errors.setdefault(key, []).append(abs(match.offset_s + start / SAMPLE_RATE) * 25)
                    positives.setdefault(key, []).append(match.confidence)
                # negatives: another source's take of the same length, degraded alike
                other = songs[(index + 1) % len(songs)] if source == "synthetic" else songs[int(rng.integers(len(songs)))]
                other_start = int(rng.integers(0, len(other) - length))
                kinds = {"another song": other[other_start : other_start + length],
                         "noise": rng.normal(0, 0.1, length)}  # fmt: skip
                if source == "synthetic":
                    speech_start = int(rng.integers(0, len(real) - length))
                    kinds["speech vs song"] = real[speech_start : speech_start + length]
                for kind, audio in kinds.items():
                    condition = CONDITIONS[int(rng.integers(len(CONDITIONS)))]
                    match = match_audio(_mel(degrade(condition, audio, rng, vocals[0])), mels[index])
                    negatives.setdefault(f"{kind} ({source})", []).append(0.0 if match is None else match.confidence)
    print(f"{'source':<10} {'condition':<13} {'n':>3} {'<=1 fr':>7} {'<=2 fr':>7} {'err ms':>7} {'conf min':>8} {'median':>7}")
    for (source, condition), errs in errors.items():
        errs_a, conf = np.array(errs), np.array(positives[(source, condition)])
        print(f"{source:<10} {condition:<13} {len(errs):3d} {np.mean(errs_a <= 1):7.2f} {np.mean(errs_a <= 2):7.2f} "
              f"{40 * np.median(errs_a):7.1f} {conf.min():8.1f} {np.median(conf):7.1f}")  # fmt: skip
    by_length: dict[int, list[bool]] = {}
    for (source, condition), errs in errors.items():
        for seconds, err in zip(lengths[(source, condition)], errs, strict=True):
            by_length.setdefault(seconds, []).append(err <= 1)
    print("within 1 frame by take length:", {k: round(float(np.mean(v)), 2) for k, v in sorted(by_length.items())})
    for kind, conf in negatives.items():
        conf_a = np.array(conf)
        print(f"negative {kind:<24} n={len(conf_a):3d} confidence median {np.median(conf_a):5.1f} max {conf_a.max():5.1f}")
    all_pos = np.concatenate([np.array(v) for v in positives.values()])
    right = np.concatenate([np.array(errors[k]) <= 1 for k in positives])
    all_neg = np.concatenate([np.array(v) for v in negatives.values()])
    for threshold in (5, 5.5, 6, 6.5, 7, 8, 10):
        print(f"threshold {threshold:>3}: positives above {np.mean(all_pos >= threshold):.3f} (of those right +-1 frame "
              f"{np.mean(right[all_pos >= threshold]):.3f}), negatives above {np.mean(all_neg >= threshold):.3f} of {len(all_neg)}")


if __name__ == "__main__":
    main()
