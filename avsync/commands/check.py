"""``avsync check VIDEO [AUDIO]``: is this video in sync with its own audio (or with AUDIO)?

Two witnesses answer (`avsync.pipeline.check`): the model-free reference of lip releases
(`avsync.truth`) and the model, through the analysis `avsync align` runs. Cheap checks (the
inputs' headers, the report's path) come first, before torch is imported; a user mistake is one
line and exit status 2. The report is written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from avsync.commands.checks import check_outputs
from avsync.errors import AvsyncError, MediaError
from avsync.features.face_choice import face_point
from avsync.pipeline.checks import check_inputs, check_video


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` subcommand."""
    parser = subparsers.add_parser(
        "check",
        help="is a video in sync with its own audio (or with AUDIO)? lip releases and the model",
        description="Measure the offset between VIDEO's picture and its own audio (or AUDIO) twice: by the "
        "model-free reference (releases of /p b m/ lip closures paired with the sounds they make: offset, "
        "interval, verdict in sync / off / undecided) and by the model (the analysis avsync align runs: offset, "
        "confidence); say whether they agree. Offsets are t_video - t_audio: positive means the picture is late.",
    )
    parser.add_argument("video", metavar="VIDEO", type=Path, help="the video (any format PyAV opens)")
    parser.add_argument("audio", metavar="AUDIO", type=Path, nargs="?",
                        help="the audio it should be in sync with (default: the video's own audio track)")
    parser.add_argument("--report", metavar="REPORT.json", type=Path, help="write the JSON report here")
    parser.add_argument("--checkpoint", metavar="CKPT", type=Path,
                        help="model checkpoint: a .ckpt path, 'latest' or 'shipped' (default: the model shipped with avsync)")
    parser.add_argument("--face", default="largest", metavar="WHICH",
                        help="the face to follow: largest (default), left, right, or X,Y (fractions of the frame)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto; as in avsync align: the ONNX export through onnxruntime unless cuda)")
    parser.add_argument("--cache", metavar="DIR", type=Path, help="feature cache folder (reuse features between runs)")
    parser.add_argument("--force", action="store_true", help="replace an existing report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, run both witnesses, print the summary, write the report."""
    started = time.perf_counter()
    try:
        face_point(args.face)
    except ValueError as exc:
        raise AvsyncError(f"--face: {exc}") from None
    if args.cache is not None and args.cache.exists() and not args.cache.is_dir():
        raise AvsyncError("--cache is a file; give a folder", args.cache)
    if args.report is not None and args.report.suffix.lower() != ".json":
        raise AvsyncError("--report must end in .json", args.report)
    if args.audio is None and not check_video(args.video).has_audio:
        raise MediaError("has no audio track; give the AUDIO to check it against", args.video)
    inputs = check_inputs(args.video, args.audio or args.video)
    check_outputs({"--report": args.report}, [path for path in (args.video, args.audio) if path is not None], args.force)

    from avsync.features.extract import VisualParams
    from avsync.models.runtime import load_inference_model
    from avsync.pipeline.check import build_check_report, check_sync, summarise_check

    model = load_inference_model(args.checkpoint, args.device)
    analysis, estimate, events = check_sync(inputs, model, cache_dir=args.cache, visual_params=VisualParams.following(args.face),
                                            progress=not args.quiet)  # fmt: skip
    report = build_check_report(analysis, estimate, events, time.perf_counter() - started)
    print(summarise_check(report))
    if args.report is not None:
        report.write(args.report)
        print(f"wrote report {args.report}")
    sys.stdout.flush()
    return 0
