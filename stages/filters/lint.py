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
import socket
import subprocess
import sys
import tempfile
import time
import tokenize
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.component import NotSetUp
from pipeline.stage import Stage, Verdict, WorkerBroken


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
    # what inference reaches through them (each was built again by many lint children without it)
    "__future__", "_collections_abc", "_functools", "_io", "_operator", "_py_abc", "_random", "_sre", "_stat",
    "_warnings", "_weakref", "bdb", "builtins", "builtins.io", "cmd", "copyreg", "genericpath", "json.decoder",
    "json.encoder", "linecache", "os.path", "pdb", "posix", "posixpath", "ntpath", "re._compiler",
    "re._constants", "re._parser", "reprlib", "unittest.case", "unittest.suite",
]


def lint_env(home: str) -> dict[str, str]:
    """The lint process's environment: no variable that makes Python or pylint read code or configuration from
    elsewhere (``PYTHONPATH``, ``PYTHONSTARTUP``, ``PYLINTRC``, ...); ``HOME`` and pylint's data folder private."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "PYLINTRC"}
    env.update(PYLINTHOME=home, HOME=home, XDG_CONFIG_HOME=home, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1",
               PYTHONNOUSERSITE="1")
    return env


def pylint_library(dest: str) -> str:
    """A folder of links to pylint's own distributions (pylint, astroid and what they require, by their metadata).

    With the interpreter started without site-packages (``-S``) and this folder on its path, what a linted file
    can import is the standard library and pylint's closure only: a score never depends on which other packages
    the worker machine happens to have (vLLM pulls in torch, numpy, sympy, ...). Without this, astroid builds and
    infers through every installed package a file imports: slower, and a different score on another machine.
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


def cli_command(pylib: str | None) -> list[str]:
    """``python -m pylint`` in the lint environment: what the stage's scores are defined (and tested) against."""
    if pylib is None:
        return [sys.executable, "-m", "pylint"]
    return [sys.executable, "-S", "-s", "-c", "import runpy, sys; sys.path.append(sys.argv.pop(1)); "
            "runpy.run_module('pylint', run_name='__main__', alter_sys=True)", pylib]


def private_dir(prefix: str) -> str:
    """A new folder only this user can enter (mode 0700, unguessable name), checked after creation."""
    path = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RuntimeError(f"temporary folder {path} is not private (owner {st.st_uid}, mode {oct(st.st_mode)})")
    return path


class LintServer:
    """A running warm lint server (``lint_server.py``) and its private folder; whoever starts it owns it.

    The folder (mode 0700) holds an empty rcfile, the links of the ``stdlib`` environment, the socket and the
    files being linted; ``HOME`` points into it and no ``PYLINTRC``/``PYTHONPATH``/``PYTHONSTARTUP`` reaches the
    server: no configuration or code from the disk around it is read. The server exits and removes the folder
    when its owner closes it or dies (its stdin closes).
    """

    def __init__(self, disable: str, warm_modules: list[str] | None = None, environment: str = "stdlib",
                 start_timeout_s: float = 600.0, wait: bool = True):
        self.tmp = private_dir("swallow-lint-")
        try:
            rcfile = os.path.join(self.tmp, "empty-pylintrc")
            Path(rcfile).write_text("")
            self.files = os.path.join(self.tmp, "files")
            os.mkdir(self.files, 0o700)
            self.socket = os.path.join(self.tmp, "lint.sock")
            pylib = pylint_library(os.path.join(self.tmp, "pylib")) if environment == "stdlib" else None
            warm = list(WARM_MODULES if warm_modules is None else warm_modules)
            flags = ["-S", "-s"] if pylib else []  # stdlib: no site-packages at all, pylint's own closure added
            args = [sys.executable, *flags, LINT_SERVER, self.socket, pylib or "", json.dumps({"modules": warm}),
                    *pylint_args(disable, rcfile)]
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, cwd=self.files, text=True, bufsize=1,
                                         env={**lint_env(self.tmp), "SWALLOW_LINT_ROOT": self.tmp})
            self.ready = self._wait_ready(start_timeout_s) if wait else {}
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> dict:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            code = self.proc.poll()
            if ready and code is None:  # its stdout closed: it is exiting, wait for how
                try:
                    code = self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            if code is not None and code < 0:  # killed by a signal while warming up: not a configuration error
                raise WorkerBroken(f"the pylint server was killed while starting (signal {-code})")
            raise RuntimeError(f"the pylint server did not start within {timeout:g} s (exit code {code})")
        return json.loads(line)

    @property
    def address(self) -> dict:
        """What a worker on the same host needs to use this server."""
        return {"host": socket.gethostname(), "socket": self.socket, "files": self.files, "pid": self.proc.pid}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_for_socket(address: dict, timeout: float) -> bool:
    """Wait until a (warming) server on this host listens; False if its process is gone or it takes too long."""
    import psutil

    def running() -> bool:
        try:
            return psutil.Process(address["pid"]).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout
    while not os.path.exists(address["socket"]):
        if not running() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class PylintWorker:
    """One lint worker's connection to a warm lint server: the node's (``address``) or, failing that, its own.

    A child that exceeds ``timeout_s`` is killed by the server (``lint_timeout``); a server that stops answering
    or dies gives ``lint_error`` for that file, and the next file goes to a fresh server of this worker's own.
    """

    def __init__(self, disable: str, timeout_s: float, warm_modules: list[str] | None = None,
                 environment: str = "stdlib", address: dict | None = None, start_timeout_s: float = 600.0):
        self.disable, self.timeout_s, self.start_timeout_s = disable, timeout_s, start_timeout_s
        self.warm_modules, self.environment = warm_modules, environment
        self.address = address if address and address.get("host") == socket.gethostname() else None
        self.own: LintServer | None = None
        self.conn: socket.socket | None = None
        self.reader = None
        self.files = ""
        self.server_pid: int | None = None

    def start(self) -> None:
        """Connect to the node's server if there is one, else start a server of this worker's own."""
        self.stop()
        address = self.address
        if address is not None and not wait_for_socket(address, self.start_timeout_s):
            address = self.address = None  # the node's server died while warming up: use one of our own
        if address is None:
            if self.own is None or not self.own.alive():
                if self.own is not None:
                    self.own.close()
                self.own = self._own_server()
            address = self.own.address
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.conn.connect(address["socket"])
        except OSError:
            self.conn.close()
            self.conn = None
            if address is self.address:  # the node's server is gone: use one of our own from now on
                self.address = None
                return self.start()
            raise
        self.reader = self.conn.makefile("r", encoding="utf-8")
        self.server_pid = address["pid"]
        self.files = tempfile.mkdtemp(prefix="w", dir=address["files"])  # this worker's files only

    def _own_server(self) -> LintServer:
        """A server of this worker's own; one killed while warming up is started again (three tries, then the
        worker is broken: the executor replaces it)."""
        for attempt in range(3):
            try:
                return LintServer(self.disable, self.warm_modules, self.environment, self.start_timeout_s)
            except WorkerBroken:
                if attempt == 2:
                    raise

    def stop(self) -> None:
        for f in (self.reader, self.conn):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self.reader = self.conn = None
        if self.files:
            shutil.rmtree(self.files, ignore_errors=True)
            self.files = ""

    def close(self) -> None:
        self.stop()
        if self.own is not None:
            self.own.close()
            self.own = None

    def _drop_server(self) -> None:
        """The server we talked to failed: never go back to it. The node's is given up for one of our own; our own
        is killed and reaped now, since a server killed from outside can still look alive for a moment while the
        kernel tears it down (a retry that reconnected to it was reset too: lint_error for a sound file)."""
        self.stop()
        if self.address is not None:
            self.address = None
        elif self.own is not None:
            self.own.close()
            self.own = None

    def _read_line(self, timeout: float) -> str | None:
        import select

        ready, _, _ = select.select([self.conn], [], [], timeout)
        return self.reader.readline() if ready else None

    def lint(self, source: str, name: str, meanwhile=None) -> tuple[str, float | None, str | None]:
        """('ok', score, None) | ('lint_timeout'|'lint_error', None, detail). Score None: no statements.

        ``name``: the module name (a plain identifier, see ``module_name``). ``meanwhile`` (a callable) runs in
        this process while the lint child works on the file. A lint child killed by a signal, or a server that
        dies, is not the file's verdict: the file is linted once more (in a fresh child, on a fresh server if
        need be); only a second death is (``lint_error``), so a kill from outside never changes a row.
        """
        if not name.isidentifier():
            raise ValueError(f"module name {name!r} is not an identifier")
        for attempt in (1, 2):
            status, score, detail = self._lint_once(source, name, meanwhile if attempt == 1 else None)
            if status != "retry":
                return status, score, detail
        return "lint_error", None, detail

    def _lint_once(self, source: str, name: str, meanwhile) -> tuple[str, float | None, str | None]:
        if self.conn is None:
            self.start()
        path = os.path.join(self.files, name + ".py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        try:
            self.conn.sendall((json.dumps({"path": path, "timeout_s": self.timeout_s}) + "\n").encode())
            if meanwhile is not None:
                meanwhile()
            line = self._read_line(self.timeout_s + 30)  # the server itself kills a slow child
            if line is None:
                self._drop_server()
                return "retry", None, "the pylint server stopped answering"
            if not line:
                raise EOFError("no reply")
            reply = json.loads(line)
        except (EOFError, OSError, ValueError) as exc:
            self._drop_server()
            return "retry", None, f"pylint server died ({type(exc).__name__})"
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        if reply["status"] == "ok":
            return "ok", reply["note"], None
        if reply["status"] == "timeout":
            return "lint_timeout", None, f"pylint took longer than {self.timeout_s:g} s"
        if reply["status"] == "died":
            return "retry", None, reply["detail"]
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
    #: What a linted file's imports resolve to: ``stdlib`` (the standard library and pylint's own packages: the
    #: same score on every machine) or ``inherit`` (every package installed where the worker runs).
    environment: Literal["stdlib", "inherit"] = "stdlib"
    batch_size: int = Field(64, ge=1)
    _worker: PylintWorker | None = PrivateAttr(None)
    #: Where the node's lint server listens (set by ``prestart`` in the driver of a local run).
    _server: dict | None = PrivateAttr(None)

    def prestart(self, local: bool) -> LintServer | None:
        """A local run's driver starts the node's warm server before Ray, so it warms up while Ray and the earlier
        stages start, once for all of this node's lint workers."""
        if not local:
            return None
        server = LintServer(self.disable, self.warm_modules, self.environment, wait=False)
        self._server = server.address
        return server

    def setup(self) -> None:
        self._worker = PylintWorker(self.disable, self.timeout_s, self.warm_modules, self.environment,
                                    address=self._server)
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

        info = {"pylint": pylint.__version__, "python": sys.version.split()[0], "pylint_disable": self.disable,
                "lint_environment": self.environment}
        if self._worker is not None:
            info["lint_server"] = "node" if self._worker.address else "own"
        return info
