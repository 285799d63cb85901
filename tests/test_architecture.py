"""The package's shape, checked: layers import downwards only, nothing imports itself
back, and no file grows past what a reader takes in at once.

docs/design.md draws the layers; this test is what keeps the drawing true. Imports are
read from the source (ast), type-only ones (under ``if TYPE_CHECKING:``) included: a
type-only loop is still a loop for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "mcdns"
MAX_LINES = 450  # "about 450": a file a reader takes in at once

# Layer of each top-level part, bottom up; a module may import its own layer and below.
GROUND = 0
LAYERS: dict[str, int] = {
    "mcdns": GROUND, "mcdns.objects": GROUND, "mcdns.proto": GROUND,
    "mcdns.histogram": GROUND, "mcdns.config": GROUND, "mcdns.logs": GROUND,
    "mcdns.state": 1,
    "mcdns.answers": 2,
    "mcdns.dns": 3, "mcdns.resolver": 3,
    "mcdns.kube": 3,
    "mcdns.ops": 4,
    "mcdns.app": 5, "mcdns.cli": 5, "mcdns.__main__": 5,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The mcdns modules ``name`` imports (packages count as their __init__)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if t in MODULES and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return LAYERS[best]


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read() -> None:
    """The reader sees real imports (else every check below passes vacuously)."""
    assert "mcdns.answers.table" in GRAPH["mcdns.answers.compiler"]
    assert "mcdns.state.store" in GRAPH["mcdns.answers.health"]
    assert len(MODULES) > 40


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert _cycles() == []


def test_the_cycle_finder_finds_cycles() -> None:
    GRAPH["mcdns.proto"].add("mcdns.answers.table")  # table -> ... -> proto -> table
    try:
        assert any("mcdns.proto" in c for c in _cycles())
    finally:
        GRAPH["mcdns.proto"].discard("mcdns.answers.table")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name: str) -> None:
    up = sorted(m for m in GRAPH[name] if _layer(m) > _layer(name))
    assert up == [], f"{name} (layer {_layer(name)}) imports a higher layer"


@pytest.mark.parametrize("part", ["mcdns.state", "mcdns.answers"])
def test_state_and_answers_import_nothing_from_kube(part: str) -> None:
    bad = sorted(f"{m} -> {d}" for m in GRAPH if m.startswith(part + ".")
                 for d in GRAPH[m] if d.startswith("mcdns.kube"))
    assert bad == []


def test_dns_and_kube_do_not_know_each_other() -> None:
    """The query path and the watch streams meet only in the store (one way)."""
    bad = sorted(f"{m} -> {d}" for m in GRAPH for d in GRAPH[m]
                 if (m.startswith("mcdns.dns") and d.startswith(("mcdns.kube", "mcdns.ops")))
                 or (m.startswith("mcdns.kube") and d.startswith(("mcdns.dns", "mcdns.answers"))))
    assert bad == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_file_is_too_long(name: str) -> None:
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)}: {lines} lines"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_says_why_it_exists(name: str) -> None:
    path = MODULES[name]
    if path.name == "__init__.py" and not path.read_text().strip():
        return
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc.split()) >= 8, f"{path.relative_to(ROOT)}: no module docstring"
