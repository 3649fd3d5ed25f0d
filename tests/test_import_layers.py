"""The package layers of `agentrft` (drawn in `agentrft/__init__.py`) hold in the source.

Every `import` and `from ... import` of every module is read with `ast` (imports inside
functions and under `TYPE_CHECKING` included: a lazy import is still a dependency), and:
- a module may import its own package and packages of lower layers, never a package of its
  own layer or of a higher one;
- no two modules import each other, directly or round a longer circle.

It reads this checkout's `agentrft`, or that of the checkout `AGENTRFT_ROOT` names (pytest puts
this checkout first on sys.path, so PYTHONPATH cannot point it elsewhere); nothing is imported.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

# Lowest first; a package may import only packages of earlier layers (and itself). The
# top-level modules (`errors.py`, `retry.py`, ...) count as packages of their own.
LAYERS: list[set[str]] = [
    {"errors"},
    {"retry", "httpio", "loopback", "malloc", "templates"},
    {"sandbox"},
    {"models"},
    {"spec"},
    {"engines"},
    {"tools", "graders"},
    {"rollout"},
    {"train"},
    {"analysis"},
    {"jobs"},
    {"web"},
    {"serving"},
    {"server"},
    {"cli"},
]

ROOT = Path(os.environ.get("AGENTRFT_ROOT", Path(__file__).resolve().parents[1])) / "agentrft"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The agentrft modules `name` imports (`from pkg import mod` counts as importing mod)."""
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports mod; `from mod import name` imports mod
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                          for alias in node.names]
        else:
            continue
        for target in candidates:
            while target and target not in known:  # `pkg.mod.func` -> `pkg.mod`
                target = target.rpartition(".")[0]
            if target and target != name and target != "agentrft":
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _layer(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise AssertionError(f"package agentrft.{package} is in no layer: add it to LAYERS and to "
                         f"the drawing in agentrft/__init__.py")


def test_every_package_has_a_layer():
    for module in _modules():
        if module != "agentrft":
            _layer(_package(module))


def test_no_import_runs_upward_or_sideways():
    bad = []
    for module, targets in _graph().items():
        if module == "agentrft":
            continue
        mine = _package(module)
        for target in targets:
            theirs = _package(target)
            if theirs != mine and _layer(theirs) >= _layer(mine):
                bad.append(f"{module} (layer {_layer(mine)}) imports {target} (layer {_layer(theirs)})")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_check_sees_an_upward_import_and_a_cycle():
    graph = {"agentrft.tools.a": {"agentrft.tools.b"}, "agentrft.tools.b": {"agentrft.tools.c"},
             "agentrft.tools.c": {"agentrft.tools.a"}, "agentrft.tools.d": {"agentrft.tools.a"}}
    assert _cycles(graph) == [["agentrft.tools.a", "agentrft.tools.b", "agentrft.tools.c"]]
    assert _layer("jobs") > _layer("models") and _layer("tools") == _layer("graders")


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
