"""The framework's imports run one way: no cycle among ``pipeline/`` modules (counting imports inside functions,
which only hide a cycle), and the framework never imports a concrete stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.fast


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path, known: set[str]) -> set[str]:
    """Every project module ``path`` imports, anywhere in it (``from pipeline import x`` counts as pipeline.x)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] in ("pipeline", "stages")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in ("pipeline", "stages"):
                continue
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs or {node.module}
    return out


def graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "pipeline").rglob("*.py"))
    known = {module_name(f) for f in files}
    g = {module_name(f): project_imports(f, known) for f in files}
    return {m: {d for d in deps if d != m} for m, deps in g.items()}


def test_no_import_cycle_in_the_framework():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if d not in g:
                continue
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_the_framework_imports_no_stage():
    offenders = {m: sorted(d for d in deps if d.startswith("stages")) for m, deps in graph().items()}
    assert not {m: d for m, d in offenders.items() if d}
