"""A replaceable child process that runs one function with a time limit per call.

For work that can hang or crash on a hostile input (an HTML parser on a pathological page): the stage keeps its
state in the child, sends it one input at a time, and when a call takes longer than its limit the child is
killed and the call answered ``timeout``; the next call starts a fresh child. A child that dies is replaced
and the input sent again (``pipeline.proc.child.Deaths``: killed by SIGKILL, from outside, up to three times, then the
worker is broken; crashed, once, then the call answers ``died``). ``memory_mb`` caps the child's address space,
so an input that eats memory is an ``error`` answer, not the OOM killer's SIGKILL.
Nothing of this is specific to a stage: the child imports ``module:function`` (and calls ``module:setup`` once
when given) and pickles arguments and results over a pair of pipes.

Children are forked from a zygote: one process per sandbox that imports the function and runs the setup once, then
never calls the function itself, and forks a child (handed the child's two pipe ends over a unix socket) each time
one is needed. Every child therefore starts in the same state (the zygote's, after setup), whatever earlier
children processed, and a replacement costs a fork instead of a fresh interpreter importing trafilatura and lxml
again: on the 12-file web sample 72 pages ran past datatrove's 1 s limit, 72 replacements of ~0.3 s CPU each. The
zygote is supervised like a child (started again when killed, three times); the children's exit statuses are the
zygote's to read (``waitpid``), so the parent asks it; a child whose zygote was killed counts as killed from
outside.

    box = Sandbox("stages.extract.page:extract_page", setup="stages.extract.page:setup_worker", setup_args=(cfg,))
    status, value = box.call(html, url, timeout_s=30)     # ("ok", result) | ("timeout", None) | ("died", detail)
"""

from __future__ import annotations

import importlib
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.proc.child import OUTSIDE, Deaths, exit_code, limit_memory, start_child, stop_child

ROOT = str(Path(__file__).resolve().parents[2])


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


#: The zygote's control messages: a request (``F``: fork a child onto the two descriptors sent with it; ``W``:
#: the exit status of child ``pid`` if it has ended, without waiting) and its reply (pid or 0, exit status or
#: errno).
REQUEST = struct.Struct("<cq")
REPLY = struct.Struct("<qq")


class _Forked:
    """A child forked by the zygote, with what ``pipeline.proc.child`` uses of ``subprocess.Popen``: ``pid``, ``stdin``,
    ``stdout``, ``returncode``, ``poll``, ``wait`` and ``kill``."""

    def __init__(self, zygote: "_Zygote", pid: int, stdin, stdout):
        self.pid, self.stdin, self.stdout = pid, stdin, stdout
        self.returncode: int | None = None
        self._zygote = zygote

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"sandbox child {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:  # not reaped yet: the pid is still this child's (a zombie at worst)
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _Zygote:
    """The process the children are forked from (``python -m pipeline.proc.sandbox``), and its control socket."""

    def __init__(self, proc: subprocess.Popen, sock: socket.socket):
        self.proc, self.sock = proc, sock

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self) -> _Forked:
        """A new child; OSError or EOFError when the zygote is gone or cannot fork."""
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        try:
            socket.send_fds(self.sock, [REQUEST.pack(b"F", 0)], [child_in, child_out])
            reply = self.sock.recv(REPLY.size)
            if len(reply) != REPLY.size:
                raise EOFError("the sandbox's zygote is gone")
            pid, err = REPLY.unpack(reply)
            if pid <= 0:
                raise OSError(err, f"the sandbox's zygote could not fork: {os.strerror(err)}")
        except BaseException:  # no child: our ends too
            os.close(to_child)
            os.close(from_child)
            raise
        finally:  # the child's ends are the child's (the zygote passed them on)
            os.close(child_in)
            os.close(child_out)
        return _Forked(self, pid, os.fdopen(to_child, "wb"), os.fdopen(from_child, "rb"))

    def status(self, pid: int) -> int | None:
        """Child ``pid``'s exit status (negative: the signal), None while it runs. A child whose zygote is gone
        cannot be read: killed from outside (``OUTSIDE``) once it has ended."""
        try:
            self.sock.send(REQUEST.pack(b"W", pid))
            reply = self.sock.recv(REPLY.size)
        except OSError:
            reply = b""
        if len(reply) == REPLY.size:
            done, code = REPLY.unpack(reply)
            return code if done else None
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):  # gone (a PermissionError: its pid is someone else's now)
            return OUTSIDE
        return None

    def close(self) -> None:
        self.sock.close()  # the zygote reads EOF and exits
        stop_child(self.proc)


class Sandbox:
    def __init__(self, target: str, setup: str | None = None, setup_args: tuple = (), start_timeout_s: float = 120.0,
                 memory_mb: int | None = None):
        self.target, self.setup, self.setup_args, self.start_timeout_s = target, setup, setup_args, start_timeout_s
        self.memory_mb = memory_mb
        self.proc: _Forked | None = None
        self._zygote: _Zygote | None = None
        self.restarts = 0
        self.last_exit: int | None = None  # the exit status of the child the last call saw die (negative: a signal)

    def _start(self) -> None:
        """A fresh child, forked by the zygote; a zygote that is gone (killed from outside) is replaced once."""
        for attempt in range(2):
            if self._zygote is None or not self._zygote.alive():
                self._stop_zygote()
                self._zygote = self._start_zygote()
            try:
                self.proc = self._zygote.fork()
                return
            except (OSError, EOFError):
                if attempt:
                    raise
                self._stop_zygote()

    def _start_zygote(self) -> _Zygote:
        """The zygote, supervised by ``pipeline.proc.child``: one killed while starting is started again (three
        times, then ``WorkerBroken``); a setup that raises is an error of the configuration (RuntimeError)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, env.get("PYTHONPATH", "")] if p)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

        def handshake(proc):
            _send(proc.stdin, (self.target, self.setup, self.setup_args, self.memory_mb, theirs.fileno()))
            status, value = self._receive(self.start_timeout_s, proc)
            if status == "timeout":  # a machine too busy to start it in time: like a kill, tried again
                return "died", f"no answer within {self.start_timeout_s:g} s"
            return status, value

        try:
            proc, _ = start_child([sys.executable, "-m", "pipeline.proc.sandbox"], what=f"sandbox for {self.target}",
                                  env=env, cwd=ROOT, handshake=handshake, pass_fds=(theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _Zygote(proc, ours)

    def _stop_zygote(self) -> None:
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def _receive(self, timeout: float, proc: subprocess.Popen | _Forked | None = None) -> tuple[str, Any]:
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
            self._drop_child()
        if self.proc is None:
            self._start()
        proc = self.proc
        try:
            _send(proc.stdin, args)
        except (BrokenPipeError, OSError) as exc:
            self.last_exit = exit_code(proc)
            self.restarts += 1
            self._drop_child()
            return "died", f"the worker process died ({type(exc).__name__}, exit code {self.last_exit})"
        status, value = self._receive(timeout_s)
        if status == "died":
            self.last_exit = proc.returncode  # reaped by _receive
        if status in ("timeout", "died"):
            self.restarts += 1
            self._drop_child()  # a fresh process for the next call
        return status, value

    def _drop_child(self) -> None:
        stop_child(self.proc)
        self.proc = None

    def close(self) -> None:
        """Stop the child and the zygote; a later call starts both again."""
        self._drop_child()
        self._stop_zygote()


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
    """The zygote: the handshake on stdin/stdout (load the function, run the setup, say ok), then fork requests on
    the control socket until the parent closes it. Single-threaded: forking is only safe without other threads."""
    inp, out = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # stray prints of the function must not corrupt the protocol
    try:
        (n,) = struct.unpack("<Q", _read_exact(inp, 8))
        target, setup, setup_args, memory_mb, control = pickle.loads(_read_exact(inp, n))
        fn = _load(target)
        if setup:
            _load(setup)(*setup_args)
        _send(out, ("ok", None))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops
        _send(out, ("error", f"{type(exc).__name__}: {exc}"))
        return
    sock = socket.socket(fileno=control)
    try:
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, REQUEST.size, 2)
            if len(msg) != REQUEST.size:
                return  # the parent is gone
            op, pid = REQUEST.unpack(msg)
            if op == b"F":
                child_in, child_out = fds
                try:
                    pid = os.fork()
                except OSError as exc:
                    os.close(child_in)
                    os.close(child_out)
                    sock.send(REPLY.pack(-1, exc.errno or 0))
                    continue
                if pid == 0:  # the child: only its own two pipes
                    code = 1
                    try:
                        sock.close()
                        inp.close()
                        out.close()
                        limit_memory(memory_mb)
                        _answer(fn, os.fdopen(child_in, "rb"), os.fdopen(child_out, "wb"))
                        code = 0
                    finally:
                        os._exit(code)
                os.close(child_in)
                os.close(child_out)
                sock.send(REPLY.pack(pid, 0))
            else:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    code = os.waitstatus_to_exitcode(status) if done else 0
                except ChildProcessError:  # not a child of ours (already reaped): nothing to tell
                    done, code = pid, OUTSIDE
                sock.send(REPLY.pack(done, code))
    except (KeyboardInterrupt, ConnectionError):
        return


def _answer(fn, inp, out) -> None:
    """A child: one answer per input until its parent closes the pipe."""
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
