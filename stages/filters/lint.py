"""SwallowCode's pylint quality filter, with the comment-ratio penalty.

pylint with ``--disable=E0401,C0114,C0301,C0103,C0116,C0411,R0903,W0511,C0412`` gives the score it prints (0-10,
two decimals); it is multiplied by (1 - comment ratio), where the ratio is COMMENT tokens over all ``tokenize``
tokens; a file that is all comments scores 0. Keep final score >= 7.0. Raw score, penalty and final score are
columns, so a new threshold needs no re-lint.

Each file is linted in a child forked from a warm pylint server (``lint_server.py``) whose state is fixed before
the first file, so a file's score is a function of the file and the options alone (never of the files linted
before it), and equal to what ``python -m pylint`` prints for it. No configuration is read from the disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.component import NotSetUp
from pipeline.stage import Stage, Verdict


#: SwallowCode's pylint options (the messages it disables).
SWALLOWCODE_DISABLE = "E0401,C0114,C0301,C0103,C0116,C0411,R0903,W0511,C0412"


def comment_ratio(source: str) -> tuple[float, bool]:
    """(COMMENT tokens / all tokenize tokens, whether the file has any code token). Tokenize errors: (0, True)."""
    total = comments = code = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            total += 1
            if tok.type == tokenize.COMMENT:
                comments += 1
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.INDENT,
                                  tokenize.DEDENT, tokenize.ENCODING):
                code += 1
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return 0.0, True
    return (comments / total if total else 0.0), code > 0


def pylint_args(disable: str, rcfile: str | None = None) -> list[str]:
    """SwallowCode's options. ``rcfile``: an explicit (empty) configuration file, so that pylint never looks for
    one (``pyproject.toml``/``pylintrc``/``setup.cfg`` in the working folder and its parents, ``$PYLINTRC``,
    ``~/.pylintrc``, ``/etc/pylintrc``): any of those can hold an ``init-hook`` (code pylint runs) or options
    that change every score."""
    args = [f"--disable={disable}", "--persistent=n", "--jobs=1", "--score=y"]
    return args + [f"--rcfile={rcfile}"] if rcfile else args


LINT_SERVER = str(Path(__file__).resolve().with_name("lint_server.py"))

#: Standard-library modules whose astroid trees the warm lint parent builds before the first file (each child
#: starts with them built). Part of the configuration: a file's score does not depend on this list (they are
#: the same trees a fresh pylint builds on demand), only the speed does.
WARM_MODULES = [
    # what Python files import most (the standard library's common modules)
    "abc", "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "codecs", "collections",
    "collections.abc", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "doctest", "email", "enum", "errno", "fractions", "functools", "getpass", "glob", "gzip", "hashlib",
    "heapq", "html", "html.parser", "http", "http.client", "http.server", "inspect", "io", "itertools", "json",
    "locale", "logging", "logging.handlers", "math", "numbers", "operator", "optparse", "os", "pathlib", "pickle",
    "platform", "pprint", "queue", "random", "re", "shlex", "shutil", "signal", "socket", "sqlite3", "ssl", "stat",
    "string", "struct", "subprocess", "sys", "tempfile", "textwrap", "threading", "time", "timeit", "traceback",
    "types", "typing", "unittest", "unittest.mock", "urllib", "urllib.error", "urllib.parse", "urllib.request",
    "uuid", "warnings", "weakref", "xml.etree.ElementTree", "zipfile",
    # what inference reaches through them (seen built again in most lint children without these)
    "__future__", "_collections_abc", "_operator", "_sre", "_warnings", "_weakref", "builtins", "copyreg",
    "genericpath", "json.decoder", "json.encoder", "linecache", "posixpath", "ntpath", "re._compiler",
    "re._constants", "re._parser", "reprlib", "unittest.case", "unittest.suite",
]


def private_dir(prefix: str) -> str:
    """A new folder only this user can enter (mode 0700, unguessable name), checked after creation."""
    path = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RuntimeError(f"temporary folder {path} is not private (owner {st.st_uid}, mode {oct(st.st_mode)})")
    return path


class PylintWorker:
    """A warm pylint fork server (``lint_server.py``): one child per file, the parent's state fixed.

    The server runs in a private folder with an explicit empty rcfile, ``HOME`` pointing into that folder and
    no ``PYLINTRC``/``PYTHONPATH``/``PYTHONSTARTUP``: no configuration or code from the disk around it is read.
    A child that exceeds ``timeout_s`` is killed by the server (``lint_timeout``); a server that stops
    answering is replaced (``lint_error``).
    """

    def __init__(self, disable: str, timeout_s: float, warm_modules: list[str] | None = None,
                 start_timeout_s: float = 600.0):
        self.disable, self.timeout_s, self.start_timeout_s = disable, timeout_s, start_timeout_s
        self.warm_modules = list(WARM_MODULES if warm_modules is None else warm_modules)
        self.tmp = private_dir("swallow-lint-")
        self.rcfile = os.path.join(self.tmp, "empty-pylintrc")
        Path(self.rcfile).write_text("")
        self.files = os.path.join(self.tmp, "files")
        os.mkdir(self.files, 0o700)
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYLINTRC", "PYTHONUSERBASE",
                            "PYTHONSAFEPATH", "PYTHONINSPECT", "PYTHONWARNINGS")}
        env.update(PYLINTHOME=self.tmp, HOME=self.tmp, XDG_CONFIG_HOME=self.tmp, PYTHONHASHSEED="0",
                   PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
        args = [sys.executable, LINT_SERVER, json.dumps(self.warm_modules),
                *pylint_args(self.disable, self.rcfile)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=self.files, env=env, text=True, bufsize=1)
        line = self._read_line(self.start_timeout_s)
        if not line:
            code = self.proc.poll()
            self.stop()
            raise RuntimeError(f"the pylint server did not start (exit code {code})")
        self.ready = json.loads(line)

    def _read_line(self, timeout: float) -> str | None:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if ready else None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def lint(self, source: str, name: str, meanwhile=None) -> tuple[str, float | None, str | None]:
        """('ok', score, None) | ('lint_timeout'|'lint_error', None, detail). Score None: no statements.

        ``name``: the module name (a plain identifier, see ``module_name``).

        ``meanwhile`` (a callable) runs in this process while the lint child works on the file.
        """
        if not name.isidentifier():
            raise ValueError(f"module name {name!r} is not an identifier")
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()
        path = os.path.join(self.files, name + ".py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        try:
            self.proc.stdin.write(json.dumps({"path": path, "timeout_s": self.timeout_s}) + "\n")
            self.proc.stdin.flush()
            if meanwhile is not None:
                meanwhile()
            line = self._read_line(self.timeout_s + 30)  # the server itself kills a slow child
            if line is None:
                self.stop()
                return "lint_error", None, "the pylint server stopped answering"
            if not line:
                raise EOFError("no reply")
            reply = json.loads(line)
        except (EOFError, BrokenPipeError, OSError, ValueError) as exc:
            code = self.proc.poll() if self.proc else None
            self.stop()
            return "lint_error", None, f"pylint server died ({type(exc).__name__}, exit code {code})"
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        if reply["status"] == "ok":
            return "ok", reply["note"], None
        if reply["status"] == "timeout":
            return "lint_timeout", None, f"pylint took longer than {self.timeout_s:g} s"
        return "lint_error", None, reply["detail"]


def module_name(source: str) -> str:
    """The module name a file is linted under: from its content alone (never a corpus path or id, which could
    name a folder outside the lint folder or collide with a module the file imports)."""
    return "m_" + hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class LintFilter(Stage):
    """SwallowCode's pylint quality filter with the comment-ratio penalty (see the module docstring)."""

    type: ClassVar[str] = "lint_filter"
    min_score: float = 7.0
    disable: str = SWALLOWCODE_DISABLE
    #: Seconds one file may take before it is rejected as ``lint_timeout`` (its lint child is killed).
    timeout_s: float = Field(60.0, gt=0)
    #: Modules whose astroid trees the warm lint parent builds before the first file (speed only; see
    #: ``WARM_MODULES``). Default: a fixed list of common standard-library modules.
    warm_modules: list[str] | None = None
    batch_size: int = Field(64, ge=1)
    _worker: PylintWorker | None = PrivateAttr(None)

    def setup(self) -> None:
        self._worker = PylintWorker(self.disable, self.timeout_s, self.warm_modules)
        self._worker.start()

    def teardown(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def lint_one(self, text: str) -> dict[str, Any]:
        """Scores and decision of one Python file (the ratio is computed while pylint works)."""
        ratio_of: dict = {}
        status, score, detail = self._worker.lint(text, module_name(text),
                                                  meanwhile=lambda: ratio_of.update(v=comment_ratio(text)))
        ratio, has_code = ratio_of.get("v") or comment_ratio(text)
        if status != "ok":
            return {"raw": None, "ratio": ratio, "final": None, "reason": status, "detail": detail}
        printed = float(f"{score:.2f}") if score is not None else 0.0  # what the CLI prints and scripts parse
        final = 0.0 if not has_code else printed * (1.0 - ratio)
        return {"raw": printed, "ratio": ratio, "final": final,
                "reason": None if final >= self.min_score else "low_lint_score",
                "detail": None if score is not None else "no statements (pylint prints no score)"}

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if self._worker is None:
            raise NotSetUp("lint_filter: process() before setup()")
        texts = table.column("text").to_pylist()
        langs = table.column("language").to_pylist() if "language" in table.column_names else ["python"] * len(texts)
        skip = {"raw": None, "ratio": None, "final": None, "reason": None, "detail": None}
        rows = [self.lint_one(text or "") if lang == "python" else skip for text, lang in zip(texts, langs)]
        return Verdict([r["reason"] for r in rows],
                       columns={"pylint_score": pa.array([r["raw"] for r in rows], pa.float64()),
                                "comment_ratio": pa.array([r["ratio"] for r in rows], pa.float64()),
                                "lint_score": pa.array([r["final"] for r in rows], pa.float64())},
                       details=[r["detail"] for r in rows])

    def shard_info(self) -> dict[str, Any]:
        import pylint

        return {"pylint": pylint.__version__, "python": sys.version.split()[0], "pylint_disable": self.disable}
