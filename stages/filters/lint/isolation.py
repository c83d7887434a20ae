"""The environment pylint runs in, so that a score is a function of the file and the options alone.

Three things around a pylint process change scores, and each is fixed here:

* **Configuration and code on disk**: ``pyproject.toml``/``pylintrc`` in the working folder and its parents,
  ``$PYLINTRC``, ``~/.pylintrc``, ``PYTHONSTARTUP``, ``PYTHONPATH``. The process gets an explicit empty rcfile
  (``score.pylint_args``), a private ``HOME`` and none of those variables.
* **Installed packages**: astroid builds and infers through every package a linted file imports, so the same
  file scores differently where vLLM pulled in torch and numpy. The ``stdlib`` environment starts the interpreter
  without site-packages and adds only pylint's own distributions (``pylint_library``).
* **The environment variables themselves**: astroid builds ``posix`` from the live module, ``os.environ``
  included, so a file that infers through ``os.environ`` (the standard library's ``wsgiref/handlers.py``: 8.18
  with 3 variables, 8.39 with 14 or more, the ``no-member`` of line 88 found or not) scored by how many variables
  the caller had: CI's runner had more than a developer's shell, and the worker and the CLI disagreed there. The
  lint process gets a fixed set of variables (``lint_env``), the same on every machine and from every caller.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def lint_env(home: str) -> dict[str, str]:
    """The whole environment of a lint process: fixed names and values, only ``home`` (a private folder) varies.
    Nothing is taken from the caller's environment (see the module docstring for why even its size matters)."""
    return {"PATH": os.defpath, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1", "PYTHONCOERCECLOCALE": "0",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "HOME": home, "PYLINTHOME": home, "XDG_CONFIG_HOME": home}


def pylint_library(dest: str) -> str:
    """A folder of links to pylint's own distributions (pylint, astroid and what they require, by their metadata).

    With the interpreter started without site-packages (``-S``) and this folder on its path, what a linted file
    can import is the standard library and pylint's closure only: a score never depends on which other packages
    the worker machine happens to have.
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    os.makedirs(dest, exist_ok=True)
    todo, seen = ["pylint"], set()
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
        base = Path(dist.locate_file(""))
        for top in sorted({f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")}):
            link = os.path.join(dest, top)
            if not os.path.lexists(link) and (base / top).exists():
                os.symlink(base / top, link)
    return dest


def interpreter(pylib: str | None) -> list[str]:
    """The interpreter's command line for the lint environment: ``stdlib`` (``pylib`` given) runs it without
    site-packages (``-S -s``); ``inherit`` (None) as it is."""
    return [sys.executable, "-S", "-s"] if pylib else [sys.executable]


def cli_command(pylib: str | None) -> list[str]:
    """``python -m pylint`` in the lint environment: what the stage's scores are defined (and tested) against."""
    if pylib is None:
        return [sys.executable, "-m", "pylint"]
    return [*interpreter(pylib), "-c", "import runpy, sys; sys.path.append(sys.argv.pop(1)); "
            "runpy.run_module('pylint', run_name='__main__', alter_sys=True)", pylib]


def private_dir(prefix: str, parent: str | None = None) -> str:
    """A new folder only this user can enter (mode 0700, unguessable name), checked after creation; in
    ``parent`` (default: the temp folder)."""
    path = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RuntimeError(f"temporary folder {path} is not private (owner {st.st_uid}, mode {oct(st.st_mode)})")
    return path
