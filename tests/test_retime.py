"""Re-timing a video by a time map (streaming) and the constant-offset remux."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import frame_index, index_frame, write_stored_frames, write_test_clip

from avsync.align.timemap import TimeMap, constant_time_map
from avsync.errors import AvsyncError
from avsync.io import media
from avsync.pipeline.retime import (
    output_times,
    pick_frames,
    source_times,
    write_offset,
    write_retimed,
)

MUSIC_SECONDS = 6.0
CLICK_S = 1.0


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """4 s of numbered frames (index i at i/25 s), 64x48, no audio."""
    return write_test_clip(tmp_path / "clip.mp4", seconds=4.0, fps=25.0, size=(64, 48), audio=False)


@pytest.fixture
def music(tmp_path: Path) -> Path:
    """6 s of silence with a click at 1.0 s, 44.1 kHz WAV."""
    return write_test_clip(tmp_path / "music.wav", seconds=MUSIC_SECONDS, video=False, click_at=CLICK_S, sample_rate=44100)


def indices(path: Path) -> list[int]:
    return [frame_index(frame) for frame in media.read_video(path).frames]


def click_time(path: Path) -> float:
    samples = media.read_audio(path, sample_rate=16000)
    return float(np.argmax(np.abs(samples)) / 16000)


def test_pick_frames_takes_the_frame_on_screen() -> None:
    frames = [(k * 0.04, np.full(1, k)) for k in range(5)]
    wanted = [-1.0, 0.0, 0.039, 0.04, 0.1, 0.1, 10.0]
    assert [int(f[0]) for f in pick_frames(iter(frames), wanted)] == [0, 0, 0, 1, 2, 2, 4]


def test_pick_frames_rejects_decreasing_times() -> None:
    frames = [(k * 0.04, np.full(1, k)) for k in range(5)]
    with pytest.raises(ValueError, match="must not decrease"):
        list(pick_frames(iter(frames), [0.1, 0.05]))


def test_output_times_cover_the_music_or_the_video() -> None:
    time_map = TimeMap(np.array([[1.0, 0.0], [3.0, 2.0]]), fps=25.0)
    music = output_times(time_map, 6.0, 30.0, "music")
    assert len(music) == 180 and music[0] == 0.0 and music[-1] == pytest.approx(179 / 30)
    video = output_times(time_map, 6.0, 25.0, "video")
    assert video[0] == pytest.approx(1.0) and video[-1] == pytest.approx(3.0) and len(video) == 51
    with pytest.raises(AvsyncError, match="span"):
        output_times(time_map, 6.0, 25.0, "all")


def test_source_times_use_the_middle_of_each_output_frame() -> None:
    time_map = constant_time_map(0.4, 4.0)
    times = np.array([0.0, 1.0])
    assert source_times(time_map, times, 25.0) == pytest.approx([0.42, 1.42])


def test_portrait_and_odd_sized_videos_are_written_upright_and_even(music: Path, tmp_path: Path) -> None:
    """Frames that cannot go to the encoder as decoded (display rotation, odd size) are converted."""
    turned = [np.rot90(index_frame(index, (48, 64)), -1) for index in range(25)]  # stored landscape, shown portrait
    portrait = write_stored_frames(tmp_path / "portrait.mp4", turned, rotation=90)
    out = tmp_path / "upright.mp4"
    write_retimed(portrait, music, out, constant_time_map(0.0, 0.96), span="video", progress=False)
    assert (media.probe(out).width, media.probe(out).height) == (48, 64)
    assert indices(out) == list(range(25))

    # MPEG-4 part 2 stores odd sizes (x264 would refuse them); a map that re-times makes it re-encode.
    odd = write_stored_frames(tmp_path / "odd.mkv", [index_frame(index, (63, 47)) for index in range(25)], codec="mpeg4")
    out = tmp_path / "even.mp4"
    freeze = TimeMap(np.array([[0.0, 0.0], [0.4, 0.4], [0.4, 0.48], [0.88, 0.96]]), fps=25.0)
    write_retimed(odd, music, out, freeze, span="video", progress=False)
    assert (media.probe(out).width, media.probe(out).height) == (64, 48)
    assert [frame_index(frame[:47, :63]) for frame in media.read_video(out).frames] == list(range(10)) + list(range(12, 25))


def test_constant_offset_late_video_is_advanced_and_the_last_frame_held(clip: Path, music: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    assert write_retimed(clip, music, out, constant_time_map(0.4, 4.0), progress=False) == (0.0, 150, False)
    info = media.probe(out)
    assert (info.width, info.height, info.fps) == (64, 48, 25.0)
    assert info.duration == pytest.approx(MUSIC_SECONDS, abs=0.05)
    got = indices(out)
    assert got[:90] == list(range(10, 100))
    assert set(got[90:]) == {99}
    assert click_time(out) == pytest.approx(CLICK_S, abs=0.002)


def test_constant_offset_early_video_holds_its_first_frame(clip: Path, music: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    write_retimed(clip, music, out, constant_time_map(-0.4, 4.0), progress=False)
    got = indices(out)
    assert got[:10] == [0] * 10
    assert got[10:110] == list(range(100))


def test_freeze_in_the_video_is_skipped(clip: Path, music: Path, tmp_path: Path) -> None:
    # Video 1..2 s shows what belongs at music 1.0 s (a freeze in the video): the output skips it.
    time_map = TimeMap(np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 2.0], [2.96, 3.96]]), fps=25.0)
    out = tmp_path / "out.mp4"
    write_retimed(clip, music, out, time_map, progress=False)
    got = indices(out)
    assert got[:25] == list(range(25))
    assert got[25:74] == list(range(50, 99))


@pytest.mark.parametrize("offset_s", [-0.6, -0.62])
def test_span_video_cuts_the_music_to_the_covered_part(clip: Path, music: Path, tmp_path: Path, offset_s: float) -> None:
    """A constant offset inside the music: the video is copied, not re-encoded (also between frames)."""
    out = tmp_path / "out.mp4"
    # The video is 0.6 s early: it covers music 0.6 .. 4.6 s, which is all that is written.
    start, written, copied = write_retimed(clip, music, out, constant_time_map(offset_s, 3.96), span="video", progress=False)
    assert start == pytest.approx(-offset_s) and written == 100 and copied
    assert video_packets(out) == video_packets(clip)
    assert indices(out) == list(range(100))
    assert media.probe(out).duration == pytest.approx(4.0, abs=0.05)
    assert media.probe(out).video_start == pytest.approx(0.0, abs=1e-3)
    assert click_time(out) == pytest.approx(CLICK_S + offset_s, abs=0.002)


def test_span_video_reencodes_what_copying_would_change(clip: Path, music: Path, tmp_path: Path) -> None:
    """Copying is only for a constant map, inside the music, at a constant frame rate."""
    # The video starts 0.4 s before the music: its first 10 frames are cut.
    out = tmp_path / "early.mp4"
    assert write_retimed(clip, music, out, constant_time_map(0.4, 3.96), span="video", progress=False) == (0.0, 90, False)
    assert indices(out) == list(range(10, 100))
    assert video_packets(out) != video_packets(clip)[10:]
    # A freeze in the video: re-timed.
    out = tmp_path / "freeze.mp4"
    freeze = TimeMap(np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 2.0], [2.96, 3.96]]), fps=25.0)
    assert write_retimed(clip, music, out, freeze, span="video", progress=False)[1:] == (75, False)
    # Variable frame rate (25 fps, then 37.5): re-encoded at one rate, the video's average.
    times = np.concatenate([np.arange(50) / 25, 2.0 + np.arange(75) / 37.5])
    vfr = write_test_clip(tmp_path / "vfr.mp4", seconds=4.0, fps=25.0, size=(64, 48), audio=False, times=times)
    out = tmp_path / "cfr.mp4"
    start, written, copied = write_retimed(vfr, music, out, constant_time_map(-0.5, 3.96), span="video", progress=False)
    assert not copied
    fps = media.probe(vfr).fps
    assert 30 < fps < 32 and 0.5 <= start < 0.5 + 1 / fps  # the first frame of that rate's grid inside the video
    assert np.diff(media.read_video(out).times) == pytest.approx(np.full(written - 1, 1 / fps), abs=1e-4)


def test_output_keeps_the_input_frame_rate_and_size(music: Path, tmp_path: Path) -> None:
    clip30 = write_test_clip(tmp_path / "clip30.mp4", seconds=3.0, fps=30.0, size=(96, 64), audio=False)
    out = tmp_path / "out.mp4"
    write_retimed(clip30, music, out, constant_time_map(0.5, 3.0), progress=False)
    info = media.probe(out)
    assert (info.width, info.height, info.fps) == (96, 64, 30.0)
    got = indices(out)
    assert len(got) == 180
    assert got[:75] == list(range(15, 90))  # 0.5 s = 15 frames at 30 fps


def test_failed_write_leaves_nothing(clip: Path, music: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AvsyncError):
        write_retimed(clip, music, blocker / "out.mp4", constant_time_map(0.0, 4.0), progress=False)
    not_audio = tmp_path / "video_only.mp4"
    with pytest.raises(media.MediaError):
        write_retimed(clip, clip, not_audio, constant_time_map(0.0, 4.0), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "file", "music.wav"]


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


@pytest.mark.parametrize(("offset_s", "first_index", "video_start"), [(0.4, 10, 0.0), (-0.4, 0, 0.4)])
def test_offset_mode_copies_the_video_packets(clip: Path, music: Path, tmp_path: Path, offset_s: float, first_index: int,
                                              video_start: float) -> None:  # fmt: skip
    out = tmp_path / "out.mp4"
    assert write_offset(clip, music, out, offset_s, progress=False) == []
    assert video_packets(out) == video_packets(clip)  # not re-encoded
    info = media.probe(out)
    assert info.video_start == pytest.approx(video_start, abs=1e-3)
    assert info.audio_start == pytest.approx(0.0, abs=1e-3)
    got = indices(out)
    assert got[:3] == [first_index, first_index + 1, first_index + 2]
    # The click (music 1.0 s) sits on the output's video timeline at 1.0 - video_start.
    assert click_time(out) == pytest.approx(CLICK_S - video_start, abs=0.002)


def test_offset_mode_reencodes_what_it_cannot_copy(music: Path, tmp_path: Path) -> None:
    mpg = tmp_path / "clip.mpg"
    with av.open(str(mpg), "w", format="mpeg") as container:
        stream = container.add_stream("mpeg1video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(50):
            frame = av.VideoFrame.from_ndarray(index_frame(k, (64, 48)), format="rgb24").reformat(format="yuv420p")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    out = tmp_path / "out.mp4"
    warnings = write_offset(mpg, music, out, 0.4, progress=False)
    assert len(warnings) == 1 and "re-encoded" in warnings[0] and "mpeg1video" in warnings[0]
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    got = indices(out)
    assert got[:40] == list(range(10, 50))
    assert len(got) == 150
