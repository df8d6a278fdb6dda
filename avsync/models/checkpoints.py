"""Find and load a trained model checkpoint for inference (`avsync align`, `avsync eval`).

Training (`make train`, `avsync fit`) saves Lightning checkpoints under ``runs/`` (pattern
``runs/<experiment>/<version>/checkpoints/*.ckpt``); the hyperparameters stored in a checkpoint
rebuild the network, so the file alone is enough. The default checkpoint is the model shipped with
avsync (`avsync.models.pretrained`, also named ``shipped``); ``latest`` names the newest ``*.ckpt`` anywhere
under ``runs/`` (by modification time).

`load_model` rebuilds the torch network (training, `make export`, a checkpoint without an export);
the commands that only run the networks (`avsync align`, the shoot, `avsync check`, `avsync eval`)
load its ONNX export when it has one (`avsync.models.runtime.load_inference_model`). torch is imported only when a network is loaded.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avsync.errors import AvsyncError

if TYPE_CHECKING:
    import torch

DEFAULT_RUNS_DIR = Path("runs")
LATEST = "latest"
SHIPPED = "shipped"
TRAIN_HINT = "train one with `make train` (or pass --checkpoint PATH; without --checkpoint the shipped model is used)"


@dataclass
class LoadedModel:
    """A network ready for inference.

    Attributes:
        network: the torch `nn.Module` in eval mode on `device` (`load_model`), or its onnxruntime
            counterpart (`avsync.models.runtime`; the same methods on numpy arrays).
        path: the checkpoint file.
        device: where the network runs (``cpu``, ``cuda:0``; ``onnxruntime`` for an ONNX export).
    """

    network: Any
    path: Path
    device: str

    def describe(self) -> dict:
        """The checkpoint path and the network class (for reports)."""
        return {"checkpoint": str(self.path), "network": getattr(self.network, "network_name", type(self.network).__name__)}


def find_latest_checkpoint(runs_dir: str | os.PathLike[str] = DEFAULT_RUNS_DIR) -> Path:
    """The newest ``*.ckpt`` of a training run under `runs_dir` (sweep trials under ``sweeps/`` left out).

    Args:
        runs_dir: where training writes its runs.

    Returns:
        The checkpoint path.

    Raises:
        AvsyncError: no checkpoint there; the message says what to run.
    """
    folder = Path(runs_dir)
    pattern = "*/*/checkpoints/*.ckpt"  # runs/<experiment>/<run>/checkpoints/; sweep trials live deeper
    candidates = [path for path in folder.glob(pattern) if path.is_file() and path.parts[-4] != "sweeps"] if folder.is_dir() else []
    if not candidates:
        raise AvsyncError(f"no model checkpoint found under {folder}/: {TRAIN_HINT}")
    return max(candidates, key=lambda path: (path.stat().st_mtime, str(path)))


def resolve_checkpoint(checkpoint: str | os.PathLike[str] | None) -> Path:
    """The checkpoint file a user's choice names.

    Args:
        checkpoint: None or ``shipped`` for the model shipped with avsync, ``latest`` for the newest
            checkpoint under ``runs/`` (`find_latest_checkpoint`), else a path.

    Raises:
        AvsyncError: ``latest`` with no checkpoint under ``runs/``, or a broken installation.
    """
    if checkpoint is None or str(checkpoint) == SHIPPED:
        from avsync.models.pretrained import pretrained_checkpoint

        return pretrained_checkpoint()
    if str(checkpoint) == LATEST:
        return find_latest_checkpoint()
    return Path(checkpoint)


def existing_checkpoint(checkpoint: str | os.PathLike[str] | None) -> Path:
    """`resolve_checkpoint`, then the file must exist and not be a folder.

    Raises:
        AvsyncError: no such file (see also `resolve_checkpoint`).
    """
    path = resolve_checkpoint(checkpoint)
    if not path.exists():
        raise AvsyncError("checkpoint not found", path)
    if path.is_dir():
        raise AvsyncError("is a folder, not a model checkpoint", path)
    return path


def resolve_device(device: str) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda`` (or ``cuda:N``) into a torch device.

    Args:
        device: ``auto`` picks CUDA when available, else the CPU.

    Raises:
        AvsyncError: an unknown name, or CUDA asked for but not available.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise AvsyncError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        return torch.device(device)
    raise AvsyncError(f"--device must be auto, cpu or cuda, got {device!r}")


NETWORK_PREFIX = "model."
"""Prefix of the network's weights in a checkpoint's ``state_dict`` (`LitAVSync.model`)."""


def network_weights(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The network's entries of a checkpoint's ``state_dict`` (``model.*``), without the prefix."""
    return {key.removeprefix(NETWORK_PREFIX): value for key, value in state_dict.items() if key.startswith(NETWORK_PREFIX)}


def network_from_checkpoint(checkpoint: dict) -> torch.nn.Module:
    """Rebuild the network of a loaded Lightning checkpoint of `avsync.training.lit_module.LitAVSync`.

    Reads only ``hyper_parameters["model"]`` (the `avsync.models.describe` description that
    training stores) and the ``model.*`` weights, so inference never imports Lightning (about 3 s
    of start-up on a 2-core CPU).

    Args:
        checkpoint: what `torch.load` returns for the ``.ckpt`` file.

    Returns:
        The network with its trained weights (train mode, on the weights' device).

    Raises:
        KeyError, TypeError, ValueError, RuntimeError: not such a checkpoint.
    """
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError("no hyper_parameters and state_dict (not a Lightning checkpoint)")
    from avsync.models.layers import build_network

    network = build_network(checkpoint["hyper_parameters"]["model"])
    network.load_state_dict(network_weights(checkpoint["state_dict"]))
    return network


def load_model(checkpoint: str | os.PathLike[str] | None, device: str = "auto") -> LoadedModel:
    """Load the network of a training checkpoint for inference.

    Args:
        checkpoint: a ``.ckpt`` file from `avsync fit`, ``latest`` or None (see `resolve_checkpoint`).
        device: ``auto``, ``cpu`` or ``cuda`` (see `resolve_device`).

    Returns:
        The network in eval mode.

    Raises:
        AvsyncError: missing file, a file that is not an avsync checkpoint, no checkpoint at
            all, or an unavailable device.
    """
    path = existing_checkpoint(checkpoint)
    import torch

    target = resolve_device(device)
    try:
        # weights_only: tensors and plain containers only, so a crafted file cannot run code on load;
        # torch warns about files it is about to refuse (a plain pickle's protocol): the error says it all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            stored = torch.load(path, map_location=target, weights_only=True)
        network = network_from_checkpoint(stored)
    except pickle.UnpicklingError as exc:
        raise AvsyncError("not an avsync model checkpoint (it holds Python objects beyond weights and "
                          "settings; refused, since loading them could run code)", path) from exc
    except (zipfile.BadZipFile, EOFError, KeyError, TypeError, ValueError, RuntimeError, AttributeError, StopIteration) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AvsyncError(f"not an avsync model checkpoint ({first_line[:160]})", path) from exc
    except OSError as exc:
        raise AvsyncError(f"cannot read the checkpoint ({exc.strerror or exc})", path) from exc
    return LoadedModel(network=network.to(target).eval(), path=path, device=str(target))
