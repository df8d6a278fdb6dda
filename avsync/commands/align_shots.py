"""``avsync align SHOT [SHOT ...] MUSIC --out-dir DIR``: many shots against one song.

Everything cheap is checked first, before torch loads: the options, the music, every output path
(each shot's report and plot, the summary, the timeline). A shot that cannot be aligned is
reported and skipped; the others go on, and the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from avsync.commands.checks import check_options, check_outputs, song_cache
from avsync.errors import AvsyncError
from avsync.pipeline.checks import check_reference
from avsync.pipeline.resume import batch_key, read_report, stale_files, written_files
from avsync.pipeline.shot_files import collect_shots
from avsync.pipeline.shots import (
    BatchSettings,
    Shot,
    ShotOutcome,
    align_shots,
    format_table,
    name_shots,
    output_paths,
    resumed_outcome,
    song_span,
    summary_paths,
    with_keys,
)
from avsync.shards import in_shard, parse_shard

if TYPE_CHECKING:
    from avsync.pipeline.timeline import ShotPlacement

SINGLE_OUTPUTS = (("-o", "output"), ("--report", "report"), ("--plot", "plot"), ("--span", "span"))


def run_shots(args: argparse.Namespace) -> int:
    """Check everything cheap, align the shots, write the summary (and timeline); returns the exit status."""
    started = time.perf_counter()
    for option, name in SINGLE_OUTPUTS:
        if getattr(args, name) is not None:
            raise AvsyncError(f"{option} is for one video; with --out-dir each shot's files go into that folder")
    if args.out_dir is None:
        raise AvsyncError("several videos need --out-dir DIR (each shot's report and plot, and the summary, go there)")
    if args.jobs < 1:
        raise AvsyncError(f"--jobs must be at least 1, got {args.jobs}")
    if args.timeline_fps is not None and not 1 <= args.timeline_fps <= 240:
        raise AvsyncError(f"--timeline-fps must be between 1 and 240, got {args.timeline_fps:g}")
    check_options(args)
    if args.timeline is not None:
        from avsync.pipeline.timeline import check_timeline_path, start_frames

        check_timeline_path(args.timeline)
        if args.timeline_start is not None:
            start_frames(args.timeline_start, args.timeline_fps or 25.0)  # a bad timecode ends here; its frames need the rate
    elif args.timeline_start is not None or args.relative_paths:
        raise AvsyncError(f"{'--timeline-start' if args.timeline_start is not None else '--relative-paths'} needs --timeline FILE")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise AvsyncError("--out-dir is a file; give a folder", args.out_dir)
    shard = parse_shard(args.shard) if args.shard is not None else (0, 1)
    if args.timeline is not None and shard[1] > 1:
        raise AvsyncError("--timeline needs every shot, not one shard: run the shards with --cache DIR, then once "
                          "without --shard with the same --cache (the features are reused) to write the timeline")
    music_duration = check_reference(args.music).duration
    if args.vocal is not None:
        check_reference(args.vocal)
    found = collect_shots(args.video, recursive=args.recursive, out_dir=args.out_dir)
    for note in found.notes:
        print(f"avsync align: {note}")
    all_shots = name_shots(found.paths)
    shots = [shot for shot in all_shots if in_shard(shot.name, shard)]
    references = {os.path.realpath(path) for path in (args.music, args.vocal) if path is not None}
    for shot in shots:
        if os.path.realpath(shot.path) in references:
            raise AvsyncError("is given both as a shot and as the music", shot.path)
    render = args.render or (args.timeline is not None and args.mode == "warp")
    settings = BatchSettings(music=args.music, vocal=args.vocal, out_dir=args.out_dir,
                             checkpoint=None if args.checkpoint is None else os.fspath(args.checkpoint), device=args.device,
                             mode=args.mode, render=render, face=args.face, cache_dir=args.cache, song_cache=song_cache(args),
                             progress=not args.quiet and args.jobs == 1, force=args.force,
                             camera_audio=not args.ignore_camera_audio)  # fmt: skip
    base = batch_key(args.music, args.vocal, settings.checkpoint, {"mode": settings.mode, "render": settings.render,
                                                                   "face": settings.face, "span": "video",
                                                                   "camera_audio": settings.camera_audio})  # fmt: skip
    shots = with_keys(shots, base)
    kept = {} if args.force else {shot.name: outcome for shot in shots if (outcome := resumed_outcome(shot, settings))}
    to_align = [shot for shot in shots if shot.name not in kept]
    settings = replace(settings, replaceable=frozenset(_check_batch_outputs(args, to_align, settings, shard)))
    if not shots:
        print(f"avsync align: shard {shard[0]}/{shard[1]} has none of the {len(all_shots)} shots; nothing to do")
        return 0
    if kept:
        print(f"avsync align: skipped {len(kept)} of {len(shots)} shot{'s' if len(shots) != 1 else ''} whose reports are "
              "current (same take, music, model and options; --force redoes them)", flush=True)  # fmt: skip
    aligned = iter(_align_with_progress(to_align, settings, args) if to_align else [])
    outcomes = [kept[shot.name] if shot.name in kept else next(aligned) for shot in shots]
    return _finish(args, outcomes, settings, shard, music_duration, started)


def _check_batch_outputs(args: argparse.Namespace, shots: list[Shot], settings: BatchSettings,
                         shard: tuple[int, int]) -> set[str]:  # fmt: skip
    """Refuse outputs that would overwrite an input or each other, or a file avsync did not write there without --force.

    Files an earlier run wrote (its summary's list, each take's report's list, the summary itself)
    are replaced without --force: resuming redoes what is out of date.

    Returns:
        The absolute paths of those files.
    """
    outputs: dict[str, Path | None] = {}
    for shot in shots:
        for kind, path in output_paths(shot, settings).items():
            outputs[f"{shot.path.name}'s {kind}"] = path
    summaries = summary_paths(args.out_dir, shard)
    for path in summaries.values():
        outputs[f"--out-dir {path.name}"] = path
    outputs["--timeline"] = args.timeline
    if args.timeline is not None:  # an earlier EDL timeline's other tracks are replaced with it
        from avsync.pipeline.timeline import edl_track_files

        for sibling in edl_track_files(args.timeline):
            outputs[f"--timeline's track file {sibling.name}"] = sibling
    sources = [shot.path for shot in shots] + [path for path in (args.music, args.vocal) if path is not None]
    ours = _written_before(shots, settings, summaries["json"])
    check_outputs({option: path for option, path in outputs.items() if path is not None and os.path.abspath(path) in ours},
                  sources, force=True)  # fmt: skip
    check_outputs({option: path for option, path in outputs.items() if path is None or os.path.abspath(path) not in ours},
                  sources, args.force)  # fmt: skip
    return ours


def _written_before(shots: list[Shot], settings: BatchSettings, summary: Path) -> set[str]:
    """Absolute paths of the files an earlier run wrote here: from its summary, and from each take's report."""
    previous = written_files(summary)
    ours = {os.path.abspath(file) for files in previous.values() for file in files}
    if previous:
        ours |= {os.path.abspath(path) for path in summary_paths(summary.parent, _shard_of(summary)).values()}
    for shot in shots:
        report = read_report(output_paths(shot, settings)["report"])
        files = report.get("batch", {}).get("files") if report else None
        if isinstance(files, list):
            ours |= {os.path.abspath(file) for file in files if isinstance(file, str)}
    return ours


def _shard_of(summary: Path) -> tuple[int, int]:
    """The shard a summary file belongs to (`summary_paths`' names)."""
    parts = summary.stem.split(".shard-")
    if len(parts) == 2 and (numbers := parts[1].split("-of-")) and len(numbers) == 2 and all(n.isdigit() for n in numbers):
        return int(numbers[0]), int(numbers[1])
    return (0, 1)


def _align_with_progress(shots: list[Shot], settings: BatchSettings, args: argparse.Namespace) -> list[ShotOutcome]:
    total = len(shots)
    print(f"avsync align: {total} shot{'s' if total != 1 else ''} against {args.music}"
          f"{f' ({args.jobs} at once)' if args.jobs > 1 and total > 1 else ''}", flush=True)  # fmt: skip
    bar = tqdm(total=total, desc="shots", unit="shot", disable=args.quiet or settings.progress)
    finished = 0

    def on_done(index: int, outcome: ShotOutcome) -> None:
        nonlocal finished
        finished += 1
        line = f"[{finished}/{total}] {outcome.name}: {_describe(outcome)} ({outcome.seconds:.1f} s)"
        tqdm.write(line) if not bar.disable else print(line, flush=True)
        bar.update()

    try:
        return align_shots(shots, settings, jobs=args.jobs, on_done=on_done)
    finally:
        bar.close()


def _describe(outcome: ShotOutcome) -> str:
    if outcome.report is None:
        return f"failed: {outcome.error}"
    report = outcome.report
    if outcome.status == "no match":
        return f"no match (best confidence {report['confidence']:.2f})"
    start, end = song_span(report, outcome.mode)
    return f"music {start:.2f}-{end:.2f} s, offset {report['offset_s']:+.2f} s, confidence {report['confidence']:.2f} ({report['confidence_level']})"


def _finish(args: argparse.Namespace, outcomes: list[ShotOutcome], settings: BatchSettings, shard: tuple[int, int],
            music_duration: float, started: float) -> int:
    from avsync.pipeline.plots import plot_shots
    from avsync.pipeline.shots import write_summary

    written = summary_paths(args.out_dir, shard)
    timeline_files: list[Path] = []
    timeline_error: AvsyncError | None = None
    if args.timeline is not None:
        try:
            timeline_files = _write_timeline(args, outcomes, music_duration)
        except AvsyncError as exc:  # the summary is written all the same
            timeline_error = exc
    files = {outcome.shot: list(outcome.report.get("batch", {}).get("files", [])) for outcome in outcomes if outcome.report}
    files[""] = [os.path.abspath(path) for path in timeline_files]
    if args.force:  # an earlier run's files for takes no longer given, and its timeline when not written again
        previous = written_files(written["json"])
        timelines = {os.path.abspath(file) for file in previous.get("", [])}
        for stale in stale_files(previous, [outcome.shot for outcome in outcomes], [*timeline_files, *written.values()]):
            stale.unlink(missing_ok=True)
            what = "timeline, not written again" if os.path.abspath(stale) in timelines else "for a take no longer given"
            print(f"removed {stale} (an earlier run's {what})")
    run = {"mode": settings.mode, "rendered": settings.render, "shard": f"{shard[0]}/{shard[1]}",
           "checkpoint": settings.checkpoint or "shipped", "jobs": args.jobs,
           "resumed": sum(outcome.resumed for outcome in outcomes),
           "runtime_s": round(time.perf_counter() - started, 3)}  # fmt: skip
    write_summary(outcomes, written, os.fspath(args.music), run, files)
    plot_shots(outcomes, music_duration, written["png"], title=f"{len(outcomes)} shots on {args.music.name}")
    print(format_table(outcomes))
    for kind, path in written.items():
        print(f"wrote {kind} {path}")
    for path in timeline_files:
        print(f"wrote timeline {path}")
    if timeline_error is not None:
        raise timeline_error
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    counts = Counter(outcome.status for outcome in outcomes)
    print(f"{counts['placed']} placed, {counts['no match']} no match, {counts['failed']} failed "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    sys.stdout.flush()
    if failed:
        print(f"avsync: error: {len(failed)} of {len(outcomes)} shots failed: {', '.join(o.shot for o in failed)}", file=sys.stderr)
        return 1
    return 0


def _write_timeline(args: argparse.Namespace, outcomes: list[ShotOutcome], music_duration: float) -> list[Path]:
    """Place the placed shots on an editor's timeline; returns the files written (an EDL has one per video track)."""
    from avsync.pipeline.timeline import (
        UnplacedShot,
        build_timeline,
        placement_from_report,
        start_frames,
        write_timeline,
    )

    placements, unplaced = [], []
    for outcome in outcomes:
        report = outcome.report
        if report is None:
            unplaced.append(UnplacedShot(outcome.name, outcome.shot, f"failed: {outcome.error}"))
        elif outcome.status == "no match":
            unplaced.append(UnplacedShot(outcome.name, outcome.shot, f"no match (best confidence {report['confidence']:.2f})",
                                         report["confidence"], report["fps"], report["video_duration_s"],
                                         _media_start(outcome.shot, report["fps"])))  # fmt: skip
        else:
            media = outcome.shot if args.mode == "offset" else report.get("output")
            try:
                placement = placement_from_report(report, args.mode, _media_start(media, report["fps"]))
            except ValueError as exc:  # e.g. a shot that ends where the song starts
                unplaced.append(UnplacedShot(outcome.name, outcome.shot, str(exc), report["confidence"]))
                continue
            placements.append(replace(placement, camera=_camera_audio(report, placement, outcome.shot, args.mode)))
    rates = Counter(round(o.report["fps"], 3) for o in outcomes if o.report is not None)
    fps = args.timeline_fps or (rates.most_common(1)[0][0] if rates else 25.0)
    start = None if args.timeline_start is None else start_frames(args.timeline_start, fps)
    timeline = build_timeline(os.path.abspath(args.music), music_duration, placements, unplaced, fps, Path(args.timeline).stem,
                              start=start, frame_size=_frame_size(placements))  # fmt: skip
    return write_timeline(timeline, args.timeline, relative_paths=args.relative_paths)


def _camera_audio(report: dict, placement: ShotPlacement, shot: str, mode: str) -> ShotPlacement | None:
    """The original take at its offset, for its own sound's track, when it has one (else None)."""
    from avsync.pipeline.timeline import placement_from_report

    if (report.get("camera_audio") or {}).get("status") in (None, "no audio", "unreadable"):
        return None
    if mode == "offset":
        return placement
    try:
        return placement_from_report(report, "offset", _media_start(shot, report["fps"]))
    except ValueError:  # at its constant offset the take misses the song: nothing to hear on the cut
        return None


def _media_start(media: str | None, fps: float) -> float:
    """The start timecode of a shot's media in seconds (0 without one, or when it cannot be read)."""
    from avsync.errors import MediaError
    from avsync.io.timecode import start_timecode
    from avsync.pipeline.timeline import media_start_seconds

    if media is None:
        return 0.0
    try:
        return media_start_seconds(start_timecode(media), fps)
    except MediaError:
        return 0.0


def _frame_size(placements: list) -> tuple[int, int] | None:
    """The placed media's most common picture size (width, height), or None when none can be read."""
    from avsync.io.media import probe

    sizes: Counter[tuple[int, int]] = Counter()
    for placement in placements:
        try:
            info = probe(placement.media)
        except AvsyncError:
            continue
        if info.width and info.height:
            sizes[(info.width, info.height)] += 1
    return sizes.most_common(1)[0][0] if sizes else None
