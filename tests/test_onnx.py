"""ONNX exports (`avsync.models.export`) run by onnxruntime (`avsync.models.runtime`) give torch's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avsync.align.cost import audio_windows, cost_matrix, model_logits, video_windows
from avsync.errors import AvsyncError
from avsync.models import Ensemble, LipSync, PosterCNN, TwoTower, describe
from avsync.models.checkpoints import load_model
from avsync.models.export import export_checkpoint, export_network
from avsync.models.pretrained import pretrained_checkpoint
from avsync.models.runtime import (
    RUNTIME_DEVICE,
    OnnxEnsemble,
    OnnxLipSync,
    OnnxTwoTower,
    export_path,
    file_digest,
    load_inference_model,
    load_onnx,
)

TOLERANCE = 1e-4
"""What the issue asks of ONNX against torch, on embeddings and logits."""


def features(n: int = 90, m: int = 140, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mouth crops uint8 [n, 64, 64], landmarks float [n, 68, 2] (a face that moves) and log-mel [80, 4m]."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (n, 64, 64), dtype=np.uint8)
    base = rng.uniform(100, 200, (1, 68, 2))
    landmarks = (base + rng.normal(0, 2, (n, 68, 2))).astype(np.float32)
    log_mel = rng.normal(-6, 2.5, (80, 4 * m)).astype(np.float32)
    return crops, landmarks, log_mel


def save_checkpoint(path, network: torch.nn.Module):
    state = {f"model.{k}": v for k, v in network.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model": describe(network)}}, path)
    return path


@pytest.fixture(scope="module")
def shipped() -> tuple[Ensemble, OnnxEnsemble]:
    """The shipped ensemble through torch and through its ONNX export."""
    network = load_model(None, "cpu").network
    loaded = load_inference_model(None, "cpu")
    assert loaded.device == RUNTIME_DEVICE and isinstance(loaded.network, OnnxEnsemble)
    return network, loaded.network


def test_the_shipped_exports_are_of_the_shipped_checkpoints() -> None:
    """`make export` ran after the checkpoints last changed (else inference would fall back to torch)."""
    for name in ("lipsync_twotower", "twotower_realsynth"):
        checkpoint = pretrained_checkpoint(name)
        exported = load_onnx(export_path(checkpoint))
        assert exported.graph.metadata["checkpoint_sha256"] == file_digest(checkpoint), f"run make export ({name})"
        assert export_path(checkpoint).stat().st_size < 8 * 2**20


def test_shipped_networks_agree_with_torch_within_1e4(shipped: tuple[Ensemble, OnnxEnsemble]) -> None:
    network, exported = shipped
    assert exported.weights == network.weights
    crops, landmarks, log_mel = features()
    for member, twin in zip(network.members, exported.members, strict=True):
        if isinstance(member, TwoTower):
            assert isinstance(twin, OnnxTwoTower)
            mouth, mel = video_windows(crops, np.arange(0, 90, 7)), audio_windows(log_mel, np.arange(0, 140, 9))
            with torch.no_grad():
                video = member.encode_video(torch.from_numpy(mouth)).numpy()
                audio = member.encode_audio(torch.from_numpy(mel)).numpy()
                logits = member.score(torch.from_numpy(video), torch.from_numpy(audio)).numpy()
            np.testing.assert_allclose(twin.encode_video(mouth), video, atol=TOLERANCE, rtol=0)
            np.testing.assert_allclose(twin.encode_audio(mel), audio, atol=TOLERANCE, rtol=0)
            np.testing.assert_allclose(twin.score(video, audio), logits, atol=TOLERANCE, rtol=0)
        else:
            assert isinstance(member, LipSync) and isinstance(twin, OnnxLipSync)
        # the whole matrix the aligner scores, through the same cost code
        from avsync.features.lips import lip_geometry

        video_features = lip_geometry(landmarks) if isinstance(member, LipSync) else crops
        np.testing.assert_allclose(model_logits(twin, video_features, log_mel), model_logits(member, video_features, log_mel),
                                   atol=TOLERANCE, rtol=0)  # fmt: skip
    valid = np.ones(len(crops), bool)
    valid[5:9] = False
    kwargs = {"landmarks": landmarks, "video_valid": valid}
    np.testing.assert_allclose(cost_matrix(exported, crops, log_mel, **kwargs), cost_matrix(network, crops, log_mel, **kwargs), atol=1e-3)


def test_a_users_checkpoint_runs_through_its_export_while_it_matches(tmp_path) -> None:
    torch.manual_seed(0)
    ensemble = Ensemble([describe(LipSync(channels=8, embed_dim=8)), describe(TwoTower(embed_dim=16, frame_dim=8, temporal_dim=8,
                                                                                        audio_channels=8))], [1.0, 2.0])  # fmt: skip
    checkpoint = save_checkpoint(tmp_path / "mine.ckpt", ensemble)
    assert load_inference_model(checkpoint, "cpu").device == "cpu"  # no export yet: torch
    assert export_checkpoint(checkpoint) == tmp_path / "mine.onnx"
    loaded = load_inference_model(checkpoint, "auto")
    assert loaded.device == RUNTIME_DEVICE and loaded.describe()["network"] == "Ensemble"
    assert load_inference_model(tmp_path / "mine.onnx").device == RUNTIME_DEVICE  # the export itself
    crops, landmarks, log_mel = features(40, 60)
    torch_network = load_model(checkpoint, "cpu").network
    np.testing.assert_allclose(cost_matrix(loaded.network, crops, log_mel, landmarks=landmarks),
                               cost_matrix(torch_network, crops, log_mel, landmarks=landmarks), atol=1e-3)  # fmt: skip
    with torch.no_grad():
        next(ensemble.parameters()).add_(0.1)
    save_checkpoint(checkpoint, ensemble)  # retrained: the export no longer matches its bytes
    assert load_inference_model(checkpoint, "cpu").device == "cpu"
    with pytest.raises(AvsyncError, match="runs on the CPU"):
        load_inference_model(tmp_path / "mine.onnx", "cuda")


def test_what_cannot_be_exported_or_loaded_says_so(tmp_path) -> None:
    with pytest.raises(AvsyncError, match="PosterCNN cannot be exported"):
        export_network(PosterCNN(channels=(8, 8, 8)), tmp_path / "pair.onnx")
    assert not (tmp_path / "pair.onnx").exists()
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(AvsyncError, match="not an ONNX model"):
        load_inference_model(bogus)
