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


#: The framework's layers, lowest first: a module imports only from its own layer or lower ones. ``draw`` and
#: ``store`` know nothing of the framework; ``core`` holds the contracts (components, stages, sources, verdicts,
#: tasks); ``proc`` the child processes; ``phases`` how work is cut into tasks; ``run`` the config, plugins, runner,
#: executors and verify; the stage families (stages/) are plugins on top of those; ``view`` is what a person sees
#: (report, status, compare) and may read stage classes through plugins; the CLI is the top. docs/architecture.md
#: says the same in prose.
LAYERS = ["pipeline.draw", "pipeline.store", "pipeline.core", "pipeline.proc", "pipeline.phases", "pipeline.run",
          "stages", "pipeline.view", "pipeline.cli"]
#: Modules outside the layers: the package itself and a development tool (tiny test models).
OUTSIDE = {"pipeline", "pipeline.tiny"}


def layer_of(module: str) -> int:
    hits = [i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + ".")]
    assert hits, f"{module}: in no layer of tests/pipeline/test_imports.py's LAYERS; place it"
    return hits[-1]


def test_every_import_goes_down_the_layers():
    files = sorted((ROOT / "pipeline").rglob("*.py")) + sorted((ROOT / "stages").rglob("*.py"))
    known = {module_name(f) for f in files}
    upward = []
    for f in files:
        m = module_name(f)
        if m in OUTSIDE:
            continue
        for d in sorted(project_imports(f, known) - OUTSIDE):
            if d in known or any(k.startswith(d + ".") for k in known):
                if layer_of(d) > layer_of(m):
                    upward.append(f"{m} -> {d}")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_layers_name_every_framework_module():
    for f in sorted((ROOT / "pipeline").rglob("*.py")):
        m = module_name(f)
        if m not in OUTSIDE:
            layer_of(m)


def test_the_readme_layout_names_every_framework_module():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):text.index("## Tests")]
    missing = [str(f.relative_to(ROOT)) for f in sorted((ROOT / "pipeline").rglob("*.py"))
               if f.name != "__init__.py" and f.name not in layout]
    missing += [str(d.relative_to(ROOT)) for d in sorted((ROOT / "pipeline").iterdir())
                if d.is_dir() and (d / "__init__.py").exists() and f"{d.name}/" not in layout]
    missing += [f"stages/{d.name}" for d in sorted((ROOT / "stages").iterdir())
                if d.is_dir() and (d / "__init__.py").exists() and f"{d.name}/" not in layout]
    assert not missing, f"README's Layout does not name: {missing}"
