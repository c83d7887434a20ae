"""The client side of the warm lint server: starting one (``LintServer``) and linting through one (``PylintWorker``).

The server (``server.py``, run as a plain script) forks one child per file from a warm parent, so a score
is a function of the file and the options whatever ran before; see its docstring. One server per node serves
every lint worker of that node; a worker that finds none (or sees it fail) starts one of its own. The process
is supervised by ``pipeline.proc.child`` (started again when killed while warming up, killed and reaped when done).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from pipeline.core.errors import WorkerBroken
from pipeline.proc.child import OUTSIDE, Deaths, alive, close_quietly, ready_line, start_child, stop_child
from stages.filters.lint.isolation import interpreter, lint_env, private_dir, pylint_library
from stages.filters.lint.score import pylint_args

#: The longest unix socket path we use (Linux allows 107 bytes; a deep TMPDIR exceeds it: bind() then fails).
SOCKET_PATH_MAX = 100

LINT_SERVER = str(Path(__file__).resolve().with_name("server.py"))

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


class LintServer:
    """A running warm lint server (``server.py``) and its private folder; whoever starts it owns it.

    The folder (mode 0700) holds an empty rcfile, the links of the ``stdlib`` environment, the socket and the
    files being linted; ``HOME`` points into it and no ``PYLINTRC``/``PYTHONPATH``/``PYTHONSTARTUP`` reaches the
    server: no configuration or code from the disk around it is read. The server exits and removes the folder
    when its owner closes it or dies (its stdin closes).
    """

    def __init__(self, disable: str, warm_modules: list[str] | None = None, environment: str = "stdlib",
                 start_timeout_s: float = 600.0, wait: bool = True):
        self.sock_dir: str | None = None
        self.tmp = private_dir("swallow-lint-")
        try:
            rcfile = os.path.join(self.tmp, "empty-pylintrc")
            Path(rcfile).write_text("")
            self.files = os.path.join(self.tmp, "files")
            os.mkdir(self.files, 0o700)
            self.socket = os.path.join(self.tmp, "lint.sock")
            if len(self.socket.encode()) > SOCKET_PATH_MAX:  # a long TMPDIR: the socket in a short private folder
                self.sock_dir = private_dir("swallow-lint-sock-", parent="/tmp")
                self.socket = os.path.join(self.sock_dir, "lint.sock")
            pylib = pylint_library(os.path.join(self.tmp, "pylib")) if environment == "stdlib" else None
            warm = list(WARM_MODULES if warm_modules is None else warm_modules)
            # the roots: removed when the server exits
            config = json.dumps({"modules": warm, "root": [p for p in (self.tmp, self.sock_dir) if p]})
            argv = [*interpreter(pylib), LINT_SERVER, self.socket, pylib or "", config, *pylint_args(disable, rcfile)]
            # One try here: a server killed while warming up leaves its folder half-used; the worker starts a new
            # one (in a new folder) up to three times (PylintWorker._own_server).
            log = os.path.join(self.tmp, "server.log")
            with open(log, "w") as err:
                try:
                    self.proc, line = start_child(argv, what="the pylint server", env=lint_env(self.tmp),
                                                  cwd=self.files, handshake=ready_line(start_timeout_s) if wait
                                                  else None, text=True, stderr=err, tries=1)
                except RuntimeError as exc:  # its last words say why
                    said = Path(log).read_text(errors="replace").strip().splitlines()[-1:] or ["(nothing)"]
                    raise RuntimeError(f"{exc}; it said: {said[0][:300]}") from None
            self.ready = json.loads(line) if line else {}
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> dict:
        """What a worker on the same host needs to use this server."""
        return {"host": socket.gethostname(), "socket": self.socket, "files": self.files, "pid": self.proc.pid}

    def alive(self) -> bool:
        return alive(self.proc)

    def close(self) -> None:
        stop_child(getattr(self, "proc", None))
        for folder in (self.tmp, self.sock_dir):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)


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

    A child that exceeds ``timeout_s`` is killed by the server (``lint_timeout``). A child that dies, a server that
    dies or stops answering, a fork that fails: the file is linted again (on a fresh server of this worker's own
    when the server failed), as ``pipeline.proc.child.Deaths`` rules: only a child's crash (a signal other than SIGKILL,
    twice) is the file's ``lint_error``; a server never lints, so its failures are never the file's.
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
        for _ in range(2):
            with contextlib.suppress(WorkerBroken):
                return LintServer(self.disable, self.warm_modules, self.environment, self.start_timeout_s)
        return LintServer(self.disable, self.warm_modules, self.environment, self.start_timeout_s)

    def stop(self) -> None:
        close_quietly(self.reader, self.conn)
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
        dies, is not the file's verdict: the file is linted again (in a fresh child, on a fresh server if need
        be); a child's crash twice is (``lint_error``); a third kill raises ``WorkerBroken`` (``Deaths``), so a
        kill from outside never changes a row.
        """
        if not name.isidentifier():
            raise ValueError(f"module name {name!r} is not an identifier")
        deaths = Deaths("the pylint child")
        while True:
            status, score, detail, code = self._lint_once(source, name, meanwhile)
            meanwhile = None  # done on the first try
            if status != "retry":
                return status, score, detail
            if not deaths.again(code, detail):
                return "lint_error", None, detail

    def _lint_once(self, source: str, name: str, meanwhile) -> tuple[str, float | None, str | None, int | None]:
        """(status, score, detail, exit status of a child that died): status ``retry`` when no answer came."""
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
                return "retry", None, "the pylint server stopped answering", OUTSIDE
            if not line:
                raise EOFError("no reply")
            reply = json.loads(line)
        except (EOFError, OSError, ValueError) as exc:
            self._drop_server()
            return "retry", None, f"pylint server died ({type(exc).__name__})", OUTSIDE
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        if reply["status"] == "ok":
            return "ok", reply["note"], None, None
        if reply["status"] == "timeout":
            return "lint_timeout", None, f"pylint took longer than {self.timeout_s:g} s", None
        if reply["status"] == "died":
            return "retry", None, reply["detail"], -int(reply.get("signal") or 0) or None
        if reply["status"] == "unavailable":
            return "retry", None, reply["detail"], OUTSIDE
        return "lint_error", None, reply["detail"], None


