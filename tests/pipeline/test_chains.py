"""Chains of row-wise stages (``pipeline/phases/chain.py``): which stages chain, the same files as unchained runs,
resume at the first unfinished stage of a shard, and a shard that kills its workers rejected at the stage it killed
them in.

The first three run inline on small synthetic files (fast tier); the last on the test session's Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.task import Task
from pipeline.phases.chain import Chain, ChainPhase, chainable, chains
from pipeline.run.config import load_config
from pipeline.run.runner import contexts, run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats

#: Code files of every fate the stages below give: kept, too short, a syntax error, raising in a stage.
TEXTS = ([f"def f{i}(x):\n    return x * {i}\n" for i in range(30)] + ["x = 1\n"] * 3
         + [f"def broken{i}(:\n    pass\n" for i in range(5)] + ["y = 2  # RAISE-ME and long enough\n"])


def config(tmp_path: Path, stages: list[dict], **extra):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": TEXTS, "path": [f"m{i}.py" for i in range(len(TEXTS))]}), src)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 300},
           "stages": stages, "export": {"enabled": False}, "plugins": ["tests.helpers"], **extra}
    return load_config(None, raw=raw)


STAGES = [{"type": "length_filter", "min_chars": 10}, {"type": "syntax_filter"}, {"type": "test_raises"}]


def files_of(run: Path) -> dict[str, pa.Table]:
    return {str(f.relative_to(run)): pq.read_table(f) for f in sorted((run / "stages").rglob("*.parquet"))}


@pytest.mark.fast
def test_which_stages_chain(tmp_path):
    cfg = config(tmp_path, [{"type": "length_filter"}, {"type": "syntax_filter"}, {"type": "exact_dedup"},
                            {"type": "length_filter", "name": "l2"}, {"type": "syntax_filter", "name": "s2",
                                                                      "num_cpus": 2},
                            {"type": "length_filter", "name": "l3", "num_cpus": 2}])
    groups = chains(list(zip(cfg.components(), contexts(tmp_path / "run", cfg))))
    names = [[c.name for c, _ in g] for g in groups]
    # a chain starts at the source or a stage; a global stage (exact dedup sees every shard) ends it; only equal
    # resources
    assert names == [["ingest", "length_filter", "syntax_filter"], ["exact_dedup"], ["l2"], ["s2", "l3"]]
    assert chainable(cfg.components()[0]) and not chainable(cfg.stages[2])


@pytest.mark.fast
def test_a_chain_writes_what_the_stages_write_alone(tmp_path):
    """Every kept/rejected file of every stage equal, row for row and column for column, with and without chains;
    the same stats; verify passes on both."""
    chained, alone = tmp_path / "chained", tmp_path / "alone"
    run_pipeline(config(tmp_path, STAGES), chained, progress=False, executor="inline")
    run_pipeline(config(tmp_path, STAGES, chain_stages=False), alone, progress=False, executor="inline")
    assert verify(chained) == [] and verify(alone) == []
    a, b = files_of(chained), files_of(alone)
    assert len(a) > 6 and a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name
    keep = ("stage", "in", "kept", "rejected", "reasons", "shards")
    sa = [{k: s.get(k) for k in keep} for s in collect_stats(chained)["stages"]]
    assert sa == [{k: s.get(k) for k in keep} for s in collect_stats(alone)["stages"]]
    assert sa[0]["shards"] > 1
    assert sa[2]["reasons"] and sa[3]["reasons"] == {"error:ValueError": 1}  # every fate happened


@pytest.mark.fast
def test_a_rerun_resumes_a_shard_at_its_first_unfinished_stage(tmp_path):
    run = tmp_path / "run"
    cfg = config(tmp_path, STAGES)
    run_pipeline(cfg, run, progress=False, executor="inline")
    before = {p: p.stat().st_mtime_ns for p in (run / "stages").rglob("*") if p.is_file()}
    shard = sorted((run / "stages" / "02-syntax_filter" / "done").glob("*.json"))[1].stem
    for part in ("done", "kept", "rejected", "stats"):  # the middle stage of one shard lost (a crash mid-chain)
        next((run / "stages" / "02-syntax_filter" / part).glob(f"{shard}.*")).unlink()
    run_pipeline(cfg, run, progress=False, executor="inline")
    assert verify(run) == []
    after = {p: p.stat().st_mtime_ns for p in (run / "stages").rglob("*") if p.is_file()}
    changed = sorted(str(p.relative_to(run)) for p in after if before.get(p) != after[p])
    redone = [c for c in changed if not c.endswith(("timing.json", "run.yaml", "stage.json"))]
    # the lost stage's shard was redone; the stage after it had finished that shard and is not written again
    assert redone and all(c.startswith("stages/02-syntax_filter/") and shard in c for c in redone), changed


@pytest.mark.fast
def test_a_dead_worker_is_counted_against_the_retries_of_the_stage_it_died_in(tmp_path):
    """Regression (a fault campaign): a chain allowed the smallest ``max_retries`` of its members (the source's
    default 2), so three kills in a stage configured for 40 rejected its shard as worker_died."""
    run = tmp_path / "run"
    cfg = config(tmp_path, [{"type": "length_filter", "min_chars": 10, "max_retries": 5},
                            {"type": "syntax_filter", "max_retries": 7}])
    run_pipeline(cfg, run, progress=False, executor="inline")
    (group,) = chains(list(zip(cfg.components(), contexts(run, cfg))))
    chain, phase = Chain([c for c, _ in group]), ChainPhase([c for _, c in group])
    shard = sorted((run / "stages" / "02-syntax_filter" / "done").glob("*.json"))[0].stem
    task = Task("apply", shard)
    retries = []
    for stage in ("02-syntax_filter", "01-length_filter", "00-ingest"):  # undone from the end back to the source
        (run / "stages" / stage / "done" / f"{shard}.json").unlink()
        retries.append(phase.max_retries(chain, task, group[0][1]))
    assert retries == [7, 5, 2]
    assert chain.max_retries == 7  # deaths in setup() (not one member's): the chain starts while any allows it


@pytest.mark.shared_data
def test_a_shard_that_kills_its_workers_is_rejected_at_that_stage(tmp_path, ray_session):
    """``test_crashy`` (second in a chain of three) kills its worker on one shard: retried once, then that stage
    rejects the shard as worker_died; the first stage's verdicts on it stand; the third finishes the shard (empty)
    unchained; the retries are recorded in the crashing stage's events."""
    stages = [{"type": "length_filter", "min_chars": 10}, {"type": "test_crashy", "marker": "RAISE-ME",
                                                            "max_retries": 1}, {"type": "syntax_filter"}]
    run = tmp_path / "run"
    run_pipeline(config(tmp_path, stages), run, progress=False)
    assert verify(run) == []
    st = collect_stats(run)["stages"]
    assert st[1]["rejected"] == 3  # the first stage judged the crashing shard too
    assert set(st[2]["reasons"]) == {"worker_died"} and st[2]["reasons"]["worker_died"] >= 1
    assert st[2]["kept"] > 0 and st[3]["in"] == st[2]["kept"]
    events = [json.loads(x) for x in (run / "stages" / "02-test_crashy" / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["retry", "gave_up"]


@pytest.mark.fast
def test_a_failing_setup_in_a_chain_names_its_stage(tmp_path):
    from pipeline.core.errors import SetupError

    cfg = config(tmp_path, [{"type": "length_filter"}, {"type": "test_bad_setup"}])
    with pytest.raises(SetupError, match=r"stage 'test_bad_setup': setup\(\) failed.*FileNotFoundError.*nonexistent"):
        run_pipeline(cfg, tmp_path / "run", progress=False, executor="inline")
