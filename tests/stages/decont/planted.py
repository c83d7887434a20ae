"""Planted contamination for the decontamination tests: HumanEval's items (prompt + canonical solution) put into
the real Python corpus four ways — verbatim as a file of their own, inside a larger real file, renamed (every name
the item defines replaced, then ``ruff format``), and with its comments changed (the docstring reworded, comments
added)."""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from stages.decont.benchmarks import BenchmarkSet

KEEP = set(keyword.kwlist) | set(dir(builtins)) | {"self", "cls"}


def humaneval() -> list[tuple[str, str]]:
    return BenchmarkSet(recipe="humaneval").items()


def renamed(code: str, k: int) -> str:
    """Every name the code binds (functions, arguments, assigned variables, loop targets) renamed."""
    tree = ast.parse(code)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    for j, name in enumerate(sorted(names - KEEP)):
        code = re.sub(rf"\b{re.escape(name)}\b", f"{'qwxz'[j % 4]}{k}_{j}", code)
    return code


def reworded(code: str, k: int) -> str:
    """The docstring's sentences replaced by other words, and a comment line added before every return."""
    code = re.sub(r'"""[\s\S]*?"""', f'"""Helper number {k}: see the notes in the module header for details."""',
                  code, count=1)
    return re.sub(r"^(\s*)return ", r"\1# the result, computed above\n\1return ", code, flags=re.M)


def ruff_format(codes: list[str]) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f"f{i}.py" for i in range(len(codes))]
        for p, c in zip(paths, codes):
            p.write_text(c)
        subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", "--no-cache", d], check=False,
                       capture_output=True)
        return [p.read_text() for p in paths]


def planted(corpus_texts: list[str]) -> dict[str, list[tuple[str, str]]]:
    """kind -> [(HumanEval task id, planted text)] for verbatim, inside, renamed and reworded."""
    items = humaneval()
    hosts = [t for t in corpus_texts if 2_000 <= len(t) <= 20_000]
    out: dict[str, list[tuple[str, str]]] = {"verbatim": [], "inside": [], "renamed": [], "reworded": []}
    for k, (task, text) in enumerate(items):
        out["verbatim"].append((task, text))
        host = hosts[k * 7 % len(hosts)]
        cut = host.find("\n\n", len(host) // 2)
        out["inside"].append((task, host[:cut] + "\n\n\n" + text + "\n\n" + host[cut:]))
        out["reworded"].append((task, reworded(text, k)))
    for (task, _), code in zip(items, ruff_format([renamed(text, k) for k, (_, text) in enumerate(items)])):
        out["renamed"].append((task, code))
    return out
