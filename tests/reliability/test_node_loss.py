"""A two-node Ray cluster on this machine; the second node is lost while it runs lint workers. The run finishes on
the head: nothing lost, ``verify`` holds, every stage's rows equal a clean run's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline.run.verify import verify
from tests.faults import ROOT, differences, kill_session, outcome, run_with_faults
from tests.pipeline.test_ray_job import RAY, free_port, private_ports, processes_of, sh, stop_our_cluster
from tests.reliability.configs import code_config

pytestmark = [pytest.mark.shared_data, pytest.mark.reliability]


def busy_workers_of(raylet_pid: int, stage: str) -> list[psutil.Process]:
    try:
        kids = psutil.Process(raylet_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in kids:
        try:
            if " ".join(p.cmdline()).startswith(f"ray::swallow {stage} "):
                out.append(p)
        except psutil.Error:
            pass
    return out


def raylet_of(temp_dir: Path) -> int:
    return next(p.pid for p in processes_of(temp_dir) if "raylet" in p.name())


def test_a_node_lost_mid_run(tmp_path, corpus_rows):
    """``ray start --head`` and a second ``ray start --address`` (2 CPUs each: tokenize workers take 2), each with
    its own temp folder and ports, bound to 127.0.0.1; the second node's processes are SIGKILLed (a machine lost)
    while it runs lint workers. The run finishes on the head; every stage's rows equal a clean run's."""
    cfg = code_config(tmp_path, corpus_rows, n=70, shard_bytes=40_000)  # lint tasks of seconds: the kill lands mid-task
    env = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    head_dir, node_dir = Path("/tmp") / f"rnh{os.getpid()}", Path("/tmp") / f"rnn{os.getpid()}"
    port = free_port()
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", "--object-store-memory=150000000"]
    proc = None
    try:
        r = sh(RAY, "start", "--head", "--num-cpus=2", f"--port={port}", "--include-dashboard=false",
               f"--temp-dir={head_dir}", *common, *private_ports(), env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        r = sh(RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=2", f"--temp-dir={node_dir}",
               *common, *private_ports(), env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        raylet = raylet_of(node_dir)
        run_dir = tmp_path / "run"
        log = open(tmp_path / "run.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--executor", "ray",
                                 str(cfg), "--output", str(run_dir),
                                 "--no-progress"], env={**env, "PYTHONPATH": str(ROOT),
                                                        "RAY_ADDRESS": f"127.0.0.1:{port}"},
                                cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + 180
        while not (busy := busy_workers_of(raylet, "lint_filter")):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.time() < deadline, "no lint worker ever ran on the second node"
            time.sleep(0.05)
        # the machine is gone: its busy workers first (no time to finish their task), then everything else of it
        for p in busy + processes_of(node_dir):
            try:
                p.kill()
            except psutil.Error:
                pass
        lost_at = time.time()
        assert proc.wait(300) == 0, (tmp_path / "run.log").read_text()[-3000:]
        print(f"node lost; the run finished {time.time() - lost_at:.1f} s later on the head")
    finally:
        if proc is not None:
            kill_session(proc)
        for d in (node_dir, head_dir):
            stop_our_cluster(d)
            shutil.rmtree(d, ignore_errors=True)
    events = (run_dir / "stages" / "02-lint_filter" / "events.jsonl").read_text()
    assert "retry" in events  # the lost node's tasks were retried, not rejected
    clean = tmp_path / "clean"
    run_with_faults(cfg, clean, seed=0, kills=0)
    assert verify(run_dir) == [] and verify(clean) == []
    problems = differences(outcome(run_dir), outcome(clean))
    assert not problems, problems
