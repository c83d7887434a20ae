"""The runner on a real embedded Ray over real files: ledger, verify, tampering, crash isolation."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats
from pipeline.store.shards import KEPT, REJECTED
from tests.conftest import ROOT, write_sample
from tests.helpers import compiles, kept_ids

pytestmark = pytest.mark.shared_data


def config(paths, stages, **extra):
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(p) for p in paths], "shard_bytes": 60_000},
           "stages": stages, "export": {"enabled": False}, "plugins": ["tests.helpers"], **extra}
    return load_config(None, raw=raw)


@pytest.fixture(scope="module")
def syntax_run(tmp_path_factory, small_corpus, ray_session):
    run_dir = tmp_path_factory.mktemp("run") / "r"
    run_pipeline(config([small_corpus], [{"type": "syntax_filter"}]), run_dir, progress=False)
    return run_dir


def test_run_passes_verify_and_counts_add_up(syntax_run, small_corpus):
    assert verify(syntax_run) == []
    stats = collect_stats(syntax_run)["stages"]
    assert stats[0]["in"] == 200
    for st in stats:
        assert st["in"] == st["kept"] + st["rejected"]
    assert stats[1]["in"] == stats[0]["kept"]
    assert stats[0]["shards"] > 1  # byte-balanced shards, not one per file
    # the kept set is exactly what compile() accepts (ingest rejects empty files first)
    rows = pq.read_table(small_corpus).to_pylist()
    good = {r["blob_id"] for r in rows if r["content"].strip() and compiles(r["content"])}
    stages = sorted((syntax_run / "stages").iterdir())
    kept = {b for f in (stages[-1] / KEPT).glob("*.parquet") for b in pq.read_table(f).column("blob_id").to_pylist()}
    assert kept == good


def test_provenance_survives_and_rejected_rows_carry_reason(syntax_run):
    stages = sorted((syntax_run / "stages").iterdir())
    rej = pa.concat_tables([pq.read_table(f) for f in (stages[1] / REJECTED).glob("*.parquet")])
    assert set(rej.column("stage").to_pylist()) == {"syntax_filter"}
    assert all(r.startswith("syntax_error:") for r in rej.column("reason").to_pylist())
    for col in ("id", "repo", "path", "license", "blob_id", "source_file", "source_offset"):
        assert col in rej.column_names


def test_rerun_is_a_no_op(syntax_run):
    before = {p: p.stat().st_mtime_ns for p in (syntax_run / "stages").rglob("*.parquet")}
    cfg = load_config(None, raw=_raw_of(syntax_run))
    run_pipeline(cfg, syntax_run, progress=False)
    after = {p: p.stat().st_mtime_ns for p in (syntax_run / "stages").rglob("*.parquet")}
    assert before == after


def _raw_of(run_dir):
    import yaml

    return yaml.safe_load((run_dir / "run.yaml").read_text())


def test_verify_fails_on_deleted_shard(syntax_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(syntax_run, copy)
    victim = sorted((copy / "stages").iterdir())[1] / KEPT
    first = sorted(victim.glob("*.parquet"))[0]
    first.unlink()
    problems = verify(copy)
    assert problems and any(first.stem in p for p in problems)


def test_verify_fails_on_edited_shard(syntax_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(syntax_run, copy)
    victim = sorted(sorted((copy / "stages").iterdir())[1].glob(f"{KEPT}/*.parquet"))[0]
    t = pq.read_table(victim)
    pq.write_table(t.slice(1), victim)  # drop one record
    problems = verify(copy)
    assert any(victim.stem in p for p in problems), problems


def test_verify_fails_on_missing_marker(syntax_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(syntax_run, copy)
    marker = sorted(sorted((copy / "stages").iterdir())[1].glob("done/*.json"))[0]
    marker.unlink()
    assert any("not finished" in p and marker.stem in p for p in verify(copy))


def test_row_that_raises_is_rejected_not_fatal(tmp_path, corpus_rows, ray_session):
    rows = [dict(r) for r in corpus_rows[:30]]
    rows[7]["content"] = "x = 1  # RAISE-ME\n"
    src = write_sample(rows, tmp_path / "in.parquet")
    run_pipeline(config([src], [{"type": "test_raises"}]), tmp_path / "run", progress=False)
    assert verify(tmp_path / "run") == []
    st = collect_stats(tmp_path / "run")["stages"][1]
    assert st["reasons"] == {"error:ValueError": 1}


def test_worker_death_is_retried_then_rejected(tmp_path, corpus_rows, ray_session):
    rows = [dict(r) for r in corpus_rows[:40]]
    rows[3]["content"] = "x = 1  # CRASH-ME\n"
    src = write_sample(rows, tmp_path / "in.parquet")
    cfg = config([src], [{"type": "test_crashy", "max_retries": 1, "batch_size": 8}])
    run_pipeline(cfg, tmp_path / "run", progress=False)
    assert verify(tmp_path / "run") == []
    st = collect_stats(tmp_path / "run")["stages"][1]
    assert st["reasons"].get("worker_died", 0) >= 1
    assert st["kept"] > 0  # other shards went on


def test_failing_setup_stops_the_run_instead_of_rejecting_rows(tmp_path, corpus_rows, ray_session):
    src = write_sample(corpus_rows[:20], tmp_path / "in.parquet")
    with pytest.raises(RuntimeError, match=r"(?s)stage 'test_bad_setup': a worker's setup\(\) failed.*nonexistent"):
        run_pipeline(config([src], [{"type": "test_bad_setup"}]), tmp_path / "run", progress=False)
    assert not list((tmp_path / "run" / "stages" / "01-test_bad_setup" / "done").glob("*.json"))


def test_a_global_stage_sets_up_its_workers_once_for_all_its_phases(tmp_path, corpus_rows, ray_session):
    """scan, reduce and apply run on the same set-up workers (a new worker per phase cost ~1.6 s of each phase's
    first shard here); each is torn down once, after the last phase; the verdicts are those of a plain run."""
    src = write_sample(corpus_rows[:300], tmp_path / "in.parquet")
    log = tmp_path / "setups.log"
    run_pipeline(config([src], [{"type": "test_counting_exact_dedup", "log": str(log)}]), tmp_path / "run",
                 progress=False)
    run_pipeline(config([src], [{"type": "exact_dedup"}]), tmp_path / "plain", progress=False)
    events = [line.split() for line in log.read_text().splitlines()]
    setups = [pid for what, pid in events if what == "setup"]
    assert collect_stats(tmp_path / "run")["stages"][0]["shards"] >= 3  # several shards, three phases
    assert 1 <= len(setups) <= 2, events  # the test cluster's 2 CPUs: at most one set-up worker per CPU
    assert sorted(pid for what, pid in events if what == "teardown") == sorted(setups)
    assert verify(tmp_path / "run") == []
    assert kept_ids(tmp_path / "run") == kept_ids(tmp_path / "plain")


def test_worker_larger_than_any_node_is_an_error_on_a_local_ray(ray_session):
    """An actor asking for more CPUs than any node has would wait forever on a local Ray: say so instead."""
    from pipeline.run.executor.ray import RayExecutor
    from stages.filters.syntax import SyntaxFilter

    ex = RayExecutor()
    ex.start()
    assert ex.embedded
    big = SyntaxFilter(num_cpus=64)
    with pytest.raises(RuntimeError, match=r"syntax_filter needs 64 CPUs per worker.*stages\.syntax_filter\.num_cpus"):
        ex.pool_size(big, big.resources(), 4)
    small = SyntaxFilter(num_cpus=1)
    assert ex.pool_size(small, small.resources(), 4) == 2  # the test cluster's 2 CPUs


def test_embedded_ray_workers_run_at_the_commands_priority(tmp_path):
    """Ray lowers its workers' priority by 15; an embedded Ray's run at the niceness of the command (here 3, set for
    the child process), or that plus RAY_worker_niceness where the user sets it (Ray adds it)."""
    import subprocess
    import sys

    code = ("import os, ray; os.nice(3); from pipeline.run.executor.ray import RayExecutor; "
            "from pipeline.run.config import RayConfig; "
            "RayExecutor(RayConfig(num_cpus=1, object_store_memory=100_000_000)).start(); "
            "print('NICE', ray.get(ray.remote(lambda: os.nice(0)).remote()), os.nice(0))")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_worker_niceness")}
    env["PYTHONPATH"] = str(ROOT)
    for extra, want in (({}, "NICE 3 3"), ({"RAY_worker_niceness": "7"}, "NICE 10 3")):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, cwd=tmp_path, capture_output=True,
                             text=True, timeout=180)
        assert want in out.stdout, (out.stdout[-500:], out.stderr[-2000:])


def test_an_embedded_ray_that_does_not_register_in_time_is_ended_and_started_again(tmp_path):
    """Ray gives its raylet a fixed 30 s to register (seen to time out under the suite's load). A fault injected
    into the real Ray: its node lookup fails and its clock jumps, so an attempt times out at once, leaving the real
    GCS and raylet it started. Those are ended and Ray started again; every attempt failing is one line naming
    what to do, with nothing left running. In a fresh interpreter, as the command."""
    import subprocess
    import sys

    script = """
import logging, time, psutil, ray
import ray._private.node as node, ray._private.services as services
import pipeline.run.executor.ray as rx
from pipeline.run.config import RayConfig
from pipeline.core.errors import SetupError
logging.basicConfig(level=logging.WARNING)
state = {"fails": 0, "jumps": 0, "left": []}
real_get = services.get_node
def get_node(*a, **k):
    if state["fails"]:
        state["fails"] -= 1
        state["jumps"] += 1
        state["left"] += [p.pid for p in psutil.Process().children(recursive=True)]
        raise RuntimeError("injected: the node has not registered")
    return real_get(*a, **k)
class Clock:
    def __getattr__(self, name):
        return getattr(time, name)
    def monotonic(self):
        return time.monotonic() + 100.0 * state["jumps"]
services.get_node, node.time = get_node, Clock()
def alive(pids):  # a killed grandchild may be reaped between two looks: gone, not an error
    n = 0
    for p in pids:
        try:
            n += psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    return n
rx.EMBEDDED_START_TRIES = 2
state["fails"] = 2
try:
    rx.RayExecutor(RayConfig(num_cpus=1, object_store_memory=100_000_000)).start()
except SetupError as exc:
    print("GAVE UP", str(exc).count(chr(10)), exc)
print("LEFT", alive(state["left"]), len(state["left"]), ray.is_initialized())
state["fails"], state["left"] = 1, []
rx.RayExecutor(RayConfig(num_cpus=1, object_store_memory=100_000_000)).start()
print("STARTED", ray.get(ray.remote(lambda: 6 * 7).remote()), alive(state["left"]), len(state["left"]))
ray.shutdown()
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = {ln.split(" ", 1)[0]: ln for ln in out.stdout.splitlines()}
    assert lines["GAVE"].startswith("GAVE UP 0 the local Ray did not start") and "RAY_ADDRESS" in lines["GAVE"]
    left, started = lines["LEFT"].split(), lines["STARTED"].split()
    assert left[1] == "0" and int(left[2]) >= 2 and left[3] == "False"  # both attempts' GCS and raylet ended
    assert started[1] == "42" and started[2] == "0" and int(started[3]) >= 2
    assert out.stderr.count("did not register within Ray's 30 s (attempt 1 of 2)") == 2


def test_an_embedded_ray_is_stopped_when_the_stages_are_done_and_a_given_one_is_not(tmp_path):
    """What ``swallow run`` starts it stops before the export and the report (they need no Ray); a Ray that was
    running already (a test session's, a notebook's) is left running. In a fresh interpreter, as the command."""
    import subprocess
    import sys

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": [f"x = {i}\n" for i in range(20)], "path": ["a.py"] * 20}), src)
    script = f"""
import ray
from pipeline.run.config import load_config
import pipeline.view.report as report
seen = []
real = report.write_report
report.write_report = lambda *a, **k: seen.append(ray.is_initialized()) or real(*a, **k)
raw = {{"kind": "code", "source": {{"type": "code", "paths": [{str(src)!r}]}}, "stages": [{{"type": "syntax_filter"}}],
       "export": {{"enabled": False}}, "ray": {{"num_cpus": 1}}}}
report.run_with_report(load_config(None, raw=raw), {str(tmp_path / "own")!r}, progress=False)
ray.init(num_cpus=1, include_dashboard=False)
report.run_with_report(load_config(None, raw=raw), {str(tmp_path / "given")!r}, progress=False)
print(seen, ray.is_initialized())
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**env, "RAY_AUTH_MODE": "disabled"},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[False, True] True"
