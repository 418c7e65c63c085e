"""Imports go one way (../shared/DESIGN.md): cli -> pipeline / evaluation / stages / training -> checkpoints
-> models, diffusion, data, metrics -> tensors. Read from the source with `ast` (nothing is imported), so
a wrong-way import or a cycle fails here however deep in a function it hides."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dawn_lightning"

# part -> the parts it must not import (a part is a top-level module or package of dawn_lightning)
FORBIDDEN = {
    "tensors": {
        "models",
        "diffusion",
        "data",
        "metrics",
        "checkpoints",
        "stages",
        "training",
        "callbacks",
        "pipeline",
        "evaluation",
        "released",
        "benchmarks",
        "cli",
    },
    "diffusion": {
        "models",
        "data",
        "metrics",
        "checkpoints",
        "stages",
        "training",
        "callbacks",
        "pipeline",
        "evaluation",
        "released",
        "benchmarks",
        "cli",
    },
    "models": {
        "data",
        "metrics",
        "checkpoints",
        "stages",
        "training",
        "callbacks",
        "pipeline",
        "evaluation",
        "released",
        "benchmarks",
        "cli",
    },
    "data": {"stages", "training", "callbacks", "pipeline", "evaluation", "released", "benchmarks", "cli"},
    "metrics": {
        "data",
        "stages",
        "training",
        "callbacks",
        "pipeline",
        "evaluation",
        "released",
        "benchmarks",
        "cli",
    },
    "checkpoints": {
        "data",
        "metrics",
        "stages",
        "training",
        "callbacks",
        "pipeline",
        "evaluation",
        "released",
        "benchmarks",
        "cli",
    },
    "training": {"stages", "pipeline", "evaluation", "released", "benchmarks", "cli"},
    "callbacks": {"stages", "pipeline", "evaluation", "released", "benchmarks", "cli"},
    "stages": {"pipeline", "evaluation", "released", "benchmarks", "cli"},
    "pipeline": {"stages", "training", "callbacks", "evaluation", "released", "benchmarks", "cli"},
    "evaluation": {"stages", "training", "callbacks", "released", "benchmarks", "cli"},
    "released": {"stages", "training", "callbacks", "pipeline", "evaluation", "benchmarks", "cli"},
    "benchmarks": {"cli"},
}
NO_LIGHTNING = {"tensors", "diffusion", "models", "checkpoints", "pipeline"}  # plain torch


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in it (``from pkg import mod`` counts as ``pkg.mod``);
    plus ``lightning`` when it imports Lightning."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in ("lightning", "pytorch_lightning"):
                found.add("lightning")
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(path, set(paths)) for name, path in paths.items()}


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan). A package's ``__init__`` importing its
    own submodules is not an edge back: importing ``pkg.mod`` runs ``pkg/__init__`` first by design."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    edges = {m: {t for t in targets if t != "lightning"} for m, targets in graph().items()}
    assert cycles(edges) == []


def test_imports_go_one_way():
    wrong = defaultdict(list)
    for module, targets in graph().items():
        for target in targets:
            if target == "lightning":
                if part(module) in NO_LIGHTNING:
                    wrong[module].append("lightning")
            elif part(target) in FORBIDDEN.get(part(module), ()):
                wrong[module].append(target)
    assert dict(wrong) == {}


def test_the_checker_sees_wrong_way_and_cyclic_imports(tmp_path, monkeypatch):
    """The checks above can fail: a model importing a stage, and two modules importing each other."""
    package = tmp_path / "dawn_lightning"
    for folder in ("models", "stages", "data"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "models" / "net.py").write_text("def f():\n    from dawn_lightning.stages import module\n")
    (package / "stages" / "module.py").write_text("import lightning as L\n")
    (package / "data" / "a.py").write_text("from dawn_lightning.data import b\n")
    (package / "data" / "b.py").write_text("from . import a\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    with pytest.raises(AssertionError, match=r"dawn_lightning\.models\.net"):
        test_imports_go_one_way()
    with pytest.raises(AssertionError, match=r"dawn_lightning\.data\.a"):
        test_no_import_cycle()
