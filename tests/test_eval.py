"""Evaluation on known warps: cases, model and baseline scoring, table, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from avsync.evaluation.harness import (
    BaselineMethod,
    EvalClip,
    ModelMethod,
    format_table,
    make_cases,
    pair_band,
    run_evaluation,
)
from avsync.evaluation.warp import WARP_KINDS
from avsync.models import TwoTower


def activity(n: int, seed: int) -> np.ndarray:
    """Syllable-like on/off activity, smoothed (0..1)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 9, n)  # syllables and rests of 2-8 frames, so no shift looks alike
    on = np.repeat(np.arange(n) % 2, lengths)[:n].astype(float)
    return np.convolve(on, [0.25, 0.5, 0.25], mode="same")


def synthetic_clip(clip_id: str, n: int, seed: int) -> EvalClip:
    """A clip whose mouth brightness, lip landmarks and speech-band energy all follow one activity."""
    a = activity(n, seed)
    crops = np.repeat((40 + 180 * a).astype(np.uint8)[:, None, None], 64, axis=1).repeat(64, axis=2)
    landmarks = np.zeros((n, 68, 2), np.float32)
    landmarks[:, 16, 0] = 100.0
    landmarks[:, 66, 1] = 30.0 * a
    valid = np.ones(n, bool)
    valid[20:26] = False
    landmarks[~valid] = np.nan
    log_mel = np.repeat(np.log(1e-3 + a)[None, :], 80, axis=0).repeat(4, axis=1).astype(np.float32)
    return EvalClip(clip_id, crops, valid, landmarks, log_mel)


class BrightnessTwoTower(nn.Module):
    """Embeddings = z-normalised 16-frame traces of mouth brightness and audio level; like a model
    trained with one-frame hard negatives, only a near-perfect correlation scores as a match."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(30.0))

    @staticmethod
    def _unit(trace: torch.Tensor) -> torch.Tensor:
        trace = trace - trace.mean(dim=1, keepdim=True)
        return trace / (trace.norm(dim=1, keepdim=True) + 1e-6)

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self._unit(clips.mean(dim=(2, 3)))

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self._unit(mel.mean(dim=1).reshape(len(mel), 16, 4).mean(dim=2))

    def score(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.scale * (video @ audio.T - 0.95)


def test_cases_are_deterministic_and_cycle_kinds() -> None:
    clips = [synthetic_clip(f"c{k}", 200, k) for k in range(6)]
    cases = make_cases(clips, seed=3)
    assert [c.frame_map.kind for c in cases] == list(WARP_KINDS) + [WARP_KINDS[0]]
    again = make_cases(clips, seed=3)
    assert all((a.frame_map.src_index == b.frame_map.src_index).all() for a, b in zip(cases, again))
    assert cases[0].name == "c0:shift"
    assert pair_band(750) == (0.0, 1.0, 15 + 50 + 75)


def test_model_and_baseline_recover_known_warps(tmp_path) -> None:
    clips = [synthetic_clip(f"clip{k}", 300, k) for k in range(5)]
    report = run_evaluation([ModelMethod(BrightnessTwoTower()), BaselineMethod()], make_cases(clips), plots_dir=tmp_path, progress=False)
    assert len(report.results) == 10
    summary = report.summary()
    for method in ("model", "baseline"):
        assert summary[method]["within1"] > 0.8, (method, summary)
        assert summary[method]["frame_err_median"] <= 1.0
    shift = next(r for r in report.results if r.kind == "shift" and r.method == "model")
    assert shift.offset_acc == 1.0 and shift.confidence > 1.0
    assert len(report.plots) == 10 and all(p.stat().st_size > 1000 for p in report.plots)
    table = format_table(report)
    assert "MEAN" in table and "clip3:freeze" in table
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"]["model"]["within1"] == pytest.approx(summary["model"]["within1"])


def test_untrained_two_tower_runs_and_scores_worse_than_a_matching_model() -> None:
    torch.manual_seed(0)
    clips = [synthetic_clip(f"clip{k}", 200, k + 10) for k in range(2)]
    cases = make_cases(clips)
    untrained = run_evaluation([ModelMethod(TwoTower(embed_dim=16, frame_dim=8, temporal_dim=16, audio_channels=16))], cases,
                               progress=False)
    matching = run_evaluation([ModelMethod(BrightnessTwoTower())], cases, progress=False)
    assert [r.method for r in untrained.results] == ["model", "model"]
    assert untrained.summary()["model"]["frame_err_mean"] > matching.summary()["model"]["frame_err_mean"]


class BrightnessPairModel(nn.Module):
    """The same scores as `BrightnessTwoTower`, but only through ``score_candidates`` (like PosterCNN)."""

    def __init__(self) -> None:
        super().__init__()
        self.towers = BrightnessTwoTower()

    def score_candidates(self, mouth_clips: torch.Tensor, mel_candidates: torch.Tensor) -> torch.Tensor:
        batch, count = mel_candidates.shape[:2]
        video = self.towers.encode_video(mouth_clips)
        audio = self.towers.encode_audio(mel_candidates.reshape(batch * count, *mel_candidates.shape[2:]))
        return self.towers.scale * (torch.einsum("bd,bkd->bk", video, audio.reshape(batch, count, -1)) - 0.95)


def test_pair_model_is_scored_inside_the_band() -> None:
    clips = [synthetic_clip(f"clip{k}", 200, k) for k in range(5)]
    report = run_evaluation([ModelMethod(BrightnessPairModel())], make_cases(clips), progress=False)
    _, _, radius = pair_band(200)
    for result in report.results:
        path = result.sync.alignment.path
        assert (np.abs(path[:, 1] - path[:, 0]) <= radius).all()
    assert report.summary()["model"]["within1"] > 0.8



def test_time_map_plots_come_beside_the_cost_matrix_plots(tmp_path) -> None:
    case = make_cases([synthetic_clip("clip", 200, 4)])[0]
    report = run_evaluation([BaselineMethod()], [case], plots_dir=tmp_path, time_map_plots=True, progress=False)
    assert [p.name for p in report.plots] == ["clip_shift_baseline.png", "clip_shift_baseline_timemap.png"]
    assert all(p.stat().st_size > 1000 for p in report.plots)
