"""The models shipped inside avsync; ``lipsync_twotower`` is the default of `avsync align` and `avsync eval`.

``lipsync_twotower.ckpt`` is an `avsync.models.Ensemble` of LipSync (lip geometry,
`experiments/lipsync_real.yaml`) and the TwoTower ``twotower_realsynth.ckpt`` (mouth pixels,
`experiments/twotower_realsynth.yaml`), their costs weighted 1 and 2 (`combine_checkpoints`). Each
``.ckpt`` holds weights and the description that rebuilds the network (no optimizer state),
loadable by `avsync.models.checkpoints.load_model`; the ``.json`` beside it says what it was trained
on, how, and how it scored on held-out speakers (docs/real_faces.md has the whole table). The
TwoTower ships on its own too, as the member a cross-validated ensemble needs (`make eval-folds WITH=...`).
Each ``.ckpt`` ships with its ONNX export ``.onnx`` (``make export``, `avsync.models.export`), which
`avsync align`, the shoot and `avsync check` run through onnxruntime without importing torch; an
export records the SHA-256 of its checkpoint, and tests/test_onnx.py fails when a shipped checkpoint
changed without ``make export``.
"""

from __future__ import annotations

import json
from pathlib import Path

from avsync.errors import AvsyncError

PRETRAINED_NAME = "lipsync_twotower"
PRETRAINED_DIR = Path(__file__).resolve().parent


def pretrained_checkpoint(name: str = PRETRAINED_NAME) -> Path:
    """Path of a shipped checkpoint (default: the default model).

    Raises:
        AvsyncError: the file is missing (a broken installation).
    """
    path = PRETRAINED_DIR / f"{name}.ckpt"
    if not path.is_file():
        raise AvsyncError("the shipped model is missing from the installation (reinstall avsync, or pass --checkpoint)", path)
    return path


def pretrained_metadata(name: str = PRETRAINED_NAME) -> dict:
    """What a shipped model was trained on and how it scored (the JSON beside it).

    Raises:
        AvsyncError: the file is missing or not valid JSON.
    """
    path = PRETRAINED_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AvsyncError(f"cannot read the shipped model's metadata ({exc})", path) from exc


SHIPPED_KEYS = ("epoch", "global_step", "pytorch-lightning_version", "state_dict", "hparams_name", "hyper_parameters")
"""What a shipped checkpoint keeps of a training checkpoint (no optimizer, loop or datamodule state)."""


def strip_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Copy a training checkpoint keeping only what inference needs (`SHIPPED_KEYS`); atomic.

    Args:
        source: a ``.ckpt`` written by `avsync fit`.
        target: the file to write (must differ from `source`).

    Returns:
        The target path.

    Raises:
        AvsyncError: `target` is `source`, or `source` is not a Lightning checkpoint.
    """
    import torch

    from avsync.io.files import atomic_path

    source, target = Path(source), Path(target)
    if target.resolve() == source.resolve():
        raise AvsyncError("refusing to overwrite the input checkpoint", target)
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)  # tensors and plain containers only
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise AvsyncError("not a Lightning checkpoint with state_dict and hyper_parameters", source)
    with atomic_path(target) as temporary:
        torch.save({key: checkpoint[key] for key in SHIPPED_KEYS if key in checkpoint}, temporary)
        temporary.chmod(0o644)  # a package file: readable by everyone
    return target
