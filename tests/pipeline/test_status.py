"""`swallow status` on a run in progress (started in the background) and on a finished one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.conftest import ROOT


def test_status_of_a_running_and_a_finished_run(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": [f"x = {i}\n" for i in range(40)], "path": [f"f{i}.py" for i in range(40)],
                             "repo": ["r"] * 40, "license": ["mit"] * 40, "blob_id": [str(i) for i in range(40)]}),
                   src, row_group_size=4)
    cfg = tmp_path / "cfg.yaml"
    hold = tmp_path / "hold"  # test_slow holds the run after 2 of its shards until this file goes
    hold.touch()
    cfg.write_text(yaml.safe_dump({"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 1},
                                   "stages": [{"type": "syntax_filter"},
                                              {"type": "test_slow", "delay_s": 0.1, "hold_file": str(hold)}],
                                   "export": {"enabled": False}, "plugins": ["tests.helpers"],
                                   "ray": {"num_cpus": 2, "object_store_memory": 200_000_000}}))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--executor", "ray",
                             str(cfg), "--output", str(out),
                             "--no-progress"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def status(*extra):
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "status", str(out), *extra], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            slow = out / "stages" / "02-test_slow" / "done"
            if slow.exists() and len(list(slow.glob("*.json"))) >= 2:
                break
            time.sleep(0.2)
        live = json.loads(status("--json"))
        # the source and the two stages run as one chain (pipeline/phases/chain.py): all under way, each with its counts
        assert not live["finished"] and live["running"] == "ingest > syntax_filter > test_slow"
        assert live["holder"]["pid"] == proc.pid
        stages = {s["stage"]: s for s in live["stages"]}
        shards = stages["ingest"]["total"]  # one row per shard (shard_bytes: 1): 40
        assert shards == 40 and stages["syntax_filter"]["total"] == stages["test_slow"]["total"] == shards
        assert stages["ingest"]["done"] >= stages["syntax_filter"]["done"] >= stages["test_slow"]["done"] >= 2
        assert stages["test_slow"]["done"] < shards
        assert stages["test_slow"]["rows_per_s"] and stages["test_slow"]["eta_s"] > 0
        text = status()
        assert "running ingest > syntax_filter > test_slow" in text
    finally:
        hold.unlink()
        proc.wait(300)
    done = json.loads(status("--json"))
    assert done["finished"] and all(s["done"] == 40 for s in done["stages"])
    assert "finished" in status() and "report:" in status()
