"""A real local Ray cluster (`ray start --head`) and `ray job submit` of the pipeline's job entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.run.verify import verify
from tests.conftest import ROOT, write_sample

pytestmark = [pytest.mark.shared_data, pytest.mark.ray_cluster]

RAY = str(Path(sys.executable).with_name("ray"))


def sh(*args, env=None, timeout=300):
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_of(temp_dir: Path) -> list:
    """Every process of the Ray started with ``--temp-dir=temp_dir``: its GCS, raylet, dashboard and workers all
    carry the session path in their command lines."""
    import psutil

    ours = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(temp_dir) in " ".join(proc.info["cmdline"] or []):
                ours.append(proc)
        except psutil.Error:
            pass
    return ours


def stop_our_cluster(temp_dir: Path) -> None:
    """Stop only the Ray this test started (``processes_of``). `ray stop` would stop every Ray on the machine,
    a user's own cluster included."""
    import psutil

    ours = processes_of(temp_dir)
    for proc in ours:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(ours, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


def private_ports(agent: int | None = None) -> list[str]:
    """``ray start`` flags giving a node ports of its own instead of Ray's fixed defaults: the dashboard agent's 52365
    (and the client server's 10001) are taken by any other Ray on the machine (a user's, another test session's,
    another node of the same test), and an agent that cannot bind its port never registers: the job server then has
    no agent to submit to ("No available agent to submit job")."""
    return [f"--dashboard-agent-listen-port={agent or free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            f"--ray-client-server-port={free_port()}"]


def wait_for_job_agent(agent_port: int, timeout_s: float = 180) -> None:
    """``ray job submit`` goes through the head node's dashboard agent: wait until it answers (on a loaded machine
    it can start long after ``ray start`` returns), instead of retrying the submission on a timer."""
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/api/local_raylet_healthz", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.time() > deadline:
            raise AssertionError(f"the head's job agent did not answer on port {agent_port} in {timeout_s} s")
        time.sleep(0.5)


def test_ray_job_submit_runs_pipeline(tmp_path, corpus_rows):
    src = write_sample(corpus_rows[:120], tmp_path / "in.parquet")
    out = tmp_path / "run"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"kind": "code", "source": {"type": "code", "paths": [str(src)],
                                                               "shard_bytes": 100_000},
                                   "stages": [{"type": "syntax_filter"}]}))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS")
    temp_dir = Path("/tmp") / f"rayjob{os.getpid()}"  # short: unix socket paths are length-limited
    dashboard, agent = free_port(), free_port()  # ports of our own, not Ray's defaults (6379, 8265, 52365)
    start = sh(RAY, "start", "--head", "--num-cpus=2", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
               f"--port={free_port()}", "--object-store-memory=300000000", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={dashboard}", *private_ports(agent), f"--temp-dir={temp_dir}", env=env)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        wait_for_job_agent(agent)
        job_env = {**env, "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard}"}
        sub = sh(RAY, "job", "submit", "--working-dir", ".", "--", "python", "jobs/run_pipeline.py", str(cfg),
                 "--output", str(out), "--no-progress", env=job_env, timeout=600)
        assert sub.returncode == 0, (sub.stdout + sub.stderr)[-4000:]
        assert "succeeded" in (sub.stdout + sub.stderr).lower()
    finally:
        stop_our_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert verify(out) == []
    assert (out / "dataset" / "data").exists() and (out / "dataset" / "README.md").exists()
