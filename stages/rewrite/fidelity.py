"""Is a code rewrite the same program? Checks that read both texts and never run either.

``compile()`` is no check of a rewrite: on 24 real files, 9 of the SGCR rewrites a real 1.5B coding model wrote used
names they never defined or imported (``deque``, ``Tuple``, ``os``, a parameter renamed but still used under its old
name), and all of them compiled. Each check here compares the rewrite with its input:

* ``new_undefined``: names the rewrite uses but never binds (ruff's pyflakes rules F821 undefined name and F822
  undefined name in ``__all__``) that the input did not lack. One ruff process per batch, in isolated mode (no
  configuration read from any disk).
* ``lost_definitions``: top-level functions and classes (and methods of top-level classes) of the input missing
  from the rewrite, not counting renames (``renamed``: a definition of the same kind whose name holds the old one's
  letters, ``getfiles`` -> ``get_files``).
* ``changed_kind``: the same name now a different kind (function, async function, generator, async generator,
  class).
* ``changed_signature``: a function that no longer accepts every call the input's accepted (fewer positional
  parameters, more required ones, a keyword name gone, ``*args``/``**kwargs`` dropped). The first parameter of a
  method (``self``/``cls``) may be renamed.
* ``lost_tests``: the input held tests (``test_*`` functions or methods) and the rewrite holds none.
* ``lost_public``: public top-level names (functions, classes, assigned constants; not ``_private``) of the input
  the rewrite no longer binds.
* ``shadowed_imports``: names the input imported that the rewrite defines itself instead (a stub class in place of
  ``from .cartan_type import CartanType``: the module no longer re-exports the real one).
* ``length_ratio``: characters of the rewrite over the input's.

``repair_imports`` re-adds, for a new undefined name, the input's own top-level import that bound it (e.g. the
rewrite uses ``deque`` and dropped ``from collections import deque``): the import statement is put back at the top.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: The checks, in the order they are reported; each is also the reason's suffix (``fidelity_<check>``... see
#: ``REASONS``).
CHECKS = ("new_undefined", "lost_definitions", "changed_kind", "changed_signature", "lost_tests", "lost_public",
          "shadowed_imports")
#: The reason a failed check gives.
REASONS = {"new_undefined": "new_undefined_name", "lost_definitions": "lost_definition",
           "changed_kind": "changed_kind", "changed_signature": "changed_signature", "lost_tests": "lost_tests",
           "lost_public": "lost_public_name", "shadowed_imports": "shadowed_import"}

_NAME_IN_MESSAGE = re.compile(r"`([^`]{1,200})`")


def undefined_names(texts: list[str | None], timeout_s: float = 600) -> list[set[str] | None]:
    """For each text, the names ruff's F821/F822 find undefined (None for a text that is None). One ruff
    process for the batch, isolated (``--isolated``: no configuration file is read), no cache."""
    from stages.text.python_code import ruff_bin

    out: list[set[str] | None] = [None if t is None else set() for t in texts]
    if not any(t is not None for t in texts):
        return out
    with tempfile.TemporaryDirectory(prefix="swallow-fidelity-") as tmp:
        names = {}
        for i, t in enumerate(texts):
            if t is None:
                continue
            path = os.path.join(tmp, f"f{i}.py")
            Path(path).write_text(t, encoding="utf-8", errors="surrogatepass")
            names[os.path.realpath(path)] = i
        target = f"py3{sys.version_info.minor}"
        proc = subprocess.run([ruff_bin(), "check", "--no-cache", "--isolated", "--output-format=json",
                               "--select=F821,F822", f"--target-version={target}", "--exit-zero", tmp],
                              capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"ruff failed: {proc.stderr[:500]}")
        for v in json.loads(proc.stdout or "[]"):
            i = names.get(os.path.realpath(v.get("filename", "")))
            m = _NAME_IN_MESSAGE.search(v.get("message") or "")
            if i is not None and m and v.get("code") in ("F821", "F822"):
                out[i].add(m.group(1))
    return out


@dataclass(frozen=True)
class Def:
    kind: str  # function, async function, generator, async generator, class
    params: tuple | None = None  # (positional names, required positional count, kwonly names, required kwonly,
    #                               has *args, has **kwargs) for functions


def _is_generator(fn: ast.AST) -> bool:
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # a nested scope's yield is its own
        stack.extend(ast.iter_child_nodes(node))
    return False


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple:
    a = fn.args
    positional = [p.arg for p in a.posonlyargs + a.args]
    required = len(positional) - len(a.defaults)
    kwonly = [p.arg for p in a.kwonlyargs]
    required_kw = [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    return (tuple(positional), required, tuple(kwonly), tuple(required_kw), a.vararg is not None,
            a.kwarg is not None, len(a.posonlyargs))


def _def_of(node: ast.AST) -> Def | None:
    if isinstance(node, ast.ClassDef):
        return Def("class")
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        gen = _is_generator(node)
        kind = ("async " if isinstance(node, ast.AsyncFunctionDef) else "") + ("generator" if gen else "function")
        return Def(kind, _params(node))
    return None


@dataclass
class Outline:
    """What the checks read of one program: its definitions, public names and tests."""

    defs: dict[str, Def] = field(default_factory=dict)  # "name" or "Class.method"
    public: set[str] = field(default_factory=set)
    tests: int = 0
    imports: dict[str, str] = field(default_factory=dict)  # bound name -> the import statement that binds it


def outline(code: str) -> Outline | None:
    """The outline of ``code``, or None when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    o = Outline()
    for node in tree.body:
        d = _def_of(node)
        if d is not None:
            o.defs[node.name] = d
            if not node.name.startswith("_"):
                o.public.add(node.name)
            if d.kind != "class" and node.name.startswith("test"):
                o.tests += 1
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    m = _def_of(item)
                    if m is not None and not isinstance(item, ast.ClassDef):
                        o.defs[f"{node.name}.{item.name}"] = Def(m.kind, m.params)
                        if item.name.startswith("test"):
                            o.tests += 1
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and not n.id.startswith("_"):
                        o.public.add(n.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    continue
                bound = alias.asname or alias.name.split(".")[0]
                if isinstance(node, ast.Import):
                    stmt = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                else:
                    stmt = f"from {'.' * node.level}{node.module or ''} import {alias.name}" + \
                           (f" as {alias.asname}" if alias.asname else "")
                o.imports.setdefault(bound, stmt)
    return o


def signature_compatible(old: tuple, new: tuple, method: bool) -> bool:
    """Whether every call the ``old`` parameters accept, the ``new`` ones accept too (see the module docstring)."""
    o_pos, o_req, o_kw, o_req_kw, o_var, o_kwarg, o_posonly = old
    n_pos, n_req, n_kw, n_req_kw, n_var, n_kwarg, n_posonly = new
    if len(n_pos) < len(o_pos) and not n_var:
        return False
    if n_req > o_req:
        return False
    if (o_var and not n_var) or (o_kwarg and not n_kwarg):
        return False
    if set(n_req_kw) - set(o_req_kw):
        return False
    if not n_kwarg:
        skip = 1 if method else 0
        keywordable = set(o_pos[max(skip, o_posonly):]) | set(o_kw)
        accepts = set(n_pos[n_posonly:]) | set(n_kw)
        if keywordable - accepts:
            return False
    return True


@dataclass
class Fidelity:
    """The findings for one rewrite (empty lists: the check passed)."""

    new_undefined: list[str] = field(default_factory=list)
    lost_definitions: list[str] = field(default_factory=list)
    changed_kind: list[str] = field(default_factory=list)
    changed_signature: list[str] = field(default_factory=list)
    lost_tests: list[str] = field(default_factory=list)
    lost_public: list[str] = field(default_factory=list)
    shadowed_imports: list[str] = field(default_factory=list)
    length_ratio: float | None = None
    repaired_imports: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)

    def failed(self, checks) -> str | None:
        """The first of ``checks`` that failed (its reason), or None."""
        for c in CHECKS:
            if c in checks and getattr(self, c):
                return REASONS[c]
        return None

    def detail(self, check: str) -> str:
        items = getattr(self, check)
        text = ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
        return {"new_undefined": f"uses {text}, never defined or imported (the input did not lack them)",
                "lost_definitions": f"the input's {text} missing from the rewrite",
                "changed_kind": f"another kind of definition: {text}",
                "changed_signature": f"no longer accepts the input's calls: {text}",
                "lost_tests": f"the input held tests ({text}); the rewrite holds none",
                "lost_public": f"the input's public names {text} are no longer bound",
                "shadowed_imports": f"defines {text} itself where the input imported it"}[check]


def _norm(name: str) -> str:
    return name.rsplit(".", 1)[-1].replace("_", "").lower()


def renamed_to(name: str, d: Def, old: Outline, new: Outline) -> str | None:
    """The rewrite's definition that ``name`` was renamed to, if any: of the same kind, in the same class, not a
    name of the input, and whose name holds the old one's letters (``getfiles`` -> ``get_files``, ``perfect_square``
    -> ``is_perfect_square``, ``makex`` -> ``make_x``). SGCR asks for better names: 10 of 16 lost definitions read
    by hand in the 1.5B model's answers were such renames."""
    owner = name.rsplit(".", 1)[0] if "." in name else None
    for cand, nd in new.defs.items():
        if cand in old.defs or nd.kind != d.kind or (cand.rsplit(".", 1)[0] if "." in cand else None) != owner:
            continue
        a, b = _norm(name), _norm(cand)
        if a and b and (a in b or b in a):
            return cand
    return None


def compare(original: str, rewrite: str, undefined_before: set[str], undefined_after: set[str]) -> Fidelity:
    f = Fidelity(length_ratio=round(len(rewrite) / max(1, len(original)), 4))
    f.new_undefined = sorted(undefined_after - undefined_before)
    a, b = outline(original), outline(rewrite)
    if a is None or b is None:
        return f
    for name, d in a.defs.items():
        new = b.defs.get(name)
        if new is None and renamed_to(name, d, a, b):
            f.renamed.append(f"{name} -> {renamed_to(name, d, a, b)}")
            continue
        if new is None:
            f.lost_definitions.append(name)
        elif new.kind != d.kind:
            f.changed_kind.append(f"{name} ({d.kind} -> {new.kind})")
        elif d.params is not None and new.params is not None and \
                not signature_compatible(d.params, new.params, method="." in name):
            f.changed_signature.append(name)
    if a.tests and not b.tests:
        f.lost_tests.append(f"{a.tests} test function{'s' if a.tests != 1 else ''}")
    f.lost_public = sorted(a.public - b.public - set(f.lost_definitions))
    f.shadowed_imports = sorted(n for n in a.imports if n in b.defs)  # (an import kept above the stub loses too)
    return f


def repair_imports(original: str, rewrite: str, missing: list[str]) -> tuple[str, list[str]]:
    """``rewrite`` with the input's own imports of ``missing`` names put back at the top (after a module
    docstring and ``__future__`` imports), and the statements added."""
    o = outline(original)
    if o is None:
        return rewrite, []
    stmts = sorted({o.imports[n] for n in missing if n in o.imports})
    if not stmts:
        return rewrite, []
    try:
        tree = ast.parse(rewrite)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return rewrite, []
    line = 0  # insert after the docstring and any `from __future__` imports
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
            isinstance(node.value.value, str) and node is tree.body[0]
        if is_doc or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            line = node.end_lineno
        else:
            break
    lines = rewrite.splitlines(keepends=True)
    fixed = "".join(lines[:line]) + "".join(s + "\n" for s in stmts) + "".join(lines[line:])
    return fixed, stmts


def check_batch(originals: list[str], rewrites: list[str], repair: bool = False) -> list[tuple[str, Fidelity]]:
    """``compare`` for many pairs with two ruff runs in all (three when ``repair`` re-adds imports); returns each
    rewrite (repaired where that was done) with its findings."""
    before = undefined_names(list(originals))
    after = undefined_names(list(rewrites))
    results = [compare(o, r, b or set(), a or set()) for o, r, b, a in zip(originals, rewrites, before, after)]
    out = list(zip(rewrites, results))
    if not repair:
        return out
    fixed_idx, fixed_texts, added = [], [], []
    for i, (o, (r, f)) in enumerate(zip(originals, out)):
        if f.new_undefined:
            text, stmts = repair_imports(o, r, f.new_undefined)
            if stmts:
                fixed_idx.append(i), fixed_texts.append(text), added.append(stmts)
    if fixed_idx:
        again = undefined_names(fixed_texts)
        for i, text, stmts, und in zip(fixed_idx, fixed_texts, added, again):
            f = compare(originals[i], text, before[i] or set(), und or set())
            f.repaired_imports = stmts
            out[i] = (text, f)
    return out
