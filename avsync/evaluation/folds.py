"""Cross-validation folds by speaker: every person is held out once, never seen in training.

`speaker_folds` deals the speakers of a manifest into `k` folds of about equal video length
(longest speaker first, each to the lightest fold), deterministically. `write_fold_manifests`
writes one manifest per fold: the fold's speakers are its ``test`` split, everyone else ``train``
(``val`` is the test split too: fold experiments train a fixed number of epochs and keep the last
checkpoint, so nothing is chosen on the held-out speakers). Run each fold's training and
`avsync eval --protocol real --split test`, then pool the folds' results with `avsync eval --pool`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError
from avsync.features.cache import FeatureCache
from avsync.features.manifest import ClipRecord, read_manifest, write_manifest


def speaker_folds(records: Sequence[ClipRecord], lengths: dict[str, int], k: int = 5) -> list[list[str]]:
    """Speakers dealt into `k` folds of about equal length.

    Args:
        records: the clips (a clip without a speaker is a speaker of its own).
        lengths: clip id -> frames.
        k: number of folds.

    Returns:
        The speakers of each fold, sorted.
    """
    frames: dict[str, int] = {}
    for record in records:
        speaker = record.speaker or record.id
        frames[speaker] = frames.get(speaker, 0) + lengths.get(record.id, 0)
    if len(frames) < k:
        raise AvsyncError(f"{len(frames)} speakers cannot make {k} folds")
    folds: list[list[str]] = [[] for _ in range(k)]
    load = np.zeros(k)
    for speaker in sorted(frames, key=lambda s: (-frames[s], s)):
        lightest = int(np.argmin(load))
        folds[lightest].append(speaker)
        load[lightest] += frames[speaker]
    return [sorted(fold) for fold in folds]


def write_fold_manifests(manifest: str | os.PathLike[str], cache: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                         k: int = 5, folds: Sequence[Sequence[str]] | None = None) -> list[Path]:
    """One manifest per fold (``fold0.jsonl`` ...): the fold's speakers as ``test`` and ``val``, the rest ``train``.

    Args:
        manifest: all clips (JSONL or a folder `read_manifest` reads).
        cache: feature cache (clip lengths come from the cached visual features).
        out_dir: where the fold manifests go.
        k: number of folds.
        folds: the speakers of each fold, when given (else `speaker_folds` deals them).

    Returns:
        The manifest paths.
    """
    records = read_manifest(manifest)
    if folds is None:
        feature_cache = FeatureCache(cache)
        folds = speaker_folds(records, {record.id: len(feature_cache.visual(record.video)) for record in records}, k)
    known = {record.speaker or record.id for record in records}
    dealt = [speaker for fold in folds for speaker in fold]
    if sorted(dealt) != sorted(known):
        raise AvsyncError(f"the folds must hold every speaker of the manifest once ({len(dealt)} dealt, {len(known)} known)", manifest)
    folder = Path(out_dir)
    paths = []
    for index, fold in enumerate(folds):
        held_out = set(fold)
        fold_records = [replace(r, split="test" if (r.speaker or r.id) in held_out else "train") for r in records]
        fold_records += [replace(r, id=f"{r.id}#val", split="val") for r in fold_records if r.split == "test"]
        path = folder / f"fold{index}.jsonl"
        write_manifest(fold_records, path)
        paths.append(path)
    return paths
