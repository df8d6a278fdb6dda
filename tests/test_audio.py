"""avsync.features.audio: mel columns tied to video frames; other frame rates go through video resampling;
the numpy log-mel is torchaudio's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsync.features.audio import LOG_OFFSET, MelConfig, log_mel
from avsync.io import media

CFG = MelConfig()


def tone_burst(total_frames: int, start_frame: int, cfg: MelConfig = CFG) -> np.ndarray:
    """Silence with a 440 Hz tone from video frame `start_frame` to the end; float32 [N]."""
    samples = np.zeros(total_frames * cfg.samples_per_frame, dtype=np.float32)
    start = start_frame * cfg.samples_per_frame
    time = np.arange(len(samples) - start) / cfg.sample_rate
    samples[start:] = 0.5 * np.sin(2 * np.pi * 440 * time)
    return samples


def test_default_config_matches_design():
    assert (CFG.sample_rate, CFG.fps, CFG.mels_per_frame) == (16000, 25.0, 4)
    assert CFG.samples_per_frame == 640
    assert CFG.hop_length == 160
    assert CFG.params()["hop_length"] == 160


@pytest.mark.parametrize("fps", [29.97, 30.0, 30000 / 1001])
def test_hop_must_be_whole_for_the_frame_rate(fps):
    with pytest.raises(ValueError, match="resample the video"):
        _ = MelConfig(fps=fps).hop_length


def test_hop_must_split_into_mels_per_frame():
    with pytest.raises(ValueError, match="whole mel hops"):
        _ = MelConfig(mels_per_frame=3).hop_length
    assert MelConfig(sample_rate=48000, fps=30.0).hop_length == 400


@pytest.mark.parametrize("extra_samples", [0, 1, 639])
def test_shapes_are_whole_video_frames(extra_samples):
    waveform = np.random.default_rng(0).standard_normal(50 * 640 + extra_samples).astype(np.float32)
    mel = log_mel(waveform)
    assert mel.shape == (80, 200) and mel.dtype == np.float32
    batch = log_mel(np.stack([waveform, waveform * 0.5]))
    assert batch.shape == (2, 80, 200)
    np.testing.assert_array_equal(batch[0], mel)
    # Halving the amplitude lowers the log power by log(4) where the signal dominates the offset.
    assert float(np.median(batch[0] - batch[1])) == pytest.approx(np.log(4.0), abs=0.01)


def test_shorter_than_one_frame_gives_no_columns():
    assert log_mel(np.zeros(639, dtype=np.float32)).shape == (80, 0)
    assert log_mel(np.zeros((3, 100), dtype=np.float32)).shape == (3, 80, 0)


@pytest.mark.parametrize("start_frame", [3, 10, 24])
def test_tone_burst_lights_columns_from_its_frame(start_frame):
    mel = log_mel(tone_burst(30, start_frame))
    energy = mel.max(axis=0)
    silent = float(energy[0])
    lit = np.flatnonzero(energy > silent + 3.0)
    first = int(lit[0])
    assert first in (4 * start_frame - 1, 4 * start_frame)
    assert bool((energy[4 * start_frame :] > silent + 3.0).all())


@pytest.mark.parametrize(("source_fps", "frames"), [(25.0, 50), (30.0, 50), (30000 / 1001, 51)])
def test_other_frame_rates_are_resampled_to_the_model_rate(make_av_file, source_fps, frames):
    path = make_av_file(seconds=2.0, fps=source_fps, click_at=1.0)
    video = media.read_video(path, fps=CFG.fps, gray=True)
    assert len(video) == frames
    np.testing.assert_allclose(video.times, np.arange(frames) / CFG.fps)
    mel = log_mel(media.read_audio(path, sample_rate=CFG.sample_rate))
    # Two seconds of audio: 50 whole frames of mel; the click lights frame 25 (t = 1.00 s).
    assert mel.shape == (80, 4 * 50)
    loudest_column = int(mel.max(axis=0).argmax())
    assert loudest_column // CFG.mels_per_frame == 25


def torchaudio_log_mel(samples: np.ndarray, cfg: MelConfig = CFG) -> np.ndarray:
    """The log-mel as torchaudio computes it (what the features were before they moved to numpy)."""
    import torchaudio

    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
        f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, center=True, power=2.0,
    )  # fmt: skip
    frames = len(samples) // cfg.samples_per_frame
    mel = transform(torch.from_numpy(samples[: frames * cfg.samples_per_frame]))[..., : frames * cfg.mels_per_frame]
    return torch.log(mel + LOG_OFFSET).numpy()


@pytest.mark.parametrize("signal", ["noise", "tone", "quiet", "silence", "song"])
def test_numpy_log_mel_is_torchaudios(signal: str) -> None:
    """The one log-mel (numpy) against torchaudio's: within 5e-3 in log power (0.02 dB) everywhere and
    1e-4 on average; the largest differences are in bands 60-80 dB under the frame's loudest, where
    the float32 FFTs (both) round most."""
    rng = np.random.default_rng(1)
    samples = {
        "noise": 0.3 * rng.standard_normal(3 * 16000),
        "tone": tone_burst(60, 10),
        "quiet": np.r_[np.zeros(8000), 1e-4 * rng.standard_normal(8000)],
        "silence": np.zeros(640 * 10),
        "song": np.convolve(rng.standard_normal(4 * 16000), np.hanning(40), "same") * np.sin(np.arange(4 * 16000) / 2000.0),
    }[signal].astype(np.float32)
    expected = torchaudio_log_mel(samples)
    got = log_mel(samples)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=5e-3, rtol=0)
    assert float(np.abs(got - expected).mean()) < 1e-4
