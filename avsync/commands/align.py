"""``avsync align VIDEO MUSIC``: sync a video to a music track by the lips; report, plot, MP4.

Everything cheap is checked before the heavy work and before torch is even imported (input
headers, output paths, the output folder), so a user mistake ends at once with one line and exit
status 2.
Outputs are written to temporary files and renamed only on success; inputs are never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from avsync.errors import AvsyncError
from avsync.io.files import keep_existing
from avsync.commands.checks import check_options, check_outputs, song_cache
from avsync.pipeline.checks import SPANS, check_inputs

if TYPE_CHECKING:
    from avsync.pipeline.sync import SyncAnalysis

MODES = ("warp", "offset")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``align`` subcommand."""
    parser = subparsers.add_parser(
        "align",
        help="sync a video (or many shots) to a music track by watching the lips",
        description="Align VIDEO to the reference track MUSIC by the singer's lips; where VIDEO's own audio is the "
        "music (playback heard by the camera), it places the take too and the lips give the performance's offset. "
        "Prints the offset, its confidence and how much of the video is re-timed; writes a JSON report, a "
        "PNG of the cost matrix and path, and with -o the synced video (H.264, MUSIC as AAC audio). "
        "Without -o it only analyses. Several shots (or a folder of them) with --out-dir: the model and the "
        "music load once, each shot gets its report and plot there, a summary table (JSON, CSV, PNG) and "
        "with --timeline an editor's timeline (OTIO, EDL, FCP 7 XML, FCPXML).",
    )
    parser.add_argument("video", metavar="VIDEO", type=Path, nargs="+",
                        help="the singer's video (any format PyAV opens); with --out-dir, any number of shots and folders of shots")
    parser.add_argument("music", metavar="MUSIC", type=Path, help="the reference track (wav, flac, mp3, m4a, or a video's audio)")
    parser.add_argument(
        "--vocal", metavar="VOCAL", type=Path,
        help="the isolated vocal of MUSIC, on the same timeline: the alignment uses it, the output keeps MUSIC "
        "as its audio (lips that move between sung lines are found reliably only against a vocal)",
    )  # fmt: skip
    parser.add_argument("-o", "--output", metavar="OUT.mp4", type=Path, help="write the synced video here")
    parser.add_argument("--report", metavar="REPORT.json", type=Path, help="write the JSON report here")
    parser.add_argument("--plot", metavar="PLOT.png", type=Path, help="write the cost matrix with the path here")
    parser.add_argument(
        "--mode", choices=MODES, default="warp",
        help="warp: re-time every frame by the time map (default); offset: apply only the constant offset, "
        "copying the video without re-encoding where possible",
    )  # fmt: skip
    parser.add_argument(
        "--span", choices=SPANS, default=None,
        help="what the synced video covers (warp mode): the whole music, holding the first/last frame where "
        "the video does not reach, or only the part of the music the video covers (faster); default: the whole "
        "music, or only the video's part when the video is a take somewhere inside a much longer song",
    )  # fmt: skip
    parser.add_argument("--checkpoint", metavar="CKPT", type=Path,
                        help="model checkpoint: a .ckpt path, 'latest' (the newest under runs/) or 'shipped' "
                        "(default: the model shipped with avsync)")
    parser.add_argument("--face", default="largest", metavar="WHICH",
                        help="the face to follow when several are in the picture: largest (default), left, right, "
                        "or X,Y (the face nearest that point, as fractions of the frame, e.g. 0.7,0.4)")
    parser.add_argument("--ignore-camera-audio", action="store_true",
                        help="do not match the video's own audio against the music (by default, where the camera heard "
                        "the playback, it places the take and the report compares it with the lips)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto). auto and cpu run the checkpoint's ONNX "
                        "export with onnxruntime when it has one (the shipped models do; make export writes one), else torch; "
                        "cuda runs torch on the GPU")  # fmt: skip
    parser.add_argument("--cache", metavar="DIR", type=Path,
                        help="feature cache folder: the video's and the music's features are kept there and reused (default: "
                        "only the music's, in $AVSYNC_CACHE_DIR or ~/.cache/avsync, so later takes of one song skip them)")
    parser.add_argument("--no-cache", action="store_true", help="keep no features at all (not even the music's)")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    batch = parser.add_argument_group("many shots (with --out-dir)")
    batch.add_argument("--out-dir", metavar="DIR", type=Path,
                       help="align every VIDEO (folders: their video files) against MUSIC; write NAME.json and NAME.png "
                       "per shot and summary.json, summary.csv, summary.png here")
    batch.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="shots aligned at once, each in its own process (default 1; at most the machine's cores pay off)")
    batch.add_argument("--shard", default=None, metavar="I/N", help="align only shard I of N of the shots (0-based; for job arrays)")
    batch.add_argument("--recursive", action="store_true", help="also read the video files in the folders' subfolders")
    batch.add_argument("--render", action="store_true",
                       help="also write each placed shot's synced video (NAME.synced.mp4; the part of the music it covers)")
    batch.add_argument("--timeline", metavar="FILE", type=Path,
                       help="write an editor's timeline of the placed shots: .otio, .edl (CMX 3600), .xml (FCP 7) or "
                       ".fcpxml (FCP X); --mode offset places the original shots, warp their synced videos (implies --render)")
    batch.add_argument("--timeline-fps", type=float, default=None, metavar="FPS",
                       help="the timeline's frame rate, e.g. 23.976, 25, 29.97 (default: the shots' most common rate)")
    batch.add_argument("--timeline-start", default=None, metavar="TC",
                       help="the timeline's start timecode (default 01:00:00:00; drop-frame at 29.97 and 59.94)")
    batch.add_argument("--relative-paths", action="store_true",
                       help="the timeline names its media by paths relative to its own folder (to relink on another "
                       "machine), not by absolute file:// URLs")
    parser.set_defaults(func=run)


def _check_suffixes(args: argparse.Namespace) -> None:
    if args.output is not None and args.output.suffix.lower() not in VIDEO_SUFFIXES:
        raise AvsyncError(f"-o must end in {', '.join(VIDEO_SUFFIXES)}", args.output)
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise AvsyncError("--plot must end in .png", args.plot)


BATCH_OPTIONS = ("--jobs", "--shard", "--recursive", "--render", "--timeline", "--timeline-fps", "--timeline-start",
                 "--relative-paths")


def _given(option: str, value: object) -> bool:
    """Whether a batch option was given (not its default: None, False, ``--jobs 1``); ``True == 1``, so not by ``in``."""
    if value is None or value is False:
        return False
    return not (option == "--jobs" and value == 1)


def run(args: argparse.Namespace) -> int:
    """Validate, analyse, write the outputs and print the summary; returns the exit status."""
    if args.out_dir is not None or len(args.video) > 1 or args.video[0].is_dir():
        from avsync.commands.align_shots import run_shots

        return run_shots(args)
    used = [option for option in BATCH_OPTIONS if _given(option, getattr(args, option[2:].replace("-", "_")))]
    if used:
        raise AvsyncError(f"{used[0]} needs --out-dir DIR (it applies to aligning many shots)")
    args.video = args.video[0]
    started = time.perf_counter()
    _check_suffixes(args)
    check_options(args)
    inputs = check_inputs(args.video, args.music, args.vocal)
    sources = [path for path in (args.video, args.music, args.vocal) if path is not None]
    check_outputs({"-o": args.output, "--report": args.report, "--plot": args.plot}, sources, args.force)
    # the heavy work starts only now, after every cheap check has passed: the lips are read in a
    # process of their own while torch, the model and the music load here
    checked = time.perf_counter()
    from avsync.features.extract import VisualParams
    from avsync.pipeline.shot_features import shot_in_background

    visual_params = VisualParams.following(args.face)
    with shot_in_background(args.video, args.cache, visual_params, progress=not args.quiet) as shot:
        from avsync.models.runtime import load_inference_model
        from avsync.pipeline.sync import analyse

        imported = time.perf_counter()
        model = load_inference_model(args.checkpoint, args.device)
        loaded = time.perf_counter()
        analysis = analyse(inputs, model, cache_dir=args.cache, visual_params=visual_params, shot=shot,
                           camera_audio=not args.ignore_camera_audio, song_cache=song_cache(args), progress=not args.quiet)  # fmt: skip
    analysis.timings = {"checks": checked - started, "imports": imported - checked, "model": loaded - imported, **analysis.timings}
    with contextlib.nullcontext() if args.force else keep_existing():
        return _write_outputs(args, analysis, started)


def _write_outputs(args: argparse.Namespace, analysis: SyncAnalysis, started: float) -> int:
    """Write the synced video, plot and report of an analysis and print the summary."""
    from avsync.pipeline.outputs import write_outputs
    from avsync.pipeline.report import summarise

    span = args.span or ("video" if analysis.placed else "music")
    report = write_outputs(analysis, output=args.output, report_path=args.report, plot_path=args.plot, mode=args.mode,
                           span=span, started=started, progress=not args.quiet)  # fmt: skip
    print(summarise(report))
    for option, path in (("report", args.report), ("plot", args.plot)):
        if path is not None:
            print(f"wrote {option} {path}")
    sys.stdout.flush()
    return 0
