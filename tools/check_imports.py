"""Fails on any import circle inside ``streamdetect/`` and on any import against the data path's direction.

Imports inside functions count: they hide a circle from Python at import time, not from a reader. Each
``import`` and ``from ... import`` statement is resolved to the deepest ``streamdetect`` module it names, so
``from streamdetect.sinks import base`` is an edge to ``streamdetect.sinks.base``.

The layer rules say which packages a package may not import. Data flows sources -> pipeline -> sinks: a
source knows nothing of what consumes it, the pipeline knows nothing of sinks (it writes to an interface of its
own), and nothing below the command line imports it.

usage: python tools/check_imports.py [PACKAGE_DIR]     (exit 1 and one line per problem when there are any)
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = "streamdetect"

# package -> packages it must never import (prefixes of dotted module names)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "streamdetect.util": ("streamdetect.",),
    "streamdetect.sources": ("streamdetect.pipeline", "streamdetect.prompts", "streamdetect.sinks",
                             "streamdetect.daemon", "streamdetect.analysis", "streamdetect.cli",
                             "streamdetect.model.export"),
    "streamdetect.pipeline": ("streamdetect.sinks", "streamdetect.daemon", "streamdetect.analysis",
                              "streamdetect.cli", "streamdetect.model.export"),
    "streamdetect.prompts": ("streamdetect.sinks", "streamdetect.daemon", "streamdetect.analysis",
                             "streamdetect.cli"),
    "streamdetect.sinks": ("streamdetect.sources", "streamdetect.daemon", "streamdetect.analysis",
                           "streamdetect.cli", "streamdetect.prompts"),
    "streamdetect.daemon": ("streamdetect.analysis", "streamdetect.cli"),
    "streamdetect.analysis": ("streamdetect.cli", "streamdetect.daemon.engine"),
    "streamdetect.model": ("streamdetect.cli", "streamdetect.daemon", "streamdetect.analysis"),
    "streamdetect.config": ("streamdetect.pipeline", "streamdetect.prompts", "streamdetect.daemon",
                            "streamdetect.analysis", "streamdetect.cli", "streamdetect.model"),
    # The dashboard consumes what the daemon runs (store, config, pipeline types, the control API's reload
    # path); it never reaches into the service that owns it, the engine, the sources or the CLI.
    "streamdetect.web": ("streamdetect.cli", "streamdetect.analysis", "streamdetect.daemon.service",
                         "streamdetect.daemon.engine", "streamdetect.sources"),
}
# Only the daemon and the command line import the dashboard.
for _package in ("streamdetect.sources", "streamdetect.pipeline", "streamdetect.prompts", "streamdetect.sinks",
                 "streamdetect.analysis", "streamdetect.model", "streamdetect.config"):
    FORBIDDEN[_package] += ("streamdetect.web",)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(name: str, modules: set[str]) -> str | None:
    """The deepest module of ours that ``name`` (a dotted path, maybe ending in a class) lies in."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def imports_of(path: Path, module: str, is_package: bool, modules: set[str]) -> list[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    edges: list[Edge] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = resolve(name, modules)
            if target is not None and target != module:
                edges.append(Edge(module, target, node.lineno))
    return edges


def graph(root: Path) -> dict[str, list[Edge]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    return {m: imports_of(p, m, p.name == "__init__.py", modules) for m, p in files.items()}


def cycles(edges: dict[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for e in edges.get(v, []):
            if e.target not in index:
                visit(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in on_stack:
                low[v] = min(low[v], index[e.target])
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

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_violations(edges: dict[str, list[Edge]], root: Path) -> list[str]:
    problems = []
    for module, out in sorted(edges.items()):
        for package, banned in FORBIDDEN.items():
            if module != package and not module.startswith(package + "."):
                continue
            for e in out:
                if any(e.target == b.rstrip(".") or e.target.startswith(b.rstrip(".") + ".") for b in banned):
                    path = root.parent / (module.replace(".", "/") + ".py")
                    problems.append(f"{path}:{e.line}: {module} imports {e.target}, against the layer rule for "
                                    f"{package}")
    return problems


def problems(root: Path) -> list[str]:
    edges = graph(root)
    found = [f"import circle: {' -> '.join(c)}" for c in cycles(edges)]
    return found + layer_violations(edges, root)


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / ROOT
    found = problems(root)
    for line in found:
        print(line)
    if not found:
        print(f"no import circle and no layer violation in {root}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
