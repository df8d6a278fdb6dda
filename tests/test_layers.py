"""The package's layers: imports point one way, and inference never loads training code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("conventions", "errors", "shards", "signals", "smoothing", "io", "features", "synth", "truth", "models", "align", "pipeline", "evaluation", "training",
          "commands", "cli", "__main__")
"""Subpackages (and top modules) of avsync from the bottom up: each may import only those before it."""
SAME_LEVEL = {frozenset({"conventions", "errors"})}


LOOPS_BEING_UNDONE = {frozenset({"avsync.features.landmarks", "avsync.features.mesh", "avsync.features.tracking"})}
"""Import loops inside a folder known and not yet undone: the mesh backend's (make_backend in
landmarks builds MeshLandmarks, whose box matching imports tracking, which imports landmarks)."""


def _module_name(path: Path) -> str:
    """``avsync/models/runtime.py`` -> ``avsync.models.runtime``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:`` (never run)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded |= {id(child) for statement in node.body for child in ast.walk(statement)}
    return guarded


def _imports(path: Path, *, run_only: bool = False) -> list[str]:
    """Absolute names of the modules a file imports (relative imports resolved; ``from avsync import x``
    gives ``avsync.x``), deferred imports inside functions included.

    Args:
        path: a module of avsync or datamodules.
        run_only: leave out the imports under ``if TYPE_CHECKING:``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_only(tree) if run_only else set()
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in `base` (dropped below)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def _layer(path: Path) -> str:
    parts = path.relative_to(REPO / "avsync").with_suffix("").parts
    return parts[0]


MODULES = {_module_name(path): path for package in ("avsync", "datamodules") for path in sorted((REPO / package).rglob("*.py"))}


def _known(name: str) -> str | None:
    """The module of ours `name` is or lies in (``avsync.models.TwoTower`` -> ``avsync.models``), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("path", sorted((REPO / "avsync").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_down_the_layers(path: Path) -> None:
    here = _layer(path)
    assert here in LAYERS or here == "__init__", f"{path}: avsync/{here} is not in LAYERS; place it"
    for module in _imports(path):
        if module.startswith("datamodules"):
            assert path == REPO / "avsync" / "commands" / "train.py", f"{path} imports {module} (only the fit command may)"
        module = _known(module) or ""
        if not module.startswith("avsync."):
            continue
        target = module.split(".")[1]
        if target == here or frozenset({here, target}) in SAME_LEVEL:
            continue
        assert LAYERS.index(target) < LAYERS.index(here), f"{path} ({here}) imports {module} ({target}), a layer above it"


@pytest.mark.parametrize("path", sorted((REPO / "datamodules").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_datamodules_sit_between_training_and_the_commands(path: Path) -> None:
    """The DataModules read avsync's features and models; nothing of avsync but the fit command reads them."""
    for module in filter(None, map(_known, _imports(path))):
        if module.startswith("avsync."):
            target = module.split(".")[1]
            assert LAYERS.index(target) <= LAYERS.index("training"), f"{path} imports {module}, a layer above training"


def test_no_import_loops_inside_a_folder() -> None:
    """No cycle of imports among our modules, deferred imports included (a deferred import hides a loop,
    it does not undo it); importing ``a.b.c`` imports the packages ``a.b`` and ``a`` too."""
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for module in filter(None, map(_known, _imports(path, run_only=True))):
            parts = module.split(".")
            # the packages above what it imports, but not its own: every module imports those first
            targets |= {".".join(parts[:k]) for k in range(1, len(parts)) if not name.startswith(".".join(parts[:k]) + ".")}
            targets.add(module)  # named explicitly: counts even when it is its own package
        graph[name] = {target for target in targets if target in MODULES and target != name}
    loops = [loop for loop in _strongly_connected(graph) if len(loop) > 1 and frozenset(loop) not in LOOPS_BEING_UNDONE]
    assert not loops, "import loops: " + "; ".join(" <-> ".join(sorted(loop)) for loop in loops)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components


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
