"""Warm pylint fork server: every file is linted in a fresh child forked from one warm parent.

Started as a plain script (``python lint_server.py WARM_MODULES_JSON PYLINT_ARGS...``), never imported by the
parent, so that its interpreter state is that of ``python -m pylint``: only the standard library and pylint are
imported, and ``sys.path`` is the interpreter's default (the script's folder is removed, as pylint's
``modify_sys_path`` does). Anything more (the project, pyarrow, ...) can change how astroid resolves imports and
so the score.

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

Garbage collection: after the warm-up the parent's objects are moved to the permanent generation
(``gc.freeze``), so a child's collections never walk (and never copy-on-write) the warm cache; children run
with the collector off (they live for one file; automatic full collections over astroid's growing cache cost
about a third of pylint's time on a cold cache).

Timeouts and crashes are per child: a child that exceeds its time is killed (``timeout``), one that dies is
reported (``crashed``), and the warm parent goes on.

Protocol: one JSON line per request on stdin, ``{"path": ..., "timeout_s": float}``; one JSON line per reply on
the original stdout: ``{"status": "ok", "note": float|null, "statements": int}``, ``{"status": "timeout"}`` or
``{"status": "error", "detail": str}``. The first line written is ``{"status": "ready", ...}`` once warm. pylint's
own output is captured and discarded. When stdin closes (the worker died), the server exits.
"""

import contextlib
import gc
import io
import json
import os
import select
import signal
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


def run_child(linter, path: str, timeout_s: float) -> dict:
    """Fork, lint ``path`` in the child, wait at most ``timeout_s``; the parent's state never changes."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: whatever happens, it ends here (never returns into the server's loop)
        try:
            os.close(rfd)
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
    chunks = []
    deadline = time.monotonic() + timeout_s
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(rfd)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"status": "timeout"}
    if not chunks:
        how = f"signal {-os.waitstatus_to_exitcode(status)}" if os.WIFSIGNALED(status) else \
            f"exit code {os.waitstatus_to_exitcode(status)}"
        return {"status": "error", "detail": f"pylint child died ({how})"}
    return json.loads(b"".join(chunks))


def main() -> None:
    warm_modules = json.loads(sys.argv[1])
    args = sys.argv[2:]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
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
    gc.collect()
    gc.freeze()  # children never walk (or copy) the warm objects in their collections
    gc.disable()
    reply.write(json.dumps({"status": "ready", "warm_s": round(time.monotonic() - t0, 2),
                            "modules": len(astroid.MANAGER.astroid_cache)}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        try:
            out = run_child(linter, req["path"], float(req.get("timeout_s", 60)))
        except OSError as exc:  # fork failed (out of memory or processes)
            out = {"status": "error", "detail": f"cannot fork a lint child: {exc}"}
        reply.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
