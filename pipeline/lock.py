"""One run at a time per run directory: an exclusive lock file naming its holder.

``RUN/.lock`` is created with ``O_EXCL`` (atomic, also on network file systems) and holds the holder's host,
PID and process start time. A second run into the same directory is refused with a message naming the holder. A
lock whose holder is gone (same host, and that PID is not running or is another process started since) is stale
and taken over; a lock from another host cannot be checked from here, so the message says how to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class LockError(RuntimeError):
    """Another run holds the run directory."""


def _start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # noqa: BLE001 - no such process, or no psutil
        return None


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _alive(holder: dict) -> bool:
    """Whether the holder may still run: unknown (another host) counts as alive."""
    if holder.get("host") != socket.gethostname():
        return True
    started = _start_time(int(holder.get("pid", -1)))
    if started is None:
        return False
    return holder.get("started") is None or abs(started - holder["started"]) < 1.0


class RunLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    holder = {}
                if holder and not _alive(holder):
                    self.path.unlink(missing_ok=True)  # stale: its run was killed
                    continue
                if not holder:  # being written right now, or truncated: look again shortly
                    time.sleep(0.2)
                    holder = json.loads(self.path.read_text() or "{}") if self.path.exists() else {}
                    if not holder:
                        continue
                raise LockError(f"{self.path.parent} is in use by another run: pid {holder.get('pid')} on "
                                f"{holder.get('host')} since {holder.get('since')}. Wait for it, or if that run "
                                f"is gone (another machine), delete {self.path}")
            with os.fdopen(fd, "w") as f:
                json.dump(_holder(), f)
            self.held = True
            return
        raise LockError(f"cannot take {self.path}: it keeps changing")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
