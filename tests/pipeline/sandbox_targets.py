"""Functions the sandbox tests run in a sandbox child (imported there as ``tests.pipeline.sandbox_targets``).

``setup(folder)`` names a folder where the functions keep counts across children (a fresh child is a fresh
process: module state does not survive a death)."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

FOLDER: Path | None = None


def setup(folder: str) -> None:
    global FOLDER
    FOLDER = Path(folder)


def _count(name: str) -> int:
    """How many times this was called before, over every child of the test."""
    f = FOLDER / name
    n = int(f.read_text()) if f.exists() else 0
    f.write_text(str(n + 1))
    return n


def echo(x):
    return x


def killed_first(name: str, times: int, value):
    """SIGKILLed (as the OOM killer or a person would) on the first ``times`` calls for ``name``, then ``value``."""
    if _count(name) < times:
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def crash(name: str, times: int, value):
    """Crashes in C code (SIGSEGV) on the first ``times`` calls for ``name``, then ``value``."""
    if _count(name) < times:
        ctypes.string_at(0)
    return value


def eat(megabytes: int) -> int:
    """Allocates ``megabytes`` and touches it."""
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


_PINNED: list[bytes] = []


def churn(mb: int) -> float:
    """Allocate ``mb`` MiB in 1 KiB blocks (malloc's heap, not Python's arenas), free all but the last and return
    the RSS before the call ends: glibc keeps the freed heap below a block still in use until it is trimmed."""
    blocks = [bytes(1024) for _ in range(mb * 1024)]
    _PINNED.append(blocks[-1])
    del blocks
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


SEEN: list = []


def remember(value):
    """``value`` added to what this child saw (module state), returned with its pid and its parent's."""
    SEEN.append(value)
    return list(SEEN), os.getpid(), os.getppid()
