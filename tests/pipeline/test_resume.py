"""Kill the driver (SIGKILL) midway, rerun, and get exactly the records of a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats
from tests.conftest import ROOT, write_sample
from tests.faults import kill_session
from tests.helpers import kept_ids

pytestmark = pytest.mark.shared_data


def test_sigkill_then_rerun_equals_clean_run(tmp_path, corpus_rows, ray_session):
    src = write_sample([r for r in corpus_rows if 200 < len(r["content"]) < 3000][:48], tmp_path / "in.parquet")
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 12_000},
           "stages": [{"type": "syntax_filter"}, {"type": "lint_filter", "batch_size": 4}],
           "export": {"enabled": False}, "ray": {"num_cpus": 2, "object_store_memory": 200_000_000}}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--executor", "ray",
                             str(cfg_path), "--output", str(killed),
                             "--no-progress"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    lint_done = killed / "stages" / "02-lint_filter" / "done"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if lint_done.exists() and len(list(lint_done.glob("*.json"))) >= 1:
                break
            assert proc.poll() is None, "run finished before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("lint stage never finished a shard")
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, like an OOM kill
        proc.wait(30)
    finally:
        kill_session(proc)  # then whatever the driver left behind (Ray, the lint server)
    n_shards = len(list((killed / "stages" / "00-ingest" / "done").glob("*.json")))
    partial = len(list(lint_done.glob("*.json")))
    assert 1 <= partial < n_shards, "the kill should land midway through the lint stage"
    assert verify(killed), "an unfinished run must not verify"

    run_pipeline(load_config(cfg_path), killed, progress=False)  # resume
    clean = tmp_path / "clean"
    run_pipeline(load_config(cfg_path), clean, progress=False)
    assert verify(killed) == [] and verify(clean) == []
    assert kept_ids(killed) == kept_ids(clean)
    assert [s["kept"] for s in collect_stats(killed)["stages"]] == [s["kept"] for s in collect_stats(clean)["stages"]]
