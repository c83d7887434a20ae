"""One run at a time per run directory: an exclusive lock on ``RUN/.lock`` that names its holder.

The lock is ``flock`` on the file, taken without waiting: the kernel grants it to exactly one process and drops it
when that process ends, however it ends (a kill, a crash, a lost terminal), so there is no stale lock to detect or
delete, and no window in which two starters can both take one over. The file itself is never deleted (deleting a
lock file by path is what let a second holder in: a starter could delete a file another had just created); it
holds the holder's host, PID and start time for the message a second run gets. On a file system without
``flock`` the file is created with ``O_EXCL`` instead and a lock left by a killed run must be deleted by hand (the
message says which file).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"


class LockError(RuntimeError):
    """Another run holds the run directory."""


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def current_holder(run_dir: str | Path) -> dict | None:
    """Who holds ``run_dir`` now (host, pid, since), or None when no run does. Takes nothing: a shared flock that
    succeeds means no exclusive holder."""
    import fcntl

    path = Path(run_dir) / LOCK_NAME
    held = path.with_name(LOCK_NAME + ".held")
    if held.exists():
        return _read_holder(held) or {"host": None, "pid": None}
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(path) or {"host": None, "pid": None}
    except OSError:
        return None
    finally:
        os.close(fd)  # (drops the shared lock if it was taken)
    return None


class RunLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None
        self.exclusive_file = False  # held through O_EXCL (no flock here): released by deleting the file

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._in_use() from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            self._acquire_exclusive_file()
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        self.fd = fd

    def _acquire_exclusive_file(self) -> None:
        """No flock on this file system: the lock is the file's existence (O_EXCL is atomic, also on NFS)."""
        marker = self.path.with_name(LOCK_NAME + ".held")
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_holder(marker)
            raise LockError(f"{self.path.parent} is in use by another run: pid {holder.get('pid')} on "
                            f"{holder.get('host')} since {holder.get('since')}. This file system has no flock: if "
                            f"that run is gone, delete {marker}") from None
        os.write(fd, json.dumps(_holder()).encode())
        self.fd, self.exclusive_file = fd, True

    def _in_use(self) -> LockError:
        holder = _read_holder(self.path)
        return LockError(f"{self.path.parent} is in use by another run: pid {holder.get('pid')} on "
                         f"{holder.get('host')} since {holder.get('since')}. Wait for it to end (a run that was "
                         "killed releases the directory by itself)")

    def release(self) -> None:
        if self.fd is None:
            return
        if self.exclusive_file:
            os.close(self.fd)
            self.path.with_name(LOCK_NAME + ".held").unlink(missing_ok=True)
        else:
            os.ftruncate(self.fd, 0)  # (the file stays: see the module docstring)
            os.close(self.fd)  # closing the last descriptor drops the flock
        self.fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
