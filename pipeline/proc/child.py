"""Supervision of a helper child process: start it, wait until it says it is ready, tell a kill from a fault, stop it.

Two kinds of helpers use it: the sandbox (``pipeline/proc/sandbox.py``: one function, one input at a time) and the
lint fork server (``stages/filters/lint/client.py``). The rules are the same for both and live here once:

* a child killed by a signal while starting (the OOM killer, a person, a fault test) is started again, three
  times; then the worker itself is broken (``WorkerBroken``: the executor replaces it and retries the task),
  never a row's verdict;
* a child that starts and reports an error, or does not say it is ready in time, is an error of the configuration
  or the environment (``RuntimeError``, with what it said);
* a child that dies while it works on one input is judged by how it died (``Deaths``): SIGKILL is what the OOM
  killer and ``kill -9`` send, never how an input crashes code (the sandbox's memory limit makes an input that
  eats memory a ``MemoryError``), so it is never the input's verdict: the input is tried again, and a third such
  death on it breaks the worker instead (``WorkerBroken``: the executor retries the shard elsewhere, bounded).
  Any other death (SIGSEGV, SIGABRT, an exit: a crash in C code) is tried once more and the second is the input's;
* stopping kills it (no graceful teardown: it holds nothing that must be saved), reaps it and closes its pipes.

Why three (CI, web pipeline under random kills): two kills 2 s apart both landed on the extraction child while it
worked on the same page, and under the old rule (any second death is the input's) the page was rejected as
``extract_error`` in that run and kept in the clean one.
"""

from __future__ import annotations

import contextlib
import resource
import select
import signal
import subprocess
from collections.abc import Callable
from typing import Any

from pipeline.core.errors import WorkerBroken

#: A handshake reads the new child's first answer: ("ok", value) | ("error", detail) | ("died", detail).
Handshake = Callable[[subprocess.Popen], tuple[str, Any]]


def start_child(argv: list[str], *, what: str, env: dict[str, str], cwd: str, handshake: Handshake | None,
                text: bool = False, stderr: Any = None, tries: int = 3,
                pass_fds: tuple[int, ...] = ()) -> tuple[subprocess.Popen, Any]:
    """(process, what its handshake returned). ``handshake`` None: do not wait (the caller checks later).
    ``text``: line-buffered text pipes; ``stderr``: where its stderr goes (a file; None: the caller's);
    ``pass_fds``: descriptors the child inherits besides its pipes."""
    detail: Any = None
    for _ in range(tries):
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd,
                                text=text, bufsize=1 if text else -1, pass_fds=pass_fds)
        if handshake is None:
            return proc, None
        try:
            status, detail = handshake(proc)
        except (BrokenPipeError, OSError) as exc:
            status, detail = "died", f"{type(exc).__name__}"
        if status == "ok":
            return proc, detail
        stop_child(proc)
        if status != "died":
            raise RuntimeError(f"{what} did not start: {detail}")
    raise WorkerBroken(f"{what} was killed while starting, {tries} times ({detail})")


def ready_line(timeout_s: float) -> Handshake:
    """A handshake for a child that prints one line when ready: ("ok", line); its death by a signal before that
    line is ("died", ...); an exit or silence past ``timeout_s`` is ("error", ...)."""

    def handshake(proc: subprocess.Popen) -> tuple[str, Any]:
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline() if ready else ""
        if line:
            return "ok", line
        code = proc.poll()
        if ready and code is None:  # its stdout closed: it is exiting, wait for how
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if code is not None and code < 0:
            return "died", f"signal {-code}"
        if code is not None:
            return "error", f"it exited with code {code} before it was ready"
        return "error", f"no answer within {timeout_s:g} s"

    return handshake


#: the exit status of a child killed by SIGKILL; also what a helper reports for a failure that cannot be the
#: input's (a server that died, a fork that failed)
OUTSIDE = -signal.SIGKILL
#: deaths by SIGKILL on one input before the worker is given up as broken (not the input's verdict)
KILLS_PER_INPUT = 3
#: deaths by anything else on one input before they are the input's verdict
CRASHES_PER_INPUT = 2


class Deaths:
    """The deaths of a helper child on one input, and what they mean (the rule above).

        deaths = Deaths("extraction sandbox")
        while True:
            status, value, code = try_once()
            if status != "died" or not deaths.again(code, value):
                break   # an answer, or the input's own death (``died``)
    """

    def __init__(self, what: str):
        self.what = what
        self.kills = 0
        self.crashes = 0

    def again(self, code: int | None, detail: str) -> bool:
        """Whether to try the input once more after a death with exit status ``code`` (negative: the signal;
        None: not known). Raises ``WorkerBroken`` on the third kill; False: the input's verdict."""
        if code == OUTSIDE:
            self.kills += 1
            if self.kills >= KILLS_PER_INPUT:
                raise WorkerBroken(f"{self.what} was killed {self.kills} times on one input (SIGKILL: the OOM killer "
                                   f"or a person, not the input): {detail}")
            return True
        self.crashes += 1
        return self.crashes < CRASHES_PER_INPUT


def exit_code(proc: subprocess.Popen, wait_s: float = 5.0) -> int | None:
    """How a child whose pipe just closed ended (``returncode``; None if it is still running after ``wait_s``): the
    kernel closes its pipes before the parent can reap it."""
    try:
        return proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        return None


def limit_memory(megabytes: int | None) -> None:
    """In a child, before it touches an input: its address space at most ``megabytes`` (None: no limit), so an
    input that eats memory fails with ``MemoryError`` in the child instead of calling the OOM killer (whose
    SIGKILL is read as a kill from outside, see ``Deaths``)."""
    if megabytes:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def alive(proc: subprocess.Popen | None) -> bool:
    return proc is not None and proc.poll() is None


def stop_child(proc: subprocess.Popen | None, wait_s: float = 10.0) -> None:
    """Kill (if still running), reap and close the pipes; safe to call twice."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        pass
    close_quietly(proc.stdin, proc.stdout)


def close_quietly(*files: Any) -> None:
    """Close each of ``files`` that is not None; a close that fails (a pipe already broken) is not an error."""
    for f in files:
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
