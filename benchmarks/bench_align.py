"""End-to-end `avsync align`: a 30 s 720p clip against a 3-minute track, wall time and peak memory.

The clip is a synthetic singer (`avsync.synth`, 320x320) scaled up to fill the height of a
1280x720 frame (25 fps, H.264); the track is 75 s of another synthetic song's mix, the clip's
own 30 s mix, then 75 s more (3 minutes, 44.1 kHz WAV). Both are made once in a temporary folder,
with a second clip that leaves 1 s of picture out at 15 s: the clip itself is a constant offset
into the track, so its ``--span video`` MP4 is the video's packets copied; the cut clip's map is
re-timed, so its MP4 is encoded (the cost of a re-timed shot). The cut clip runs with
``--ignore-camera-audio``: its sound (not cut) fits one constant offset, and the lips' offset of a
take with a cut is read a frame or two off the offset curve's dip (the median of two segments'
offsets), so their confidence falls under `NO_MATCH_CONFIDENCE` and the sound would place it
unwarped (docs/takes.md, "Limits").

Each case runs the real command in a fresh process (imports, model loading, feature extraction
without a cache, cost matrix, DTW, outputs), each one-shot case `REPEATS` times (the median and the
range printed), and reports its wall time and peak resident memory:
the peak of the largest process (``ru_maxrss`` of the command and its children as a small launcher
process sees them: Linux keeps in ``ru_maxrss`` the peak of the parent at fork time across
``exec``, and this benchmark's own process holds the clip it made, so the command is started by a
launcher, not by it), and the resident memory of the command and its lips worker
(`avsync.pipeline.shot_features`) together, sampled. The model is the command's default, the shipped
ensemble, so the time map (and with it the re-timing work) is the one a user gets. The batch
cases align ten copies of the clip against the track in one call (`avsync align DIR MUSIC
--out-dir`), so their ratio to one shot shows what loading the model and the music once saves.
The analysis runs twice: as the song's first take (the song cache empty: the music's log-mel and
embedding computed) and as a later take of it (`avsync align` keeps them in the user's cache,
here a folder of the benchmark's own); the cases after them are later takes too, and the batch
cases' ratio is to the later take. The analysis-only cases print the report's ``timings_s``:
where the time goes.
Each case's wall time is also given as a multiple of decoding the clip alone as the lips worker
does (gray, 640 px wide, 25 fps), timed in this process before the cases and again after them:
on a machine that other work slows, the multiples move less than the seconds.
Last, the time to the one-line error of two user mistakes (a missing video, a text file given as
the video), median of `MISTAKE_RUNS` each.
Targets (issue 20, 2 CPU cores): analysis only <= 3 s and <= 400 MB for the largest process,
the MP4 of a constant-offset take <= 4 s, a re-timed one <= 8 s, ten shots <= 5x one, a user
mistake <= 0.2 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from avsync.features.cache import CACHE_ENV
from avsync.io import media
from avsync.synth.dataset import SongSpec, synthesize_song

CLIP_SECONDS = 30.0
PAD_SECONDS = 75.0
WIDTH, HEIGHT = 1280, 720
FPS = 25.0
SHOTS = 10
FIRST_TAKE = "analysis only, the song's first take (report)"
MISTAKE_RUNS = 5
REPEATS = 3
"""Runs of each one-shot case (the median printed, with the range): one run of the same command
varied by 0.3-0.5 s between runs on this project's 2-core machines."""
CUT = (15.0, 1.0)
"""The second clip leaves this much picture out (start, seconds): its map is re-timed, so its MP4 is encoded."""


def make_clip(path: Path, cut: tuple[float, float] | None = None) -> np.ndarray:
    """Write the 720p clip; returns its own mix (mono float32, 44.1 kHz).

    Args:
        path: the clip.
        cut: ``(start, seconds)`` of picture left out (an editor's cut: the lips jump ahead).
    """
    song = synthesize_song(SongSpec("bench", "bench_singer", seed=7, index=0, seconds=CLIP_SECONDS))
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    left = (WIDTH - HEIGHT) // 2
    left_out = range(0) if cut is None else range(round(cut[0] * FPS), round((cut[0] + cut[1]) * FPS))

    def frames():
        for index, frame in enumerate(song.frames):
            if index in left_out:
                continue
            canvas[:, left : left + HEIGHT] = cv2.resize(frame, (HEIGHT, HEIGHT), interpolation=cv2.INTER_LINEAR)
            yield canvas

    media.write_video(path, frames(), fps=FPS, audio=song.stems.mix, sample_rate=song.truth.meta["sample_rate"], crf=23, preset="veryfast")
    return song.stems.mix


def make_track(path: Path, clip_mix: np.ndarray, sample_rate: int) -> None:
    """Write the 3-minute track: other music, the clip's mix, other music."""
    other = synthesize_song(SongSpec("pad", "pad_singer", seed=8, index=0, seconds=2 * PAD_SECONDS)).stems.mix
    half = round(PAD_SECONDS * sample_rate)
    media.write_audio(path, np.concatenate([other[:half], clip_mix, other[half : 2 * half]]), sample_rate)


def decode_seconds(clip: Path) -> float:
    """Wall seconds to decode `clip` as the lips worker does (gray, at most 640 px wide, 25 fps)."""
    from avsync.features.extract import VisualParams, decoder_threads, work_size

    info = media.probe(clip)
    size = work_size(info.width, info.height, VisualParams().work_width)
    start = time.perf_counter()
    for _ in media.iter_video(clip, fps=FPS, gray=True, size=size, threads=decoder_threads(info.width, info.height)):
        pass
    return time.perf_counter() - start


def main() -> None:
    """Print wall time and peak memory of one shot (analysis only, each kind of output), of ten shots
    in one call, and where the time of one analysis goes."""
    with tempfile.TemporaryDirectory(prefix="bench_align.") as tmp:
        folder = Path(tmp)
        clip, track = folder / "clip720p.mp4", folder / "track3min.wav"
        start = time.perf_counter()
        mix = make_clip(clip)
        make_clip(cut_clip := folder / "cut720p.mp4", cut=CUT)
        make_track(track, mix, 44100)
        shots = folder / "shots"
        shots.mkdir()
        for index in range(SHOTS):
            shutil.copyfile(clip, shots / f"take{index:02d}.mp4")  # copies: links to one file are one take
        print(f"inputs: {CLIP_SECONDS:.0f} s {WIDTH}x{HEIGHT} {FPS:g} fps clip, {2 * PAD_SECONDS + CLIP_SECONDS:.0f} s track "
              f"(made in {time.perf_counter() - start:.1f} s); model: the shipped default; {os.cpu_count()} CPU cores")  # fmt: skip
        report, cut_report = folder / "r.json", folder / "c.json"
        song_cache = folder / "user_cache"  # the commands' song cache, not the user's
        cases = [  # (label, the VIDEO arguments, the rest)
            (FIRST_TAKE, [clip], ["--report", str(report)]),
            ("analysis only, a later take (song cached)", [clip], ["--report", str(report)]),
            ("-o, --span video (clip's part of the music)", [clip], ["-o", str(folder / "v.mp4"), "--span", "video"]),
            ("-o, --span video, clip with a 1-s cut, lips only", [cut_clip],
             ["-o", str(folder / "c.mp4"), "--span", "video", "--report", str(cut_report), "--ignore-camera-audio"]),
            ("-o, --mode offset (video copied)", [clip], ["-o", str(folder / "o.mp4"), "--mode", "offset"]),
            ("-o, --span music (3 min, first/last frame held)", [clip], ["-o", str(folder / "m.mp4"), "--span", "music"]),
            (f"{SHOTS} shots in one call, analysis only", [shots], ["--out-dir", str(folder / "batch")]),
            (f"{SHOTS} shots in one call, --jobs 2", [shots], ["--out-dir", str(folder / "batch2"), "--jobs", "2"]),
        ]
        decode = decode_seconds(clip)
        print(f"decoding the clip alone as the lips worker does: {decode:.2f} s (load average {os.getloadavg()[0]:.1f})")
        print(f"one-shot cases: median of {REPEATS} runs (range); peak memory: the largest of them")
        print(f"{'case':<50} {'wall s':>16} {'x decode':>8} {'peak RSS MiB':>13} {'all procs MiB':>13}  first line")
        single = None
        for label, videos, extra in cases:
            inputs = [*map(str, videos), str(track), *extra]
            runs = []  # (seconds, peak MiB, all processes MiB, first line, the written report or None)
            for _ in range(1 if "shots" in label else REPEATS):
                if label == FIRST_TAKE:
                    shutil.rmtree(song_cache, ignore_errors=True)
                runs.append((*_measured([*inputs, "--device", "cpu"], {CACHE_ENV: str(song_cache)}),
                             next((json.loads(path.read_text()) for path in (report, cut_report) if str(path) in extra), None)))  # fmt: skip
            ordered = sorted(runs, key=lambda run: run[0])
            seconds, _, _, first_line, written = ordered[len(ordered) // 2]
            spread = f" ({ordered[0][0]:.1f}-{ordered[-1][0]:.1f})" if len(runs) > 1 else ""
            peak_mib, tree_mib = max(run[1] for run in runs), max(run[2] for run in runs)
            single = seconds if label != FIRST_TAKE and single is None else single
            ratio = f" ({seconds / single:.1f}x one shot)" if "shots" in label else ""
            print(f"{label:<50} {f'{seconds:.1f}{spread}':>16} {seconds / decode:8.1f} {peak_mib:13.0f} {tree_mib:13.0f}  "
                  f"{first_line}{ratio}", flush=True)  # fmt: skip
            if written is not None and str(report) in extra:
                print("  where the time goes (the median run): "
                      + ", ".join(f"{stage} {value:.2f} s" for stage, value in written["timings_s"].items()))  # fmt: skip
            if written is not None and str(cut_report) in extra:
                print(f"  re-timed {100 * written['retimed_fraction']:.0f}% of the frames; write video "
                      f"{written['timings_s']['write video']:.2f} s (the median run)")  # fmt: skip
        print(f"decoding the clip alone again: {decode_seconds(clip):.2f} s (load average {os.getloadavg()[0]:.1f}; "
              f"the multiples above are of the first, {decode:.2f} s)")  # fmt: skip
        (notes := folder / "notes.txt").write_text("not a video\n")
        for label, video in (("a missing video", folder / "missing.mp4"), ("a text file given as the video", notes)):
            seconds = sorted(_mistake_seconds([str(video), str(track)]) for _ in range(MISTAKE_RUNS))
            print(f"user mistake, {label}: the one-line error in {seconds[len(seconds) // 2]:.2f} s "
                  f"(median of {MISTAKE_RUNS}, {seconds[0]:.2f}-{seconds[-1]:.2f})")


LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)")
"""Runs the command given as its arguments, then prints the largest ``ru_maxrss`` (KiB) among its
reaped children: the command and its workers, forked from this small process, not from the benchmark."""


def _measured(args: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds, peak RSS of the largest process (MiB), peak RSS of the command and its child
    processes together (MiB, sampled every 50 ms) and the summary's first line of one run (`env`
    added to the command's environment)."""
    command = [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "avsync", "align", *args, "--quiet", "--force"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env={**os.environ, **env})
        tree_peak, done = [0.0], threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                tree_peak[0] = max(tree_peak[0], _tree_rss_mib(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        process.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    *messages, peak_kib = stderr.strip().splitlines() or [""]
    if process.returncode != 0:
        raise RuntimeError(f"avsync align failed: {' '.join(messages).strip()}")
    return seconds, int(peak_kib) / 1024, tree_peak[0], stdout.strip().splitlines()[0]


def _mistake_seconds(args: list[str]) -> float:
    """Wall seconds of an `avsync align` that must end with a one-line error, exit status 2."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "avsync", "align", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 2 or len(result.stderr.strip().splitlines()) != 1:
        raise RuntimeError(f"expected a one-line error, exit 2; got {result.returncode}: {result.stderr.strip()}")
    return seconds


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, summed (pages a fork still shares count
    twice: an upper bound), MiB. Reads /proc/PID/statm, which is cheap (the PSS of smaps_rollup walks
    the page tables; sampled every 20 ms it slowed a 7-s run by 3 s)."""
    total, pending = 0.0, [pid]
    page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
    while pending:
        current = pending.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page_mib
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


if __name__ == "__main__":
    main()
