"""The reader registry: a module the readers do not import back, and no import cycle in
pipelines.radar."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.radar import composites, volumes
from pipelines.radar.formats import FORMATS
from pipelines.radar.readers import get_method, readers

REPO = Path(__file__).resolve().parents[2]
RADAR = REPO / "pipelines" / "radar"


@pytest.mark.parametrize("module", ["readers", "composites", "volumes", "products"])
def test_each_module_imports_alone(module: str):
    done = subprocess.run(
        [sys.executable, "-c", f"import pipelines.radar.{module}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def radar_imports(path: Path) -> set[str]:
    """The pipelines.radar modules a module imports anywhere: top level, in functions, under
    TYPE_CHECKING (a cycle through any of them is still a cycle)."""
    package = "pipelines.radar"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .x import y
                base = ".".join([package, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # from pkg import submodule
    modules = {p.stem for p in RADAR.glob("*.py") if p.stem != "__init__"}
    prefix = package + "."
    return {
        name[len(prefix) :].split(".")[0]
        for name in found
        if name.startswith(prefix) and name[len(prefix) :].split(".")[0] in modules
    } - {path.stem}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_among_radar_modules():
    graph = {p.stem: radar_imports(p) for p in RADAR.glob("*.py") if p.stem != "__init__"}
    assert "composites" in graph["readers"] and "volumes" in graph["readers"]  # the check sees
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_get_method_maps_every_format_to_its_reader():
    assert set(readers()) == set(FORMATS)
    assert get_method("knmi_hdf5") is composites.read_knmi
    assert get_method("odim_pvol") is volumes.read_odim_pvol
    with pytest.raises(ValueError, match="unknown reader 'gif'; known: bom_rf3, cfradial1"):
        get_method("gif")
