"""Classical baseline: lip opening vs speech-band energy."""

from __future__ import annotations

import numpy as np
import pytest
import torchaudio

from avsync.align.dtw import align_video
from avsync.align.timemap import path_to_time_map
from avsync.evaluation.baseline import (
    _mel_centres_hz,
    baseline_cost,
    speech_band_envelope,
    xcorr_offset,
)
from avsync.evaluation.metrics import frame_errors
from avsync.evaluation.warp import make_warp
from avsync.features.audio import MelConfig
from avsync.features.landmarks import mouth_opening


def syllable_signal(n: int, seed: int) -> np.ndarray:
    """Smooth on/off activity like sung syllables (0..1)."""
    rng = np.random.default_rng(seed)
    on = np.repeat(rng.random(n // 5 + 1) < 0.6, 5)[:n].astype(float)
    return np.convolve(on, np.hanning(7) / np.hanning(7).sum(), mode="same")


def test_mouth_opening_from_landmarks() -> None:
    landmarks = np.zeros((3, 68, 2), np.float32)
    landmarks[:, 16, 0] = 100.0  # face width 100 px
    landmarks[:, 66, 1] = [0.0, 10.0, 25.0]
    landmarks[2, 0] = np.nan
    np.testing.assert_allclose(mouth_opening(landmarks)[:2], [0.0, 0.1])
    assert np.isnan(mouth_opening(landmarks)[2])


def test_mel_centres_match_torchaudio_filters() -> None:
    cfg = MelConfig()
    banks = torchaudio.functional.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate)
    peak_hz = banks.argmax(dim=0).numpy() * cfg.sample_rate / cfg.n_fft
    np.testing.assert_allclose(_mel_centres_hz(cfg), peak_hz, atol=cfg.sample_rate / cfg.n_fft)


def test_speech_band_envelope_uses_only_the_speech_band() -> None:
    cfg = MelConfig()
    centres = _mel_centres_hz(cfg)
    log_mel = np.full((80, 4 * 10), -20.0, np.float32)
    log_mel[centres < 250, :20] = 5.0  # loud bass in frames 0-4: outside the band
    log_mel[(centres > 500) & (centres < 2000), 20:] = 5.0  # loud voice in frames 5-9
    envelope = speech_band_envelope(log_mel, cfg)
    assert envelope.shape == (10,)
    assert envelope[5:].min() > envelope[:5].max() + 10


@pytest.mark.parametrize("late", [-9, 0, 6])
def test_xcorr_offset_sign(late: int) -> None:
    rng = np.random.default_rng(late + 20)
    reference = syllable_signal(400, seed=1)
    # Video frame i shows reference frame i - late.
    index = np.clip(np.arange(400) - late, 0, 399)
    mouth = reference[index] * 0.3 + rng.normal(0, 0.03, 400)
    mouth[50:60] = np.nan
    envelope = np.log(reference + 0.05) + rng.normal(0, 0.1, 400)
    estimate = xcorr_offset(mouth, envelope, max_offset=30)
    assert estimate.offset_frames == late
    assert estimate.confidence > 0.3
    unrelated = xcorr_offset(rng.normal(size=400), envelope, max_offset=30)
    assert unrelated.confidence < estimate.confidence


def test_baseline_dtw_recovers_a_cut() -> None:
    rng = np.random.default_rng(0)
    reference = syllable_signal(500, seed=4)
    warp = make_warp("cut", 500, 3)
    mouth = reference[warp.src_index] + rng.normal(0, 0.05, len(warp))
    cost = baseline_cost(mouth, np.log(reference + 0.05))
    errors = frame_errors(path_to_time_map(align_video(cost)), warp.src_index)
    assert errors.within1 > 0.85 and errors.median <= 1.0
    invalid = np.zeros(len(warp), bool)
    invalid[:10] = True
    masked = baseline_cost(mouth, np.log(reference + 0.05), video_valid=~invalid)
    assert (masked[:10] == 0).all() and np.abs(masked[10:]).max() > 1
