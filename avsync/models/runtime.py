"""The networks run by onnxruntime: what `avsync align`, the shoot, `avsync check` and `avsync eval` load.

`load_inference_model` loads a checkpoint's ONNX export (`avsync.models.export`, ``make export``:
``X.onnx`` beside ``X.ckpt``, used only while its recorded SHA-256 matches the checkpoint's bytes)
as objects with the methods `avsync.align.cost` calls on the torch networks, on numpy arrays:

* `OnnxTwoTower`: ``encode_video`` float ``[B, 16, 64, 64]`` -> unit ``[B, D]``, ``encode_audio``
  float ``[B, 80, 64]`` -> ``[B, D]``, ``score`` ``[N, D]`` x ``[M, D]`` -> logits ``[N, M]``;
* `OnnxLipSync`: ``sequence_logits`` (lips ``[N, lip_dim]``, log-mel ``[80, 4M]``) -> ``[N, M]``;
* `OnnxEnsemble`: ``members`` and their cost ``weights``.

The shipped checkpoints ship with their exports. A checkpoint without a matching export (a user's
``--checkpoint``: ``make export CKPT=...`` writes one), a PosterCNN, or ``--device cuda`` runs
through torch (`avsync.models.checkpoints.load_model`), the same cost code on the torch networks;
tests/test_onnx.py holds the two within 1e-4. `avsync align`, the shoot and `avsync check` never
import torch on this path (tests/test_layers.py); `avsync eval` loads the same way, so it measures
what they run (DTW near-ties follow differences of 1e-5 in the cost: on the synthetic test songs
torch's networks gave 1 point more frames within +-1 than onnxruntime's).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from avsync.errors import AvsyncError
from avsync.features.audio import frame_log_mel
from avsync.models.checkpoints import LoadedModel, existing_checkpoint, load_model

METADATA_KEY = "avsync"
"""The ONNX model's metadata entry with the export's JSON (`avsync.models.export`)."""
EXPORT_FORMAT = 1
"""Version of the export's layout (input and output names, metadata); another version is refused."""
ONNX_SUFFIX = ".onnx"
RUNTIME_DEVICE = "onnxruntime"
"""`LoadedModel.device` of a network that runs through onnxruntime (on the CPU)."""

SAME_AS_REQUESTED = 1
"""onnxruntime's ``arena_extend_strategy`` value that grows an arena by the size requested."""

_threads = 0
"""Compute threads of the sessions made from now on (0: onnxruntime's default, one per core)."""
_arena_registered = False
"""Whether this process registered its CPU arena with onnxruntime (`_share_tight_arena`)."""


def set_threads(threads: int) -> None:
    """Compute threads for the networks loaded from now on (a ``--jobs`` worker's share); torch's too when loaded.

    Args:
        threads: threads per network; 0 for the runtime's default.
    """
    global _threads
    _threads = max(0, int(threads))
    if _threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_threads)


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class OnnxGraph:
    """One exported ONNX model in an onnxruntime session; inputs not fed get an empty batch.

    Args:
        session: the ``onnxruntime.InferenceSession``.
        metadata: the export's JSON (`avsync.models.export`).
    """

    def __init__(self, session: Any, metadata: dict) -> None:
        self.session = session
        self.metadata = metadata
        # onnxruntime wants every graph input fed: the functions not asked for get zero-size batches
        self.idle = {name: np.zeros(shape, np.float32) for spec in metadata["members"] for name, shape in spec["inputs"].items()}

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs for the given inputs (float32; the others fed empty)."""
        given = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in feeds.items()}
        return self.session.run(outputs, {**self.idle, **given})


class OnnxTwoTower:
    """A TwoTower's encoders (`avsync.models.TwoTower`) through onnxruntime.

    Args:
        graph: the exported model.
        spec: this member's entry of the export's metadata.
    """

    network_name = "TwoTower"
    video_input = "mouth"

    def __init__(self, graph: OnnxGraph, spec: dict) -> None:
        self.graph = graph
        self.scale, self.bias = np.float32(spec["scale"]), np.float32(spec["bias"])
        (self._mouth, self._mel), (self._video, self._audio) = list(spec["inputs"]), spec["outputs"]

    @property
    def weights_id(self) -> str | None:
        """What names this tower's weights beyond the process (the exported checkpoint's SHA-256 and the
        audio output's name; `avsync.align.cost.EmbeddingStore`), or None for an export that does not record it."""
        checkpoint = self.graph.metadata.get("checkpoint_sha256")
        return None if not checkpoint else f"{checkpoint}/{self._audio}"

    def encode_video(self, mouth_clips: np.ndarray) -> np.ndarray:
        """Unit mouth embeddings: float ``[B, 16, 64, 64]`` in 0..1 -> float32 ``[B, D]``."""
        return self.graph.run([self._video], {self._mouth: mouth_clips})[0]

    def encode_audio(self, log_mel: np.ndarray) -> np.ndarray:
        """Unit audio embeddings: float ``[B, 80, 64]`` -> float32 ``[B, D]``."""
        return self.graph.run([self._audio], {self._mel: log_mel})[0]

    def score(self, video_emb: np.ndarray, audio_emb: np.ndarray) -> np.ndarray:
        """Match logits ``scale * cos + bias``: ``[N, D]`` x ``[M, D]`` -> float32 ``[N, M]``."""
        logits = (self.scale * video_emb) @ audio_emb.T
        logits += self.bias
        return logits


def pad_edges(sequence: np.ndarray, before: int, after: int) -> np.ndarray:
    """Repeat the first and last row of ``[T, C]`` `before` and `after` times (`avsync.models.lip_sync.pad_edges`)."""
    return sequence[np.clip(np.arange(-before, len(sequence) + after), 0, len(sequence) - 1)]


class OnnxLipSync:
    """LipSync's towers (`avsync.models.LipSync`) through onnxruntime.

    Args:
        graph: the exported model.
        spec: this member's entry of the export's metadata.
    """

    network_name = "LipSync"
    video_input = "lips"

    def __init__(self, graph: OnnxGraph, spec: dict) -> None:
        self.graph = graph
        self.scale, self.half_field = np.float32(spec["scale"]), int(spec["half_field"])
        (self._lips, self._frames), self._outputs = list(spec["inputs"]), spec["outputs"]

    def sequence_logits(self, lips: np.ndarray, log_mel: np.ndarray) -> np.ndarray:
        """Match logits of every video frame against every reference frame.

        Args:
            lips: float ``[N, lip_dim]`` lip geometry of the video.
            log_mel: float ``[80, 4M]`` of the reference.

        Returns:
            float32 ``[N, M]``.
        """
        half = self.half_field
        video = pad_edges(np.asarray(lips, np.float32), half, half)[None]
        audio = pad_edges(frame_log_mel(log_mel), half, half)[None]
        video_emb, audio_emb = self.graph.run(self._outputs, {self._lips: video, self._frames: audio})
        return (self.scale * video_emb[0]) @ audio_emb[0].T


class OnnxEnsemble:
    """An ensemble's members through onnxruntime and their cost weights (`avsync.models.Ensemble`)."""

    network_name = "Ensemble"

    def __init__(self, graph: OnnxGraph, members: list[OnnxTwoTower | OnnxLipSync], weights: list[float]) -> None:
        self.graph = graph
        self.members = members
        self.weights = [float(w) for w in weights]


OnnxNetwork = OnnxTwoTower | OnnxLipSync | OnnxEnsemble


def _share_tight_arena(onnxruntime: Any) -> None:
    """Register, once per process, a CPU arena that grows by what is asked, which every session uses.

    onnxruntime's default arena grows to the next power of two and keeps what it took: after a
    two-tower's video windows it held about 25 MB more at the peak of `avsync align` (a 30-s take
    against a 3-minute song) than one growing by the request, at the same speed.
    """
    global _arena_registered
    if _arena_registered:
        return
    memory = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT)
    onnxruntime.create_and_register_allocator(memory, onnxruntime.OrtArenaCfg({"arena_extend_strategy": SAME_AS_REQUESTED}))
    _arena_registered = True


def load_onnx(path: str | os.PathLike[str]) -> OnnxNetwork:
    """Load an ONNX export of `avsync.models.export` (CPU, onnxruntime).

    Raises:
        AvsyncError: not an ONNX model, not one of avsync's exports, or of another export format.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _threads
    options.log_severity_level = 3
    # threads sleep between calls instead of spinning: the lips worker runs beside them on few cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    _share_tight_arena(onnxruntime)
    options.add_session_config_entry("session.use_env_allocators", "1")
    try:
        session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, NoSuchFile, ...)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AvsyncError(f"not an ONNX model onnxruntime can run ({first_line[:160]})", path) from exc
    if raw is None:
        raise AvsyncError("an ONNX model without avsync's metadata: export the checkpoint with `make export CKPT=...`", path)
    metadata = json.loads(raw)
    if metadata.get("format") != EXPORT_FORMAT:
        raise AvsyncError(f"exported in format {metadata.get('format')}, this avsync reads {EXPORT_FORMAT}: export it again "
                          "(make export CKPT=...)", path)  # fmt: skip
    graph = OnnxGraph(session, metadata)
    members = [OnnxLipSync(graph, spec) if spec["network"] == "LipSync" else OnnxTwoTower(graph, spec) for spec in metadata["members"]]
    return OnnxEnsemble(graph, members, metadata["weights"]) if metadata["network"] == "Ensemble" else members[0]


def export_path(checkpoint: str | os.PathLike[str]) -> Path:
    """Where a checkpoint's ONNX export lives: beside it, ``X.ckpt`` -> ``X.onnx``."""
    return Path(checkpoint).with_suffix(ONNX_SUFFIX)


def load_inference_model(checkpoint: str | os.PathLike[str] | None, device: str = "auto") -> LoadedModel:
    """The network a command runs: the checkpoint's ONNX export through onnxruntime when it has one.

    Args:
        checkpoint: None or ``shipped``, ``latest``, a ``.ckpt`` or an ``.onnx`` export
            (`avsync.models.checkpoints.resolve_checkpoint`).
        device: ``auto`` or ``cpu``: onnxruntime when an export matches the checkpoint, else torch
            on that device; ``cuda``: torch on the GPU (onnxruntime runs on the CPU here).

    Returns:
        The loaded network (`LoadedModel.device` is ``onnxruntime`` for an export).

    Raises:
        AvsyncError: no such checkpoint, not a checkpoint or export, an ``.onnx`` with
            ``--device cuda``, or an unavailable device.
    """
    path = existing_checkpoint(checkpoint)
    onnx = path.suffix.lower() == ONNX_SUFFIX
    if device not in ("auto", "cpu"):
        if onnx:
            raise AvsyncError(f"an ONNX export runs on the CPU; give its .ckpt for --device {device}", path)
        return _torch_model(path, device)
    export = path if onnx else export_path(path)
    if export.is_file():
        network = load_onnx(export)
        if onnx or network.graph.metadata.get("checkpoint_sha256") == file_digest(path):
            return LoadedModel(network=network, path=path, device=RUNTIME_DEVICE)
    return _torch_model(path, device)  # no export of this checkpoint (or one of an older version of it)


def _torch_model(path: Path, device: str) -> LoadedModel:
    model = load_model(path, device)
    set_threads(_threads)
    return model
