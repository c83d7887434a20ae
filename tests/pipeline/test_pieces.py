"""Work is saved and visible below the shard: a running shard saves its finished rows in pieces and writes its
rows done; a run killed mid-shard goes on from the last piece (the rows before it are not processed again) and
ends with the same verdicts as a run never killed; ``swallow status`` shows the rows under way, and no ETA for a
stopped run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT
from tests.helpers import kept_ids

pytestmark = pytest.mark.fast


def test_a_shard_killed_midway_resumes_from_its_last_piece(tmp_path):
    from pipeline.run.verify import verify
    from pipeline.view.status import format_status, status

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"r{i:03d}" for i in range(60)], "text": [f"x = {i}\n" for i in range(60)]}),
                   src)
    cfg = tmp_path / "c.yaml"
    # 30 batches x 0.3 s: the shard outlives the status read below on a loaded machine (at 0.15 s it once finished
    # first while the fast tier ran on both cores)
    cfg.write_text(f"kind: code\nsource: {{type: records, paths: ['{src}']}}\nexport: {{enabled: false}}\n"
                   "plugins: [tests.helpers]\nstages:\n  - {type: test_slow, delay_s: 0.3, batch_size: 2, "
                   "piece_s: 0.5}\n")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--output", str(run), "--executor", "inline",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pieces = run / "stages" / "01-test_slow" / "work" / "pieces" / "00000"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(pieces.glob("*.json"))) < 3:
        time.sleep(0.05)
    seen = status(run)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    saved = max(json.loads(p.read_text())["end"] for p in pieces.glob("*.json"))
    assert 6 <= saved < 60
    slow = next(s for s in seen["stages"] if s["stage"] == "test_slow")
    assert slow["running_shards"] == 1 and slow["running_rows_done"] >= 6 and "under way" in format_status(seen)
    stopped = status(run)
    assert not stopped["finished"] and all(s["eta_s"] is None for s in stopped["stages"])
    assert "rerun to resume" in format_status(stopped)
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True,
                   timeout=300)
    assert verify(run) == []
    stats = json.loads((run / "stages" / "01-test_slow" / "stats" / "00000.json").read_text())
    assert stats["resumed_rows"] >= saved  # the rows of the saved pieces were not processed again
    assert not pieces.exists()
    fresh = tmp_path / "fresh"
    subprocess.run(cmd[:-4] + [str(fresh)] + cmd[-3:], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   check=True, capture_output=True, timeout=300)
    assert kept_ids(run) == kept_ids(fresh)
