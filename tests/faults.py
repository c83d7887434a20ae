"""Fault injection: run ``swallow run`` as a subprocess and SIGKILL seeded random processes of it until the run
finishes, then compare what it wrote with a clean run's.

The processes are told apart by what they are: the driver (the ``swallow run`` process), Ray workers by the
stage, phase and task they run (the executor names them ``ray::swallow STAGE PHASE TASK``), the lint server and
its per-file children, the extraction sandbox, vLLM's engine core. A worker is only a target while it runs a task.
After a driver kill the rest of its session (Ray, the lint server) is killed as an OOM or a lost machine would,
and the run is started again on the same folder (resume). Used by tests/reliability/.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from pipeline.store.shards import KEPT, REJECTED

ROOT = Path(__file__).resolve().parent.parent


def role_of(proc: psutil.Process, driver: int) -> str | None:
    """What a process of the run is, or None for what is not a target (Ray's own daemons, idle workers)."""
    try:
        if proc.pid == driver:
            return "driver"
        cmd = proc.cmdline()
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    line = " ".join(cmd)
    if "lint/server.py" in line:
        try:
            parent = " ".join(proc.parent().cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            return None
        return "lint child" if "lint/server.py" in parent else "lint server"
    if "pipeline.proc.sandbox" in line:
        return "extract sandbox"
    if "EngineCore" in name or "EngineCore" in line:
        return "vllm engine core"
    if line.startswith("ray::swallow "):
        parts = line.split()
        if len(parts) >= 4 and parts[1] not in ("setup", "idle"):  # ray::swallow STAGE PHASE TASK
            return f"worker {parts[1]}/{parts[2]}"  # e.g. "worker lint_filter/apply"
        if len(parts) == 3 and parts[1] == "setup":  # ray::swallow setup STAGE: a worker starting
            return f"worker {parts[2]}/setup"
    return None


@dataclass
class Campaign:
    """What one faulted run did: each kill (role, seconds into the attempt) and how many attempts it took."""

    kills: list[tuple[str, float]] = field(default_factory=list)
    attempts: int = 0
    wall_s: float = 0.0

    def by_role(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for role, _ in self.kills:
            key = role.split("/")[0] if role.startswith("worker") else role
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items()))


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass


def run_with_faults(config: Path, run_dir: Path, seed: int, kills: int, gap_s: tuple[float, float] = (0.5, 3.0),
                    driver_share: float = 0.25, roles: tuple[str, ...] | None = None,
                    timeout_s: float = 900.0, log: Path | None = None) -> Campaign:
    """Run ``config`` into ``run_dir``, killing ``kills`` processes at seeded random moments (a gap drawn from
    ``gap_s`` between kills; the driver with probability ``driver_share``, else a random target of the others,
    filtered by ``roles`` prefixes when given), rerunning after each driver kill, until the run ends well."""
    rng = random.Random(seed)
    camp = Campaign()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t_start = time.time()
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        while True:
            camp.attempts += 1
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--executor", "ray",
                                     str(config), "--output",
                                     str(run_dir), "--no-progress"], env=env, cwd=ROOT, stdout=out, stderr=out,
                                    start_new_session=True)
            t0 = time.time()
            next_kill = t0 + rng.uniform(*gap_s)
            want_driver = rng.random() < driver_share  # drawn once per kill: a worker kill waits for a worker
            driver_killed = False
            while proc.poll() is None:
                if time.time() - t_start > timeout_s:
                    kill_session(proc)
                    raise TimeoutError(f"{config}: not finished after {timeout_s:g} s with {len(camp.kills)} kills")
                if len(camp.kills) < kills and time.time() >= next_kill:
                    victim = pick(proc.pid, rng, want_driver, roles)
                    if victim is not None:
                        role, p = victim
                        try:
                            p.send_signal(signal.SIGKILL)
                            camp.kills.append((role, round(time.time() - t0, 2)))
                        except psutil.NoSuchProcess:
                            pass
                        next_kill = time.time() + rng.uniform(*gap_s)
                        want_driver = rng.random() < driver_share
                        if role == "driver":
                            driver_killed = True
                            kill_session(proc)  # what the driver took with it: Ray, the lint server
                            break
                time.sleep(0.05)
            if driver_killed:
                continue
            rc = proc.wait()
            kill_session(proc)
            if rc != 0:
                raise RuntimeError(f"{config}: attempt {camp.attempts} ended with exit code {rc} "
                                   f"(kills so far: {camp.kills}); see {log}")
            break
    finally:
        if log:
            out.close()
    camp.wall_s = round(time.time() - t_start, 1)
    return camp


def pick(driver: int, rng: random.Random, want_driver: bool, roles) -> tuple[str, psutil.Process] | None:
    """The driver, or a seeded choice among the run's other processes that are targets now (None: none yet)."""
    if want_driver:
        try:
            return "driver", psutil.Process(driver)
        except psutil.NoSuchProcess:
            return None
    found = []
    for p in descendants(driver):
        role = role_of(p, driver)
        if role and role != "driver" and (roles is None or role.startswith(roles)):
            found.append((role, p))
    if not found:
        return None
    roles_now = {r for r, _ in found}
    if len(roles_now) > 1:  # the node's lint server lives through the whole run: a target only when nothing else is
        roles_now.discard("lint server")
    role = rng.choice(sorted(roles_now))  # a role first, then a process of it
    return role, rng.choice(sorted((p for r, p in found if r == role), key=lambda p: p.pid))


def digest(text) -> str:
    return hashlib.blake2b((text if isinstance(text, str) else repr(text)).encode("utf-8", "surrogatepass"),
                           digest_size=12).hexdigest()


def outcome(run_dir: Path) -> dict:
    """Per stage: every kept row as (id, content hash) and every rejected row as (id, reason); plus the content
    hash of every other output file (Megatron .bin/.idx). What a rerun must equal a clean run on."""
    from pipeline.store.shards import is_temporary

    # a finished run leaves no half-written file behind, however many of its writers were killed
    result: dict = {"temporary files": sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob("*")
                                              if is_temporary(p))}
    for sd in sorted((Path(run_dir) / "stages").iterdir()):
        kept, rejected = [], []
        for f in sorted(f for f in (sd / KEPT).glob("*.parquet") if not is_temporary(f)):
            t = pq.read_table(f, columns=["id", "text"])
            kept += zip(t.column("id").to_pylist(), map(digest, t.column("text").to_pylist()))
        for f in sorted(f for f in (sd / REJECTED).glob("*.parquet") if not is_temporary(f)):
            t = pq.read_table(f, columns=["id", "reason"])
            rejected += zip(t.column("id").to_pylist(), t.column("reason").to_pylist())
        result[sd.name] = {"kept": sorted(kept), "rejected": sorted(rejected)}
    for f in sorted(Path(run_dir).rglob("*")):
        if f.suffix in (".bin", ".idx") and not is_temporary(f):
            result[str(f.relative_to(run_dir))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return result


def differences(a: dict, b: dict) -> list[str]:
    """Where two outcomes differ, in a few lines (for an assertion message)."""
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            for part in ("kept", "rejected"):
                x, y = set(map(tuple, a[key][part])), set(map(tuple, b[key][part]))
                if x != y:
                    out.append(f"{key}/{part}: only in the first {sorted(x - y)[:3]}, only in the second "
                               f"{sorted(y - x)[:3]}")
        else:
            out.append(f"{key}: {a.get(key)} != {b.get(key)}")
    return out
