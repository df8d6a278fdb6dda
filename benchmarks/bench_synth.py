"""Speed of the synthetic dataset generator (`avsync synth`), one process, one 30 s song.

Prints the time of each stage of one song (audio stems, frame rendering, H.264/AAC encoding,
WAV writing) and the whole `render_song`, in frames/s of video, and the projected time of the
default dataset (26 songs x 30 s) on 2 worker processes.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from avsync.io.media import write_audio, write_video
from avsync.synth.dataset import (
    DEFAULT_SECONDS,
    DEFAULT_SONGS,
    STEM_FILES,
    VIDEO_CRF,
    VIDEO_PRESET,
    SongSpec,
    render_song,
    synthesize_song,
)  # fmt: skip
from avsync.synth.face import load_source_face

WORKERS = 2


def main() -> None:
    seconds = DEFAULT_SECONDS
    spec = SongSpec("bench", "bench", seed=0, index=0, seconds=seconds)
    start = time.perf_counter()
    load_source_face()
    print(f"load source face + dlib landmarks (once per process): {time.perf_counter() - start:.2f} s")

    start = time.perf_counter()
    media = synthesize_song(spec)
    audio_s = time.perf_counter() - start
    start = time.perf_counter()
    frames = list(media.frames)
    render_s = time.perf_counter() - start
    n_frames = len(frames)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_video(Path(folder) / "v.mp4", frames, fps=media.truth.fps, audio=media.stems.mix,
                    sample_rate=media.stems.sample_rate, crf=VIDEO_CRF, preset=VIDEO_PRESET)  # fmt: skip
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        for name in STEM_FILES:
            write_audio(Path(folder) / f"{name}.wav", getattr(media.stems, name), media.stems.sample_rate)
        wav_s = time.perf_counter() - start
        del frames
        start = time.perf_counter()
        render_song(spec, folder)
        song_s = time.perf_counter() - start
    print(f"one {seconds:g} s song, {n_frames} frames of 320x320, 44.1 kHz stems (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}):")
    print(f"  score + audio stems + truth      {audio_s:6.2f} s")
    print(f"  render frames                    {render_s:6.2f} s  {n_frames / render_s:7.1f} frames/s")
    print(f"  encode H.264 + AAC (crf {VIDEO_CRF})      {encode_s:6.2f} s  {n_frames / encode_s:7.1f} frames/s")
    print(f"  write 4 WAVs                     {wav_s:6.2f} s")
    print(f"  render_song end to end           {song_s:6.2f} s  {n_frames / song_s:7.1f} frames/s")
    projected = DEFAULT_SONGS * song_s / WORKERS
    print(f"projected default dataset ({DEFAULT_SONGS} x {seconds:g} s, {WORKERS} workers on >= {WORKERS} free cores): {projected:.0f} s")
