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
