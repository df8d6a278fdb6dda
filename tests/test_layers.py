"""The package's layers: imports point one way, and inference never loads training code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("conventions", "errors", "shards", "signals", "io", "features", "synth", "truth", "models", "align", "pipeline", "evaluation", "training",
          "commands", "cli", "__main__")
"""Subpackages (and top modules) of avsync from the bottom up: each may import only those before it."""
SAME_LEVEL = {frozenset({"conventions", "errors"})}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def _layer(path: Path) -> str:
    parts = path.relative_to(REPO / "avsync").with_suffix("").parts
    return parts[0]


@pytest.mark.parametrize("path", sorted((REPO / "avsync").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_down_the_layers(path: Path) -> None:
    here = _layer(path)
    assert here in LAYERS or here == "__init__", f"{path}: avsync/{here} is not in LAYERS; place it"
    for module in _imports(path):
        if module.startswith("datamodules"):
            assert path == REPO / "avsync" / "commands" / "train.py", f"{path} imports {module} (only the fit command may)"
        if not module.startswith("avsync."):
            continue
        target = module.split(".")[1]
        if target == here or frozenset({here, target}) in SAME_LEVEL:
            continue
        assert LAYERS.index(target) < LAYERS.index(here), f"{path} ({here}) imports {module} ({target}), a layer above it"


def test_datamodules_never_imported_by_inference() -> None:
    code = ("import sys, avsync.commands.align, avsync.commands.eval, avsync.pipeline.sync, avsync.evaluation.harness; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('datamodules', 'pytorch_lightning', 'lightning')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


TORCH_FAMILY = ("torch", "torchaudio", "pytorch_lightning", "lightning", "datamodules")
"""What inference must not load (torch alone costs 1.7 s and ~500 MB of mapped libraries)."""


def _loaded(code: str) -> list[str]:
    """Run `code` in a fresh interpreter; the torch-family modules it left loaded."""
    report = f"\nimport sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(TORCH_FAMILY)!r}))"
    result = subprocess.run([sys.executable, "-c", code + report], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])  # noqa: S307 (our own print of a list of names)


def test_inference_imports_neither_torch_nor_lightning() -> None:
    """What `avsync align`, the shoot and `avsync check` run: the shipped model's ONNX export through
    onnxruntime, the log-mel, the cost and the analysis (issue 20 item 2)."""
    code = """
import numpy as np
import avsync.commands.align, avsync.commands.align_shots, avsync.commands.check
import avsync.pipeline.sync, avsync.pipeline.shots, avsync.pipeline.check
from avsync.align.analysis import sync_features
from avsync.features.audio import log_mel
from avsync.models.runtime import load_inference_model
model = load_inference_model(None, 'auto')
assert model.device == 'onnxruntime', model.device
rng = np.random.default_rng(0)
mel = log_mel(rng.standard_normal(16000 * 6).astype(np.float32))
crops = rng.integers(0, 256, (100, 64, 64), dtype=np.uint8)
landmarks = (rng.uniform(100, 200, (1, 68, 2)) + rng.normal(0, 2, (100, 68, 2))).astype(np.float32)
sync_features(crops, np.ones(100, bool), mel, model.network, landmarks=landmarks)
"""
    assert _loaded(code) == []


@pytest.mark.slow
def test_the_commands_run_without_torch(tmp_path: Path, song: Path) -> None:
    """The commands themselves, end to end on a synthetic singer: align, the shoot (a folder of takes), check."""
    (tmp_path / "takes").mkdir()
    (tmp_path / "takes" / "take.mp4").write_bytes((song / "Video.mp4").read_bytes())
    video, music = song / "Video.mp4", song / "Mix.wav"
    runs = [["align", video, music, "--report", tmp_path / "a.json"],
            ["align", tmp_path / "takes", music, "--out-dir", tmp_path / "shoot"],
            ["check", video, music, "--report", tmp_path / "c.json"]]  # fmt: skip
    calls = "".join(f"assert main({[*map(str, run), '--quiet']!r}) == 0\n" for run in runs)
    assert _loaded("from avsync.cli import main\n" + calls) == []
    assert (tmp_path / "a.json").is_file() and (tmp_path / "c.json").is_file() and any((tmp_path / "shoot").iterdir())


def test_writing_a_report_or_manifest_does_not_load_pyav() -> None:
    """File safety (`avsync.io.files`) is apart from decoding and encoding (`avsync.io.media`)."""
    code = "import sys, avsync.io.files, avsync.pipeline.report, avsync.features.manifest; print('av' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
