"""What `avsync align` writes for one analysed video: the synced MP4, the plot and the report.

One path for one shot and for every shot of a batch (`avsync.pipeline.shots`). Each file is
written atomically; the report is built once, after the video, so it describes what was written.
"""

from __future__ import annotations

import os
import time

from avsync.align.plots import plot_alignment
from avsync.pipeline.report import SyncReport
from avsync.pipeline.retime import write_offset, write_retimed
from avsync.pipeline.sync import SyncAnalysis, build_report, default_plot_title

PathLike = str | os.PathLike[str]


def write_outputs(
    analysis: SyncAnalysis,
    *,
    output: PathLike | None = None,
    report_path: PathLike | None = None,
    plot_path: PathLike | None = None,
    mode: str = "warp",
    span: str = "music",
    started: float | None = None,
    progress: bool = True,
) -> SyncReport:
    """Write the outputs asked for and return the report.

    Args:
        analysis: from `avsync.pipeline.sync.analyse`.
        output: the synced video (``.mp4``/``.mov``/...), or None.
        report_path: the JSON report, or None.
        plot_path: the PNG of the cost matrix and path, or None.
        mode: ``warp`` (re-time by the time map) or ``offset`` (constant offset, video copied).
        span: what a warped video covers (``music`` or ``video``; `avsync.pipeline.retime`).
        started: `time.perf_counter()` when the command started (for ``runtime_s``).
        progress: show progress bars.
    """
    inputs, sync = analysis.inputs, analysis.sync
    output_warnings: list[str] = []
    output_start_s = output_duration_s = output_copied = None
    if output is not None:
        writing = time.perf_counter()
        if mode == "offset":
            offset_s = sync.offset_frames / analysis.visual.fps
            output_warnings = write_offset(inputs.video, inputs.music, output, offset_s, progress=progress)
            output_copied = not output_warnings  # its only warning says it had to re-encode
        else:
            written = write_retimed(inputs.video, inputs.music, output, sync.time_map, span=span, progress=progress)
            output_start_s, output_copied = written.start_s, written.copied
            output_duration_s = written.frames / float(inputs.video_info.fps or analysis.visual.fps)
        analysis.timings["write video"] = time.perf_counter() - writing
    report = build_report(analysis, output=output, mode=mode if output is not None else None, output_warnings=output_warnings,
                          output_start_s=output_start_s, output_duration_s=output_duration_s, output_copied=output_copied)  # fmt: skip
    if plot_path is not None:
        plotting = time.perf_counter()
        plot_alignment(sync.cost, sync.alignment.path, None, plot_path, title=default_plot_title(report), fps=sync.time_map.fps)
        report.timings_s["plot"] = round(time.perf_counter() - plotting, 3)
    if started is not None:  # after the plot, so the stage timings never add up to more
        report.runtime_s = round(time.perf_counter() - started, 3)
    if report_path is not None:
        report.write(report_path)
    return report
