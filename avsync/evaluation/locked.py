"""The locked test set: real clips of whole speakers that no choice sees (issue 21 item 4).

`draw_locked` picks the speakers by a fixed rule, so the pick is not a choice either:

1. candidates are the speakers none of whose clips is in the ``train`` or ``val`` split of any
   manifest a shipped member was trained or selected on (``experiments/realav_split.jsonl``: the
   shipped TwoTower's);
2. in the order of the SHA-256 of the speaker's name, a speaker is taken unless its clips last
   more than `MAX_SPEAKER_SECONDS` (the few long broadcast clips hold a third of all the real
   video: training needs them) or it would put more than `MAX_PER_ORIGIN` clips of one origin
   dataset into the set;
3. until the set holds a fifth of the clips, or no candidate is left.

``python -m avsync.evaluation.locked draw`` writes the manifests: ``experiments/locked_test.jsonl``
(the locked clips, split ``test``), ``experiments/real_open.jsonl`` (every other clip: what
choices, tuning and `make check-real` may see from now on), ``experiments/real_open_train.jsonl``
(the LipSync member's training manifest without the locked speakers) and the speaker folds of the
open clips, ``experiments/real_open_folds/``. ``python -m avsync.evaluation.locked check MANIFEST
...`` fails with one line when a locked speaker is in a manifest's ``train`` or ``val`` split
(`make eval-locked` runs it on what the evaluated model was trained on).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.features.manifest import base_id, read_manifest

LOCKED = Path("experiments/locked_test.jsonl")
"""The locked clips (split ``test``; ``#`` lines say how they were drawn)."""
MAX_SPEAKER_SECONDS = 30.0
"""A speaker with more video than this stays in the open set (training needs the long clips)."""
MAX_PER_ORIGIN = 2
"""At most this many locked clips of one origin dataset (several sources, none dominating)."""
SEEN_SPLITS = ("train", "val")
"""Splits a model learns from or is selected on."""


@dataclass(frozen=True)
class Clip:
    """What the draw needs of a clip.

    Attributes:
        id: clip id.
        speaker: who is on it.
        origin: its origin dataset (``clips.csv``'s ``origin_dataset``, first word).
        seconds: its length.
    """

    id: str
    speaker: str
    origin: str
    seconds: float


def draw_locked(clips: Sequence[Clip], seen_ids: set[str], share: float = 0.2) -> list[str]:
    """The locked speakers by the module's rule.

    Args:
        clips: every real clip.
        seen_ids: ids of the clips a shipped member trained or was selected on.
        share: the share of the clips to lock.

    Returns:
        The locked speakers in the order drawn.
    """
    by_speaker: dict[str, list[Clip]] = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    candidates = [s for s, own in by_speaker.items() if not any(c.id in seen_ids for c in own)]
    wanted = math.ceil(share * len(clips))
    locked: list[str] = []
    per_origin: dict[str, int] = {}
    count = 0
    for speaker in sorted(candidates, key=lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest()):
        if count >= wanted:
            break
        own = by_speaker[speaker]
        origins: dict[str, int] = {}
        for clip in own:
            origins[clip.origin] = origins.get(clip.origin, 0) + 1
        if sum(c.seconds for c in own) > MAX_SPEAKER_SECONDS:
            continue
        if any(per_origin.get(o, 0) + n > MAX_PER_ORIGIN for o, n in origins.items()):
            continue
        locked.append(speaker)
        count += len(own)
        for origin, n in origins.items():
            per_origin[origin] = per_origin.get(origin, 0) + n
    return locked


def speakers_in(manifest: str | os.PathLike[str], splits: Iterable[str] = SEEN_SPLITS) -> set[str]:
    """The speakers (the clip id where none is given) of a manifest's clips in `splits`."""
    wanted = set(splits)
    return {r.speaker or base_id(r.id) for r in read_manifest(manifest) if r.split in wanted}


def check_unseen(manifests: Sequence[str | os.PathLike[str]], locked: str | os.PathLike[str] = LOCKED) -> None:
    """Raise when a locked speaker is in a manifest's ``train`` or ``val`` split.

    Args:
        manifests: what a model was trained or selected on.
        locked: the locked manifest.

    Raises:
        AvsyncError: one line naming the manifest and the speakers it shares with the locked set.
    """
    locked_speakers = speakers_in(locked, ("test",))
    for manifest in manifests:
        shared = sorted(locked_speakers & speakers_in(manifest))
        if shared:
            raise AvsyncError(f"{len(shared)} locked speakers are in its train/val splits ({', '.join(shared[:3])}"
                              f"{', ...' if len(shared) > 3 else ''}): a model trained on it cannot be scored on the locked set",
                              manifest)  # fmt: skip


def _origin_table(video: Path) -> tuple[str, float]:
    """``(origin dataset, seconds)`` of a clip from the ``clips.csv`` of its folder or one above."""
    video = Path(os.path.abspath(video))
    for folder in video.parents:
        table = folder / "clips.csv"
        if table.is_file():
            with table.open(encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    if row["path"] == video.relative_to(folder).as_posix():
                        return row.get("origin_dataset", "").split(" (")[0].strip() or "unknown", float(row["duration_s"])
            break
    raise AvsyncError("not listed in a clips.csv of its folder (origin and length unknown)", video)


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]


def write_manifests(clips_manifest: Path, all_manifest: Path, seen_by: Sequence[Path], folds_json: Path, out: Path,
                    cache: Path) -> list[str]:  # fmt: skip
    """Draw the locked speakers and write the locked and open manifests and folds (module docstring).

    Args:
        clips_manifest: every real clip, once (``experiments/real_clips.jsonl``).
        all_manifest: the shipped LipSync's training manifest (``experiments/real_all.jsonl``).
        seen_by: manifests a shipped member was trained or selected on (their train/val clips are not candidates).
        folds_json: the speaker folds (``experiments/real_folds/folds.json``).
        out: the folder to write into (``experiments``).
        cache: feature cache (unused when the folds are given; `write_fold_manifests` takes it).

    Returns:
        The locked speakers.
    """
    from avsync.evaluation.folds import write_fold_manifests
    from avsync.io.files import atomic_path

    entries = _json_lines(clips_manifest)
    records = {r.id: r for r in read_manifest(clips_manifest)}
    clips = [Clip(e["id"], e.get("speaker") or e["id"], *_origin_table(records[e["id"]].video)) for e in entries]
    seen_ids = {e["id"] for path in seen_by for e in _json_lines(path) if e.get("split") in SEEN_SPLITS}
    locked = draw_locked(clips, seen_ids)
    is_locked = {c.id for c in clips if c.speaker in set(locked)}
    header = ["# The locked test set (issue 21 item 4; docs/real_faces.md, 'The locked test set'): whole speakers that no",
              "# choice sees. Drawn by avsync.evaluation.locked.draw_locked (python -m avsync.evaluation.locked draw):",
              f"# speakers in no train/val split of {', '.join(p.as_posix() for p in seen_by)}, in SHA-256 order of the name,",
              f"# at most {MAX_SPEAKER_SECONDS:g} s each and {MAX_PER_ORIGIN} clips per origin dataset, until a fifth of the clips.",
              f"# Speakers: {'; '.join(locked)}. Evaluated by make eval-locked only."]  # fmt: skip

    def write(path: Path, lines: list[str]) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    write(out / "locked_test.jsonl", header + [json.dumps({**e, "split": "test"}) for e in entries if e["id"] in is_locked])
    write(out / "real_open.jsonl", [json.dumps(e) for e in entries if e["id"] not in is_locked])
    write(out / "real_open_train.jsonl", [json.dumps(e) for e in _json_lines(all_manifest) if base_id(e["id"]) not in is_locked])
    folds = [[s for s in fold if s not in set(locked)] for fold in json.loads(folds_json.read_text(encoding="utf-8"))]
    write_fold_manifests(out / "real_open.jsonl", cache, out / "real_open_folds", folds=folds)
    write(out / "real_open_folds" / "folds.json", [json.dumps(folds, indent=1)])
    return locked


def main(argv: Sequence[str] | None = None) -> int:
    """``draw`` (write the manifests) or ``check MANIFEST ...`` (no locked speaker trained on)."""
    parser = argparse.ArgumentParser(prog="python -m avsync.evaluation.locked", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    draw = sub.add_parser("draw", help="draw the locked speakers and write the manifests into experiments/")
    draw.add_argument("--out", type=Path, default=Path("experiments"))
    draw.add_argument("--cache", type=Path, default=Path("cache"))
    check = sub.add_parser("check", help="fail when a locked speaker is in a manifest's train or val split")
    check.add_argument("manifests", nargs="+", type=Path)
    check.add_argument("--locked", type=Path, default=LOCKED)
    args = parser.parse_args(argv)
    try:
        if args.command == "draw":
            folder = args.out
            locked = write_manifests(folder / "real_clips.jsonl", folder / "real_all.jsonl", [folder / "realav_split.jsonl"],
                                     folder / "real_folds" / "folds.json", folder, args.cache)  # fmt: skip
            print(f"{len(locked)} locked speakers: {'; '.join(locked)}")
        else:
            check_unseen(args.manifests, args.locked)
            print(f"no locked speaker in the train/val splits of {len(args.manifests)} manifests")
    except AvsyncError as exc:
        print(f"avsync: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
