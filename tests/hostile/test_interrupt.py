"""Ctrl-C: one line saying what was finished and how to resume, exit status 130 within seconds, no process of the
run left behind (workers, raylet, object store, lint servers); the rerun finishes the work and verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.run.verify import verify
from tests.conftest import CORPUS

pytestmark = pytest.mark.shared_data

SWALLOW = str(Path(sys.executable).with_name("swallow"))


def start(cfg: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    # a terminal's foreground job: its own process group, SIGINT delivered as by the terminal
    return subprocess.Popen([SWALLOW, "run", str(cfg), "--output", str(out), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_is_one_line_exit_130_and_nothing_left(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pq.read_table(CORPUS).slice(0, 160), src)  # ~12 shards: the lint stage is mid-way at the signal
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"kind": "code", "source": {"type": "code", "paths": [str(src)],
                                                               "shard_bytes": 100_000},
                                   "stages": [{"type": "syntax_filter"}, {"type": "lint_filter"}],
                                   "export": {"enabled": False}}))
    out = tmp_path / "run"
    proc = start(cfg, out)
    deadline = time.time() + 300
    lint_done = out / "stages" / "02-lint_filter" / "done"
    while not (lint_done.exists() and any(lint_done.glob("0*.json"))):  # interrupted mid-stage
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.2)
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert tree  # Ray's processes and the workers
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    took = time.time() - t0
    assert proc.returncode == 130, err[-3000:]
    assert took < 15, took
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("interrupted:")]
    # (the source and both stages run as one chain: the line names each stage under way and its shards)
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0] and "lint_filter at" in lines[0], err
    time.sleep(2)
    left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [p.cmdline()[:3] for p in left]
    rerun = start(cfg, out)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert verify(out) == []
