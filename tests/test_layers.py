"""The package's layers: imports run downward only, and no module imports itself back.

    cli -> object -> loader -> link / events / programs / maps / externs / pins
        -> elf / btf -> _core

``errors``, ``constants``, ``spec`` and ``_version`` are shared by every layer and
import nothing of bpfload but each other (``spec`` needs ``constants``).  A module
may import its own layer (``link`` uses ``programs``) and any layer below.
Every import counts, including the ones inside functions (a lazy import
still ties the modules together), and the graph of all of them must have no
cycle.  No kernel needed: the source is read with :mod:`ast`.
"""
from __future__ import annotations

import ast
import pathlib
import re
from typing import Dict, List, Set

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "bpfload"

#: rank of each layer: a module may import modules of its rank or lower
LAYERS = {
    "shared": 0,       # errors, constants, spec, and the start-up helpers _records, _enums, _lazy
    "_core": 1,
    "elf": 2, "btf": 2, "_pyinsn": 2,
    "maps": 3, "programs": 3, "events": 3, "link": 3, "externs": 3, "pins": 3,
    "system": 3,
    "globaldata": 3,   # obj.bss/.data/.rodata through the map's mapping (duck-typed object)
    "loader": 4,
    "object": 5,
    "cli": 6,
    "export": 6,       # the exporter: uses object/loader/events; cli imports it
    "__init__": 7, "__main__": 7,   # the facade and the entry point sit on top
}
SHARED = {"errors", "constants", "spec", "_version", "_records", "_enums", "_lazy"}


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:            # bpfload itself
        return "__init__"
    top = parts[1]
    if top in SHARED:
        return "shared"
    if top == "__main__":
        return "__main__"
    return top


def _sources() -> Dict[str, pathlib.Path]:
    files = list(PKG.rglob("*.py")) + list(PKG.rglob("*.pyx"))
    return {_module_name(p): p for p in files if "__pycache__" not in p.parts}


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> List[str]:
    """Absolute bpfload module names an ``from ... import ...`` statement reaches."""
    if node.level:
        base = module.split(".")
        if not is_pkg:
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("bpfload"):
        return []
    # "from . import errors" names a module; "from .maps import Map" a name in one
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in SOURCES else target
            for a in node.names]


def _imports(sources: Dict[str, pathlib.Path]) -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for mod, path in sources.items():
        text = path.read_text()
        if path.suffix == ".pyx":
            # Cython is not Python: keep the first line of each Python-level
            # import (cimports are C-level) and close a parenthesised name list
            text = "\n".join(
                re.sub(r"\(.*$", "_", ln.strip()) for ln in text.splitlines()
                if re.match(r"\s*(from\s+\S+\s+import\s|import\s)", ln))
        tree = ast.parse(text, str(path))
        out: Set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                cands = _resolve(mod, path.name == "__init__.py", node)
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names if a.name.startswith("bpfload")]
            else:
                continue
            for c in cands:
                # the longest prefix that is a module of ours
                while c and c not in sources:
                    c = c.rpartition(".")[0]
                if c and c != mod:
                    out.add(c)
        graph[mod] = out
    return graph


SOURCES = _sources()
GRAPH = _imports(SOURCES)


def test_every_module_has_a_layer():
    unknown = sorted(m for m in SOURCES if _layer(m) not in LAYERS)
    assert not unknown, f"modules outside the known layers: {unknown}; add them to LAYERS"


def test_the_graph_is_not_empty():
    # the checks below would pass vacuously if the parser found nothing
    assert len(SOURCES) > 30
    assert "bpfload.maps" in GRAPH["bpfload.loader"]
    assert "bpfload.btf.targets" in GRAPH["bpfload.btf.core"]


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_imports_run_downward(module):
    rank = LAYERS[_layer(module)]
    upward = sorted(t for t in GRAPH[module]
                    if LAYERS[_layer(t)] > rank and not _is_own_package(module, t))
    assert not upward, f"{module} (layer {_layer(module)}) imports upward: {upward}"


def _is_own_package(module: str, target: str) -> bool:
    # a package's __init__ may re-export its own submodules
    return target.startswith(module + ".")


def test_shared_modules_import_only_shared():
    for mod in SOURCES:
        if _layer(mod) == "shared":
            bad = sorted(t for t in GRAPH[mod] if _layer(t) != "shared")
            assert not bad, f"{mod} is shared by every layer and must not import {bad}"


def test_core_imports_nothing_of_bpfload_but_errors():
    for mod in SOURCES:
        if _layer(mod) == "_core":
            bad = sorted(t for t in GRAPH[mod]
                         if _layer(t) != "_core" and t != "bpfload.errors")
            assert not bad, f"{mod} (compiled core) imports {bad}"


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle of *graph* as a list of modules, or [] (iterative DFS, three colours)."""
    colour: Dict[str, int] = {m: 0 for m in graph}
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [iter(sorted(graph[start]))]
        path = [start]
        colour[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return []


def test_no_import_cycle():
    # a submodule importing its own package's __init__ is re-export plumbing, not a cycle
    graph = {mod: {t for t in targets
                   if not (mod.startswith(t + ".") and SOURCES[t].name == "__init__.py")}
             for mod, targets in GRAPH.items()}
    cyc = _cycle(graph)
    assert not cyc, "import cycle: " + " -> ".join(cyc)


def test_cycle_detector_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
