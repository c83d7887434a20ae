"""Warm pylint fork server: every file is linted in a fresh child forked from one warm parent.

Started as a plain script (``python [-S -s] server.py SOCKET PYLIB CONFIG_JSON PYLINT_ARGS...``), never
imported by the parent, so that its interpreter state is that of ``python -m pylint``: only the standard library
and pylint are imported, and ``sys.path`` is the interpreter's (the script's folder is removed, as pylint's
``modify_sys_path`` does). Anything more (the project, pyarrow, ...) can change how astroid resolves imports and
so the score. With ``PYLIB`` (the ``stdlib`` lint environment) the interpreter runs without site-packages and
only pylint's own packages are added, so imports resolve to the standard library alone.

Why a fork per file. A long-lived pylint process is not a function of its input: astroid caches every module it
builds, the corpus files' own modules included, so a relative import (``from .util import x``) or a module named
like a sibling resolves to whatever the process saw before, and scores depend on the order of files (seen:
``wsgiref/handlers.py`` 8.39 in a full run, 7.98 alone, 8.18 by the CLI). Here the parent builds its state once,
before the first file, from the configuration alone: pylint's options and checkers (through ``Run``, the CLI's
code path, on a fixed warm-up file) and astroid's cache of a fixed list of standard-library modules. Then it
never lints a corpus file itself: each file is linted by a forked child, which sees exactly the parent's state
(shared copy-on-write) and exits, taking everything that file added with it. A file's score is therefore a
function of the file and the options, whatever ran before, and the warm cache makes each child cheaper than a
fresh ``pylint`` process (no imports, no option parsing, the common modules already built).

One server per node serves every lint worker of that node (a unix socket; each request its own child, children
of different workers run side by side), so the warm-up is paid once per node and its memory shared by all
children. The driver of a local run starts it before Ray, so it warms up while Ray and the earlier stages start.

Garbage collection: after the warm-up the parent's objects are moved to the permanent generation
(``gc.freeze``), so a child's collections never walk (and never copy-on-write) the warm cache; children run with
the collector off (they live for one file; automatic full collections over astroid's growing cache cost about a
third of pylint's time on a cold cache).

Protocol, one JSON line each way per request on a connection: ``{"path": ..., "timeout_s": float}`` ->
``{"status": "ok", "note": float|null, "statements": int}``, ``{"status": "timeout"}`` or
``{"status": "error", "detail": str}`` or ``{"status": "died", "signal": int, ...}`` (the child was killed by a
signal) or ``{"status": "unavailable", ...}`` (no child could be forked). A child that exceeds its time is killed;
one that dies is reported (the client tells a kill from a crash by the signal); the server goes on. No memory
limit: pylint swallows a MemoryError while building a module and reports the file as having no statements (seen
with an 8 MiB address-space cap: ``ok``, 0 statements), a verdict that would silently depend on the limit. Once
warm, the server prints ``{"status": "ready", ...}`` on stdout. It exits (removing its folder) when its stdin
closes: whoever started it died or finished.
"""

import contextlib
import gc
import io
import json
import os
import selectors
import shutil
import signal
import socket
import sys
import time


def lint_in_child(linter, path: str) -> dict:
    """Lint one file with the warm linter; per-file state is reset the way a fresh run starts."""
    from pylint.reporters import CollectingReporter
    from pylint.utils import LinterStats

    reporter = CollectingReporter()
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        linter.stats = LinterStats()
        linter.msg_status = 0
        linter.set_reporter(reporter)
        linter.check([path])
        linter.generate_reports()
    stats = linter.stats
    fatal = [m for m in reporter.messages if m.msg_id in ("F0001", "F0002")]
    if fatal:  # pylint crashed on the file (e.g. RecursionError while building its AST)
        return {"status": "error", "detail": f"pylint {fatal[0].symbol}: {fatal[0].msg.splitlines()[0][:300]}"}
    return {"status": "ok", "note": stats.global_note if stats.statement else None, "statements": stats.statement}


def die_with_parent() -> None:
    """Linux: the kernel kills this child if the server dies (no orphan lints on with no one to read it)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def fork_child(linter, path: str, keep_open: list[int]) -> tuple[int, int]:
    """(pid, read end of its result pipe). The child lints ``path`` and always ends in ``os._exit``."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: whatever happens, it ends here (never returns into the server's loop)
        try:
            os.close(rfd)
            for fd in keep_open:  # the server's sockets and other children's pipes are not the child's
                with contextlib.suppress(OSError):
                    os.close(fd)
            die_with_parent()
            try:
                out = lint_in_child(linter, path)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as an error
                out = {"status": "error", "detail": f"{type(exc).__name__}: {str(exc)[:300]}"}
            view = memoryview(json.dumps(out).encode())
            while view:
                view = view[os.write(wfd, view):]
        finally:
            os._exit(0)  # no cleanup: the child's state is thrown away whole
    os.close(wfd)
    return pid, rfd


def child_result(pid: int, chunks: list[bytes]) -> dict:
    _, status = os.waitpid(pid, 0)
    if chunks:
        try:
            return json.loads(b"".join(chunks))
        except ValueError:
            pass
    if os.WIFSIGNALED(status):  # killed (by the OOM killer, a person, ...): the client may try the file again
        sig = -os.waitstatus_to_exitcode(status)
        return {"status": "died", "signal": sig, "detail": f"pylint child died (signal {sig})"}
    return {"status": "error", "detail": f"pylint child died (exit code {os.waitstatus_to_exitcode(status)})"}


class Server:
    """The event loop: one thread (forking is only safe without others), non-blocking sockets and pipes."""

    def __init__(self, linter, listener: socket.socket):
        self.linter = linter
        self.sel = selectors.DefaultSelector()
        self.listener = listener
        self.sel.register(listener, selectors.EVENT_READ, ("accept", None))
        self.sel.register(sys.stdin, selectors.EVENT_READ, ("owner", None))
        self.buffers: dict[socket.socket, bytes] = {}
        self.children: dict[int, dict] = {}  # rfd -> {pid, conn, deadline, chunks}

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *(c.fileno() for c in self.buffers), *self.children]

    def serve(self) -> None:
        while True:
            deadline = min((c["deadline"] for c in self.children.values()), default=None)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            for key, _ in self.sel.select(timeout):
                kind, _ = key.data
                if kind == "owner":
                    if not sys.stdin.readline():
                        return  # whoever started the server is gone
                elif kind == "accept":
                    conn, _ = self.listener.accept()
                    conn.setblocking(False)
                    self.buffers[conn] = b""
                    self.sel.register(conn, selectors.EVENT_READ, ("client", None))
                elif kind == "client":
                    self.on_client(key.fileobj)
                else:
                    self.on_child(key.fd)
            now = time.monotonic()
            for rfd, child in list(self.children.items()):
                if child["deadline"] <= now:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child["pid"], signal.SIGKILL)
                    self.finish(rfd, {"status": "timeout"}, reap=True)

    def on_client(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(conn)
            self.buffers.pop(conn, None)
            conn.close()
            return
        buf = self.buffers[conn] + data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            try:
                pid, rfd = fork_child(self.linter, req["path"], self.fds())
            except OSError as exc:  # fork failed (out of memory or processes): the machine's state, not the file's
                self.reply(conn, {"status": "unavailable", "detail": f"cannot fork a lint child: {exc}"})
                continue
            self.children[rfd] = {"pid": pid, "conn": conn, "chunks": [],
                                  "deadline": time.monotonic() + float(req.get("timeout_s", 60))}
            self.sel.register(rfd, selectors.EVENT_READ, ("child", None))
        self.buffers[conn] = buf

    def on_child(self, rfd: int) -> None:
        chunk = os.read(rfd, 65536)
        if chunk:
            self.children[rfd]["chunks"].append(chunk)
            return
        child = self.children[rfd]
        self.finish(rfd, child_result(child["pid"], child["chunks"]), reap=False)

    def finish(self, rfd: int, out: dict, reap: bool) -> None:
        child = self.children.pop(rfd)
        self.sel.unregister(rfd)
        os.close(rfd)
        if reap:
            os.waitpid(child["pid"], 0)
        self.reply(child["conn"], out)

    def reply(self, conn: socket.socket, out: dict) -> None:
        if conn not in self.buffers:
            return  # the client went away meanwhile
        try:
            conn.setblocking(True)
            conn.sendall((json.dumps(out) + "\n").encode())
            conn.setblocking(False)
        except OSError:
            pass


def main() -> None:
    """Serve; whatever ends it (the owner's death during warm-up included: the ready line then meets a closed
    pipe), the private folder goes with it."""
    try:
        _main()
    except BrokenPipeError:  # the owner died before we were ready
        pass
    finally:
        roots = json.loads(sys.argv[3]).get("root") if len(sys.argv) > 3 else None
        for root in [roots] if isinstance(roots, str) else roots or []:
            shutil.rmtree(root, ignore_errors=True)


def _main() -> None:
    sock_path, pylib = sys.argv[1], sys.argv[2]
    warm_modules = json.loads(sys.argv[3]).get("modules", [])
    args = sys.argv[4:]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    if pylib:  # started without site-packages: pylint's own packages, nothing else (see isolation.pylint_library)
        sys.path.append(pylib)
    ready = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = io.StringIO()
    t0 = time.monotonic()
    import astroid
    from pylint.lint import Run
    from pylint.reporters import CollectingReporter

    # The warm-up: the linter is built through Run (as the CLI builds it) on a fixed file that imports the warm
    # modules, which also builds their astroid modules; then each module is built explicitly (a warm module that
    # the file's imports did not reach). Nothing of the corpus is involved.
    workdir = os.getcwd()
    warm_file = os.path.join(workdir, "swallow_warmup.py")
    with open(warm_file, "w", encoding="utf-8") as f:
        f.write("".join(f"import {m}\n" for m in warm_modules) or "x = 1\n")
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        linter = Run([*args, warm_file], reporter=CollectingReporter(), exit=False).linter
        for name in warm_modules:
            with contextlib.suppress(Exception):
                astroid.MANAGER.ast_from_module_name(name)
    os.unlink(warm_file)
    astroid.MANAGER.astroid_cache.pop("swallow_warmup", None)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(64)
    listener.setblocking(False)
    gc.collect()
    gc.freeze()  # children never walk (or copy) the warm objects in their collections
    gc.disable()
    ready.write(json.dumps({"status": "ready", "warm_s": round(time.monotonic() - t0, 2),
                            "modules": len(astroid.MANAGER.astroid_cache), "pid": os.getpid()}) + "\n")
    try:
        Server(linter, listener).serve()
    finally:
        listener.close()


if __name__ == "__main__":
    main()
