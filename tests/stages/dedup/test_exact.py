"""exact_dedup on the real Python corpus through Ray, partition counts, and SIGKILL of the driver in each phase."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.shards import KEPT, REJECTED
from tests.conftest import CORPUS, ROOT
from tests.faults import kill_session
from tests.helpers import rows_of

pytestmark = pytest.mark.shared_data


def corpus_config(partitions: int) -> dict:
    return {"kind": "code", "source": {"type": "code", "paths": [str(CORPUS)], "shard_bytes": 4_000_000},
            "stages": [{"type": "exact_dedup", "normalize": "none", "partitions": partitions}],
            "export": {"enabled": False}}


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory, ray_session):
    out = {}
    for k in (1, 4):
        run_dir = tmp_path_factory.mktemp(f"k{k}") / "run"
        run_pipeline(load_config(None, raw=corpus_config(k)), run_dir, progress=False)
        out[k] = run_dir
    return out


def test_blob_identical_groups_collapse_to_one_survivor(corpus_runs):
    run_dir = corpus_runs[4]
    assert verify(run_dir) == []
    kept = rows_of(run_dir, "01-exact_dedup", KEPT)
    rejected = rows_of(run_dir, "01-exact_dedup", REJECTED)
    entering = {r["blob_id"] for r in rows_of(run_dir, "00-ingest", KEPT)}
    kept_blobs = [r["blob_id"] for r in kept]
    assert len(kept_blobs) == len(set(kept_blobs)) == len(entering)  # one survivor per blob, none lost
    # the corpus README: 509 rows duplicate another by blob_id (empty files among them, rejected at ingest)
    all_blobs = pq.read_table(CORPUS, columns=["blob_id"]).column("blob_id").to_pylist()
    assert len(all_blobs) - len(set(all_blobs)) == 509
    assert len(rejected) == len(rows_of(run_dir, "00-ingest", KEPT)) - len(entering) > 100
    survivors = {r["id"]: r for r in kept}
    for r in rejected:
        s = survivors[r["duplicate_of"]]
        assert s["blob_id"] == r["blob_id"] and s["id"] < r["id"]  # lowest id wins
        assert r["dup_group_size"] == s["dup_group_size"] >= 2


def test_four_partitions_equal_one(corpus_runs):
    def decisions(run_dir):
        return sorted((r["id"], r["duplicate_of"], r["dup_group_size"])
                      for part in (KEPT, REJECTED) for r in rows_of(run_dir, "01-exact_dedup", part))

    assert decisions(corpus_runs[1]) == decisions(corpus_runs[4])
    assert len(list((corpus_runs[4] / "stages" / "01-exact_dedup" / "work" / "reduce").glob("p*.parquet"))) == 4


# ------------------------------------------------------------------------------------------------ SIGKILL

def final_ids(run_dir: Path) -> tuple[list, list]:
    stage = sorted((run_dir / "stages").iterdir())[-1].name
    return (sorted(r["id"] for r in rows_of(run_dir, stage, KEPT)),
            sorted((r["id"], r["reason"], r.get("duplicate_of")) for r in rows_of(run_dir, stage, REJECTED)))


@pytest.mark.parametrize("phase", ["scan", "reduce", "apply"])
def test_sigkill_of_the_driver_in_each_phase_then_rerun_equals_a_clean_run(tmp_path, corpus_rows, phase):
    """Kill the driver (SIGKILL, like an OOM kill) at a seeded point inside one phase, rerun: same final ids."""
    rng = random.Random(f"exact-{phase}")
    rows = [r for r in corpus_rows if r["content"].strip()][:400]
    rows += [dict(r, blob_id=f"copy-{i}") for i, r in enumerate(rows[:120])]  # planted duplicates
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=40)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 150_000},
           "stages": [{"type": "test_slow_exact_dedup", "partitions": 5, "delay_s": 0.5}],
           "export": {"enabled": False}, "plugins": ["tests.helpers"],
           "ray": {"num_cpus": 2, "object_store_memory": 200_000_000}}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    killed = tmp_path / "killed"
    stage_dir = killed / "stages" / "01-test_slow_exact_dedup"
    markers = stage_dir / "done" if phase == "apply" else stage_dir / "work" / phase / "done"
    n_tasks = 5 if phase == "reduce" else None
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--executor", "ray",
                             str(cfg), "--output", str(killed),
                             "--no-progress"], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if n_tasks is None:
            deadline = time.time() + 240
            while not (killed / "plan.json").exists() and time.time() < deadline:
                time.sleep(0.1)
            n_tasks = len(yaml.safe_load((killed / "plan.json").read_text()))
        # the seeded point: after this many finished tasks of the phase (2 more may be in flight on the workers)
        target = rng.randint(1, n_tasks - 3)
        deadline = time.time() + 300
        while time.time() < deadline:
            if markers.exists() and len(list(markers.glob("*.json"))) >= target:
                break
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail(f"phase {phase} never reached {target} finished tasks")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        kill_session(proc)  # then whatever the driver left behind (Ray, the lint server)
    done = len(list(markers.glob("*.json")))
    assert 1 <= done < n_tasks, f"the kill should land inside {phase} ({done}/{n_tasks})"
    assert verify(killed), "an unfinished run must not verify"
    subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--executor", "ray",
                    str(cfg), "--output", str(killed), "--no-progress"],
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, check=True, capture_output=True)
    clean = tmp_path / "clean"
    raw["stages"][0]["delay_s"] = 0.0
    run_pipeline(load_config(None, raw=raw), clean, progress=False, executor="inline")
    assert verify(killed) == [] and verify(clean) == []
    assert final_ids(killed) == final_ids(clean)
    assert len(final_ids(clean)[1]) >= 120  # the planted copies were found
