"""Bad input: every user mistake is one `MediaError` line naming the file; the CLI exits 2."""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from avsync import cli
from avsync.errors import AvsyncError, MediaError
from avsync.io import media

READERS = {"probe": media.probe, "read_video": media.read_video, "read_audio": media.read_audio}


def assert_media_error(reader: str, path: Path, problem: str) -> None:
    with pytest.raises(MediaError) as caught:
        READERS[reader](path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message
    assert caught.value.path == str(path)


def noise_clip(path: Path, seconds: float = 3.0) -> Path:
    """A clip big enough that its media data (not its header) fills most of the file."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (round(25 * seconds), 64, 64, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(round(16000 * seconds))).astype(np.float32)
    media.write_video(path, frames, fps=25, audio=audio, sample_rate=16000, preset="ultrafast")
    return path


@pytest.mark.parametrize("reader", READERS)
def test_missing_file(tmp_path, reader):
    assert_media_error(reader, tmp_path / "missing.mp4", "file not found")


@pytest.mark.parametrize("reader", READERS)
def test_folder(tmp_path, reader):
    assert_media_error(reader, tmp_path, "is a folder")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", ["notes.txt", "notes.mp4", "blob.bin"])
def test_not_a_media_file(tmp_path, reader, name):
    path = tmp_path / name
    path.write_text("these are song lyrics, not a video\n" * 50)
    assert_media_error(reader, path, "not a media file (PyAV could not open it)")


def test_no_video_stream(make_av_file):
    path = make_av_file("audio.wav", video=False)
    assert media.probe(path).has_video is False
    assert_media_error("read_video", path, "has no video stream")
    with pytest.raises(MediaError, match="has no video stream"):
        next(media.iter_video(path))


def test_no_audio_stream(make_av_file):
    path = make_av_file(audio=False)
    assert media.probe(path).has_audio is False
    assert_media_error("read_audio", path, "has no audio stream")


@pytest.mark.parametrize("reader", READERS)
def test_zero_bytes(tmp_path, reader):
    path = tmp_path / "empty.mp4"
    path.touch()
    assert_media_error(reader, path, "is empty (0 bytes)")


@pytest.mark.parametrize("reader", ["probe", "read_audio"])
def test_zero_duration_wav(tmp_path, reader):
    path = tmp_path / "silence.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
    assert_media_error(reader, path, "is empty (zero duration)")


@pytest.mark.parametrize("reader", READERS)
def test_mp4_without_frames(tmp_path, reader):
    path = tmp_path / "frameless.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    assert_media_error(reader, path, "has no audio or video stream")


@pytest.mark.parametrize("reader", ["read_video", "read_audio"])
def test_truncated_to_half(tmp_path, reader):
    path = noise_clip(tmp_path / "clip.mp4")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    pattern = r"is truncated or corrupt \(decoding stopped at (\d+\.\d) s of 3\.0 s\)"
    with pytest.raises(MediaError, match=pattern) as caught:
        READERS[reader](path)
    stopped_at = float(str(caught.value).split("stopped at ")[1].split(" s")[0])
    assert 0.5 < stopped_at < 2.5


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("moov_bytes", "problem"),
    [
        (100, "has no audio or video stream (empty, truncated or corrupt)"),
        (500, "is truncated or corrupt (an MP4/MOV file whose header PyAV could not read)"),
    ],
)
def test_truncated_header(tmp_path, reader, moov_bytes, problem):
    path = noise_clip(tmp_path / "clip.mp4", seconds=1.0)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"moov") + moov_bytes])
    assert_media_error(reader, path, problem)


def test_corrupt_audio_packets(make_av_file):
    path = make_av_file(seconds=2.0, click_at=1.0)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.audio[0]) if p.size]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for position, size in packets[len(packets) // 2 : len(packets) // 2 + 3]:
        data[position : position + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    assert_media_error("read_audio", path, "is truncated or corrupt (decoding failed at 1.0 s)")


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda path: media.read_video(path, fps=0), "frame rate must be positive"),
        (lambda path: media.read_video(path, size=(0, 10)), "size must be a positive"),
        (lambda path: media.read_audio(path, sample_rate=-1), "sample rate must be positive"),
    ],
)
def test_bad_options(make_av_file, call, problem):
    with pytest.raises(AvsyncError, match=problem):
        call(make_av_file())


def test_cli_prints_one_line_and_exits_2(tmp_path, monkeypatch, capfd):
    """The CLI's error path, through a minimal subcommand that only reads a video."""

    def parser_with_reader(only: str | None = None) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="avsync")
        subparsers = parser.add_subparsers(dest="command")
        reader = subparsers.add_parser("read")
        reader.add_argument("path")
        reader.set_defaults(func=lambda args: len(media.read_video(args.path)) and 0)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_reader)
    bad = tmp_path / "lyrics.mp4"
    bad.write_text("not a video\n" * 20)
    truncated = noise_clip(tmp_path / "clip.mp4")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    cases = [
        (tmp_path / "missing.mp4", "file not found"),
        (bad, "not a media file"),
        (truncated, "is truncated or corrupt"),
    ]
    for path, problem in cases:
        assert cli.main(["read", str(path)]) == 2
        out, err = capfd.readouterr()
        assert out == ""
        assert err.count("\n") == 1, err
        assert err.startswith(f"avsync: error: {path}: ") and problem in err


def test_music_with_nan_samples_is_refused_naming_them(tmp_path: Path) -> None:
    from avsync.features.extract import extract_audio

    samples = np.sin(np.linspace(0, 400, 16000 * 2)).astype(np.float32)
    samples[16000:16010] = np.nan
    path = tmp_path / "nan.wav"
    media.write_audio(path, samples, 16000, float32=True)
    with pytest.raises(MediaError, match=r"10 NaN or infinite samples \(the first at 1.00 s\)"):
        extract_audio(path)


def test_a_full_disk_is_one_line_exit_1_and_leaves_nothing(tmp_path: Path, monkeypatch, capfd) -> None:
    import errno

    target = tmp_path / "out.mp4"
    with pytest.raises(AvsyncError) as info:
        with media.atomic_path(target) as temporary:
            temporary.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.exit_code == 1 and str(info.value) == f"{target}: no space left on device"
    assert list(tmp_path.iterdir()) == []


def test_offset_confidence_is_never_negative() -> None:
    from avsync.align.robust import offset_confidence
    from avsync.align.timemap import OffsetEstimate

    curve = np.array([0.0, -1.0, 0.5, 0.2, 0.1])
    estimate = OffsetEstimate(offsets=np.arange(-2, 3).astype(float), curve=curve, offset_frames=-1.0, offset_s=-0.04, confidence=0.2)
    assert offset_confidence(estimate, 0.0) == 0.0  # worse than the median offset
    assert offset_confidence(estimate, -1.0) == pytest.approx(1.1 / (1.4826 * 0.1))  # in units of the curve's spread


def test_what_is_really_wrong_is_said(tmp_path: Path) -> None:
    import os

    loop_a, loop_b, dangling = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "gone.mp4"
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    os.symlink(tmp_path / "nothing.mp4", dangling)
    image = tmp_path / "still.png"
    import av as _av

    with _av.open(str(image), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "rgb24"
        frame = _av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    expected = {loop_a: "symbolic link that loops", dangling: "symbolic link to a file that does not exist",
                image: r"is a still image \(png\), not a video"}
    if Path("/dev/zero").exists():
        expected[Path("/dev/zero")] = "is not a regular file"
    for path, message in expected.items():
        with pytest.raises(MediaError, match=message):
            media.probe(path)


def test_a_wav_cut_off_at_half_its_bytes_is_reported_as_truncated(tmp_path: Path) -> None:
    whole = tmp_path / "whole.wav"
    media.write_audio(whole, (0.3 * np.sin(np.arange(16000 * 4) / 10)).astype(np.float32), 16000)
    half = tmp_path / "half.wav"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert media.probe(whole).duration == pytest.approx(4.0, abs=0.01)
    with pytest.raises(MediaError, match=r"half.wav: is truncated \(its header declares 128,000 bytes of audio, the file holds 6[0-9],[0-9]{3}\)"):
        media.probe(half)
