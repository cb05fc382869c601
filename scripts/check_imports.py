"""Fails on any import circle inside ``streamdetect/``, between modules or between packages, and on any import
against the data path's direction.

Imports inside functions count: they hide a circle from Python at import time, not from a reader. Each
``import`` and ``from ... import`` statement is resolved to the deepest ``streamdetect`` module it names, so
``from streamdetect.sinks import base`` is an edge to ``streamdetect.sinks.base``.

The packages are floors of the data path, read bottom-up (``FLOORS``): a module may import its own package and
any package on a lower floor, never one on its own floor or above. A few packages are, in addition, imported only
by the ones named in ``ONLY_IMPORTED_BY`` (build-time export only by the command line).

usage: python -m scripts.check_imports [PACKAGE_DIR]     (exit 1 and one line per problem when there are any)
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = "streamdetect"

# Bottom first. Each entry is a package (``streamdetect.X``) or a top-level module; one floor per line.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("streamdetect",),  # the version only
    ("streamdetect.util",),  # no streamdetect import at all
    ("streamdetect.data",),  # files shipped with the package (the Triton Python backend runs inside tritonserver)
    ("streamdetect.plugins",),  # the Registry and the source and sink tables (lazy ``module:Class`` strings)
    ("streamdetect.schedule",),
    ("streamdetect.model",),  # the model folder: manifest, FrontendParams, identity, Triton repository
    ("streamdetect.config",),  # never a sink, a source or a model: plugin options arrive through the registry
    ("streamdetect.store",),
    ("streamdetect.report",),
    ("streamdetect.sources",),
    ("streamdetect.embed",),  # the model at run time: front end, encoders, clip embedding, vectors
    ("streamdetect.prompts",),  # what to listen for, as embeddings
    ("streamdetect.pipeline",),  # detection: windows, scores, events, streams, the detector
    ("streamdetect.events",),  # the import path third-party sinks use for the pipeline's records
    ("streamdetect.sinks",),
    ("streamdetect.analysis",),  # offline verbs and the embedding-log reader
    ("streamdetect.web",),  # the dashboard: handed its collaborators, never the daemon that owns it
    ("streamdetect.daemon",),  # builds the detector and wires a run together
    ("streamdetect.export",),  # build time only
    ("streamdetect.cli",),
    ("streamdetect.entry",),
    ("streamdetect.__main__",),
)

# package -> the only packages that may import it
ONLY_IMPORTED_BY: dict[str, tuple[str, ...]] = {
    "streamdetect.export": ("streamdetect.cli",),
}


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


def floor_of(module: str) -> tuple[int, str]:
    """The floor index and the floor's entry (package or top-level module) that ``module`` belongs to; a module on
    no floor is a floor of its own above all others, reported by ``unplaced``."""
    best: tuple[int, str] | None = None
    for level, entries in enumerate(FLOORS):
        for entry in entries:
            if module == entry or (entry != ROOT and module.startswith(entry + ".")):
                if best is None or len(entry) > len(best[1]):
                    best = (level, entry)
    return best if best is not None else (len(FLOORS), module)


def unplaced(edges: dict[str, list[Edge]]) -> list[str]:
    return [f"{module} is on no floor: add it (or its package) to FLOORS in scripts/check_imports.py"
            for module in sorted(edges) if floor_of(module)[0] == len(FLOORS)]


def layer_violations(edges: dict[str, list[Edge]], root: Path) -> list[str]:
    problems = []
    for module, out in sorted(edges.items()):
        level, package = floor_of(module)
        path = root.parent / (module.replace(".", "/") + ".py")
        for e in out:
            target_level, target_package = floor_of(e.target)
            if target_package == package:
                continue
            if target_level >= level:
                problems.append(f"{path}:{e.line}: {module} imports {e.target}, but {target_package} is not on a "
                                f"floor below {package}")
            allowed = ONLY_IMPORTED_BY.get(target_package)
            if allowed is not None and package not in allowed:
                problems.append(f"{path}:{e.line}: {module} imports {e.target}; only {', '.join(allowed)} may "
                                f"import {target_package}")
    return problems


def package_edges(edges: dict[str, list[Edge]]) -> dict[str, list[Edge]]:
    """The module graph folded onto floor entries, so a circle between packages shows even when no two modules
    form one."""
    folded: dict[str, list[Edge]] = {}
    for module, out in edges.items():
        package = floor_of(module)[1]
        folded.setdefault(package, [])
        for e in out:
            target = floor_of(e.target)[1]
            if target != package:
                folded[package].append(Edge(package, target, e.line))
    return folded


def problems(root: Path) -> list[str]:
    edges = graph(root)
    found = [f"import circle: {' -> '.join(c)}" for c in cycles(edges)]
    found += [f"package circle: {' -> '.join(c)}" for c in cycles(package_edges(edges))]
    return found + unplaced(edges) + layer_violations(edges, root)


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
