"""A replaceable child process that runs one function with a time limit per call.

For work that can hang or crash on a hostile input (an HTML parser on a pathological page): the stage keeps its
state in the child, sends it one input at a time, and when a call takes longer than its limit the child is
killed and the call answered ``timeout``; the next call starts a fresh child. A child that dies is replaced
and the input sent again (``pipeline.child.Deaths``: killed by SIGKILL, from outside, up to three times, then the
worker is broken; crashed, once, then the call answers ``died``). ``memory_mb`` caps the child's address space,
so an input that eats memory is an ``error`` answer, not the OOM killer's SIGKILL.
Nothing of this is specific to a stage: the child imports ``module:function`` (and calls ``module:setup`` once
when given) and pickles arguments and results over its stdin/stdout.

    box = Sandbox("stages.extract.page:extract_page", setup="stages.extract.page:setup_worker", setup_args=(cfg,))
    status, value = box.call(html, url, timeout_s=30)     # ("ok", result) | ("timeout", None) | ("died", detail)
"""

from __future__ import annotations

import importlib
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.child import Deaths, exit_code, limit_memory, start_child, stop_child

ROOT = str(Path(__file__).resolve().parent.parent)


def _load(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _read_exact(f, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _send(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)) + data)
    f.flush()


class Sandbox:
    def __init__(self, target: str, setup: str | None = None, setup_args: tuple = (), start_timeout_s: float = 120.0,
                 memory_mb: int | None = None):
        self.target, self.setup, self.setup_args, self.start_timeout_s = target, setup, setup_args, start_timeout_s
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.last_exit: int | None = None  # the exit status of the child the last call saw die (negative: a signal)

    def _start(self) -> None:
        """A fresh child, supervised by ``pipeline.child``: one killed while starting is started again (three
        times, then ``WorkerBroken``); a setup that raises is an error of the configuration (RuntimeError)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, env.get("PYTHONPATH", "")] if p)

        def handshake(proc):
            _send(proc.stdin, (self.target, self.setup, self.setup_args, self.memory_mb))
            status, value = self._receive(self.start_timeout_s, proc)
            if status == "timeout":  # a machine too busy to start it in time: like a kill, tried again
                return "died", f"no answer within {self.start_timeout_s:g} s"
            return status, value

        self.proc, _ = start_child([sys.executable, "-m", "pipeline.sandbox"], what=f"sandbox for {self.target}",
                                   env=env, cwd=ROOT, handshake=handshake)

    def _receive(self, timeout: float, proc: subprocess.Popen | None = None) -> tuple[str, Any]:
        proc = proc or self.proc
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return "timeout", None
        try:
            (n,) = struct.unpack("<Q", _read_exact(proc.stdout, 8))
            return pickle.loads(_read_exact(proc.stdout, n))
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            return "died", f"the worker process died ({type(exc).__name__}, exit code {exit_code(proc)})"

    def call(self, *args, timeout_s: float) -> tuple[str, Any]:
        """One input. A child that dies is replaced and the input sent again, as ``Deaths`` rules: a kill from
        outside (the OOM killer, a person, a fault test) is never the input's verdict."""
        deaths = Deaths(f"the sandbox for {self.target}")
        while True:
            status, value = self._call_once(args, timeout_s)
            if status != "died" or not deaths.again(self.last_exit, value):
                return status, value

    def _call_once(self, args: tuple, timeout_s: float) -> tuple[str, Any]:
        self.last_exit = None
        if self.proc is not None and self.proc.poll() is not None:  # killed while idle
            self.restarts += 1
            self.close()
        if self.proc is None:
            self._start()
        proc = self.proc
        try:
            _send(proc.stdin, args)
        except (BrokenPipeError, OSError) as exc:
            self.last_exit = exit_code(proc)
            self.close()
            return "died", f"the worker process died ({type(exc).__name__}, exit code {self.last_exit})"
        status, value = self._receive(timeout_s)
        if status == "died":
            self.last_exit = proc.returncode  # reaped by _receive
        if status in ("timeout", "died"):
            self.restarts += 1
            self.close()  # a fresh process for the next call
        return status, value

    def close(self) -> None:
        stop_child(self.proc)
        self.proc = None


def _heap_trimmer():
    """glibc's ``malloc_trim``, or nothing elsewhere. glibc keeps the heap a call freed (a large page's lxml tree)
    mapped for reuse: in one process 177 real pages extracted four times left ~330 MiB resident, ~240 MiB when the
    heap is trimmed after each page, for 0.6 ms a page (~1 % of an extraction). Each worker has such a child: on
    the 12-file web sample the children's PSS went from 227-296 to 147 MiB each."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


def _serve() -> None:
    inp, out = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # stray prints of the function must not corrupt the protocol
    try:
        (n,) = struct.unpack("<Q", _read_exact(inp, 8))
        target, setup, setup_args, memory_mb = pickle.loads(_read_exact(inp, n))
        limit_memory(memory_mb)
        fn = _load(target)
        if setup:
            _load(setup)(*setup_args)
        _send(out, ("ok", None))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops
        _send(out, ("error", f"{type(exc).__name__}: {exc}"))
        return
    trim = _heap_trimmer()
    while True:
        try:
            (n,) = struct.unpack("<Q", _read_exact(inp, 8))
        except EOFError:
            return
        args = pickle.loads(_read_exact(inp, n))
        t0 = time.perf_counter()
        try:
            _send(out, ("ok", fn(*args)))
        except Exception as exc:  # noqa: BLE001 - one input's failure, not the worker's
            _send(out, ("error", f"{type(exc).__name__}: {str(exc)[:500]} after {time.perf_counter() - t0:.2f} s"))
        del args
        trim()  # after the answer: the parent reads it meanwhile


if __name__ == "__main__":
    _serve()
