"""Export a checkpoint's networks to ONNX, for inference without torch (`avsync.models.runtime`).

``make export`` (``python -m avsync.models.export CKPT ...``) writes ``X.onnx`` beside each
``X.ckpt``: one ONNX graph holding every function the cost matrix calls, per member of an
ensemble (``m0_``, ``m1_``, ...):

* TwoTower: ``m{i}_mouth`` float ``[B, 16, 64, 64]`` (0..1) -> ``m{i}_video`` ``[B, D]`` and
  ``m{i}_mel`` float ``[B, 80, 64]`` -> ``m{i}_audio`` ``[B, D]``: `TwoTower.encode_video` and
  `TwoTower.encode_audio` (unit embeddings);
* LipSync: ``m{i}_lips`` float ``[1, T + 14, lip_dim]`` -> ``m{i}_lips_emb`` ``[1, T, D]`` and
  ``m{i}_frames`` float ``[1, M + 14, 80]`` -> ``m{i}_frames_emb`` ``[1, M, D]``:
  `LipSync.embed_lips` and `LipSync.embed_audio`.

The scalars (each member's cosine scale and bias, the ensemble's weights) and the SHA-256 of the
checkpoint the export was made from are JSON in the model's ``avsync`` metadata
(`avsync.models.runtime.METADATA_KEY`): an export is used for a checkpoint only while it matches
its bytes. Every export is checked before it is written: onnxruntime's outputs on random inputs
within `EXPORT_TOLERANCE` of torch's. PosterCNN (pair scoring) is not exported; its checkpoints
run through torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from avsync.errors import AvsyncError
from avsync.io.files import atomic_path
from avsync.models import is_ensemble
from avsync.models.checkpoints import existing_checkpoint, load_model
from avsync.models.layers import MELS_PER_FRAME, MOUTH_SIZE, N_MELS, WINDOW_FRAMES
from avsync.models.lip_sync import HALF_FIELD, LipSync
from avsync.models.runtime import EXPORT_FORMAT, METADATA_KEY, OnnxNetwork, file_digest, load_onnx
from avsync.models.two_tower import TwoTower

OPSET = 17
"""ONNX opset of the exports (onnxruntime 1.16 and later run it)."""
EXPORT_TOLERANCE = 1e-4
"""Largest difference between onnxruntime's and torch's outputs an export may have (embeddings, logits)."""


class _Functions(nn.Module):
    """Every exported function of the members as one module: inputs in member order, outputs likewise."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        outputs, position = [], 0
        for member in self.members:
            first, second = inputs[position : position + 2]
            position += 2
            if isinstance(member, LipSync):
                outputs += [member.embed_lips(first), member.embed_audio(second)]
            else:
                outputs += [member.encode_video(first), member.encode_audio(second)]
        return tuple(outputs)


def _member_spec(member: nn.Module, index: int) -> tuple[dict, list[Tensor], dict[str, dict[int, str]]]:
    """A member's metadata, example inputs and dynamic axes (see the module docstring for the names)."""
    prefix = f"m{index}_"
    if isinstance(member, LipSync):
        lip_dim = member.config["lip_dim"]
        field = 2 * HALF_FIELD + 1
        spec = {"network": "LipSync", "prefix": prefix, "scale": float(member.log_scale.detach().exp()), "half_field": HALF_FIELD,
                "inputs": {f"{prefix}lips": [0, field, lip_dim], f"{prefix}frames": [0, field, N_MELS]},
                "outputs": [f"{prefix}lips_emb", f"{prefix}frames_emb"]}  # fmt: skip
        examples = [torch.randn(1, 40 + 2 * HALF_FIELD, lip_dim), torch.randn(1, 50 + 2 * HALF_FIELD, N_MELS)]
        axes = {f"{prefix}lips": {0: "batch", 1: "lip_frames"}, f"{prefix}frames": {0: "batch", 1: "audio_frames"},
                f"{prefix}lips_emb": {0: "batch", 1: "lip_rows"}, f"{prefix}frames_emb": {0: "batch", 1: "audio_rows"}}  # fmt: skip
        return spec, examples, axes
    if isinstance(member, TwoTower):
        mouth, mel = [0, WINDOW_FRAMES, MOUTH_SIZE, MOUTH_SIZE], [0, N_MELS, WINDOW_FRAMES * MELS_PER_FRAME]
        spec = {"network": "TwoTower", "prefix": prefix, "scale": float(member.log_scale.detach().exp()), "bias": float(member.bias.detach()),
                "inputs": {f"{prefix}mouth": mouth, f"{prefix}mel": mel}, "outputs": [f"{prefix}video", f"{prefix}audio"]}  # fmt: skip
        examples = [torch.rand(3, *mouth[1:]), torch.randn(5, *mel[1:]) - 5]
        axes = {name: {0: "batch"} for name in [*spec["inputs"], *spec["outputs"]]}
        return spec, examples, axes
    raise AvsyncError(f"{type(member).__name__} cannot be exported to ONNX (TwoTower, LipSync and their ensembles can); "
                      "it runs through torch")  # fmt: skip


def export_network(network: nn.Module, target: str | os.PathLike[str], *, checkpoint_sha256: str | None = None,
                   checkpoint_name: str | None = None) -> Path:
    """Export a network (TwoTower, LipSync or an Ensemble of them) to one ONNX file, checked and atomic.

    Args:
        network: the torch network (put in eval mode here).
        target: the ``.onnx`` to write.
        checkpoint_sha256: the SHA-256 of the checkpoint it was loaded from (recorded in the metadata).
        checkpoint_name: that checkpoint's file name (recorded too).

    Returns:
        The target path.

    Raises:
        AvsyncError: a network that cannot be exported, or an export whose outputs differ from
            torch's by more than `EXPORT_TOLERANCE`.
    """
    network = network.eval()
    members = list(network.members) if is_ensemble(network) else [network]
    specs, examples, axes = [], [], {}
    for index, member in enumerate(members):
        spec, member_examples, member_axes = _member_spec(member, index)
        specs.append(spec)
        examples += member_examples
        axes.update(member_axes)
    metadata = {"format": EXPORT_FORMAT, "network": "Ensemble" if is_ensemble(network) else specs[0]["network"],
                "members": specs, "weights": [float(w) for w in network.weights] if is_ensemble(network) else [1.0],
                "checkpoint": checkpoint_name, "checkpoint_sha256": checkpoint_sha256}  # fmt: skip
    functions = _Functions(members).eval()
    input_names = [name for spec in specs for name in spec["inputs"]]
    output_names = [name for spec in specs for name in spec["outputs"]]
    target = Path(target)
    with atomic_path(target) as temporary:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(functions, tuple(examples), str(temporary), input_names=input_names, output_names=output_names,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)  # fmt: skip
        import onnx

        model = onnx.load(str(temporary))
        model.doc_string = f"avsync {metadata['network']} exported from {checkpoint_name or 'a network'} (avsync.models.export)"
        onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})
        onnx.save(model, str(temporary))
        temporary.chmod(0o644)
        _check_export(functions, load_onnx(temporary), specs)
    return target


def _check_export(functions: _Functions, exported: OnnxNetwork, specs: list[dict]) -> None:
    """Raise unless onnxruntime's outputs match torch's within `EXPORT_TOLERANCE` on fresh random inputs."""
    generator = torch.Generator().manual_seed(0)
    inputs = []
    for spec in specs:
        for shape in spec["inputs"].values():
            size = [7 if spec["network"] == "TwoTower" else 1, shape[1] + (33 if spec["network"] == "LipSync" else 0), *shape[2:]]
            inputs.append(torch.rand(size, generator=generator) if len(size) == 4 else torch.randn(size, generator=generator))
    with torch.no_grad():
        expected = [tensor.numpy() for tensor in functions(*inputs)]
    feeds = dict(zip([name for spec in specs for name in spec["inputs"]], (tensor.numpy() for tensor in inputs), strict=True))
    outputs = [name for spec in specs for name in spec["outputs"]]
    inputs_of = {name: inputs for spec in specs for name, inputs in zip(spec["outputs"], spec["inputs"], strict=True)}
    for name, want in zip(outputs, expected, strict=True):
        # each output alone, as the cost matrix asks for them: the other inputs are fed empty batches
        have = exported.graph.run([name], {inputs_of[name]: feeds[inputs_of[name]]})[0]
        worst = float(np.abs(want - have).max()) if want.size else 0.0
        if want.shape != have.shape or worst > EXPORT_TOLERANCE:
            raise AvsyncError(f"the ONNX export's {name} differs from torch's by {worst:.2g} (shapes {have.shape}, {want.shape})")


def export_checkpoint(checkpoint: str | os.PathLike[str], target: str | os.PathLike[str] | None = None) -> Path:
    """Export a checkpoint's network to ``X.onnx`` beside ``X.ckpt`` (or to `target`).

    Args:
        checkpoint: a ``.ckpt`` (`avsync.models.checkpoints.resolve_checkpoint` names: a path,
            ``shipped``, ``latest``).
        target: where to write; default the checkpoint's path with the suffix ``.onnx``.

    Returns:
        The ONNX file written.

    Raises:
        AvsyncError: see `load_model` and `export_network`.
    """
    path = existing_checkpoint(checkpoint)
    loaded = load_model(path, "cpu")
    return export_network(loaded.network, Path(target) if target is not None else path.with_suffix(".onnx"),
                          checkpoint_sha256=file_digest(path), checkpoint_name=path.name)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m avsync.models.export CKPT ...``: export each checkpoint beside itself."""
    parser = argparse.ArgumentParser(prog="python -m avsync.models.export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoints to export (X.ckpt -> X.onnx)")
    args = parser.parse_args(argv)
    try:
        for checkpoint in args.checkpoints:
            target = export_checkpoint(checkpoint)
            print(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB)")
    except AvsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
