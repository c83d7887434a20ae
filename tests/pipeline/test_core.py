"""The fast tier: the framework on small synthetic tables, in this process (inline executor, no Ray, no shared
data). Ledger, verify and its tampering checks, phases and resume, a global stage, the run lock, and the rule
that the framework never imports a concrete stage."""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run.config import ConfigError, load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats
from pipeline.store.lock import LockError, RunLock
from pipeline.store.shards import KEPT, REJECTED
from tests.conftest import ROOT

pytestmark = pytest.mark.fast


def records(path: Path, texts: list[str | None], ids: list[str] | None = None, row_group_size: int = 5,
            **extra) -> Path:
    ids = ids or [f"r{i:04d}" for i in range(len(texts))]
    cols = {"id": ids, "text": texts, "source_file": ["synthetic"] * len(texts),
            "source_offset": list(range(len(texts))), "repo": ["org/repo"] * len(texts),
            "path": [f"f{i}.py" for i in range(len(texts))], "license": ["mit"] * len(texts),
            "blob_id": [None] * len(texts), "language": ["python"] * len(texts), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


def cfg(src: Path | list[Path], stages: list[dict], **extra):
    paths = [str(p) for p in (src if isinstance(src, list) else [src])]
    raw = {"kind": "code", "source": {"type": "records", "paths": paths, "shard_bytes": 1},
           "stages": stages, "export": {"enabled": False}, "plugins": ["tests.helpers"], **extra}
    return load_config(None, raw=raw)


def run(src, stages, out: Path, **extra) -> dict:
    return run_pipeline(cfg(src, stages, **extra), out, progress=False, executor="inline")


def ids_of(run_dir: Path, index: int, part: str = KEPT) -> list[str]:
    sd = sorted((run_dir / "stages").iterdir())[index]
    return sorted(i for f in (sd / part).glob("*.parquet") for i in pq.read_table(f).column("id").to_pylist())


TEXTS = [f"x = {i}\n" for i in range(20)] + ["x = 1  # RAISE-ME\n"]


@pytest.fixture
def plain_run(tmp_path):
    src = records(tmp_path / "in.parquet", TEXTS)
    out = tmp_path / "run"
    run(src, [{"type": "syntax_filter"}, {"type": "test_raises"}], out)
    return out


# ------------------------------------------------------------------------------------------------ ledger

def test_inline_run_adds_up_and_verifies(plain_run):
    assert verify(plain_run) == []
    st = collect_stats(plain_run)["stages"]
    assert [s["in"] for s in st] == [21, 21, 21]
    assert st[2]["reasons"] == {"error:ValueError": 1}  # the raising row alone, the run went on
    assert st[0]["shards"] == 5  # one per row group of 5 rows (shard_bytes=1)


def test_rerun_is_a_no_op(plain_run, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in (plain_run / "stages").rglob("*.parquet")}
    run(records(tmp_path / "in.parquet", TEXTS), [{"type": "syntax_filter"}, {"type": "test_raises"}], plain_run)
    assert before == {p: p.stat().st_mtime_ns for p in (plain_run / "stages").rglob("*.parquet")}


def tamper(run_dir: Path, how: str) -> str:
    """Apply one kind of tampering to a copy's stage 1; return the shard it touched."""
    sd = sorted((run_dir / "stages").iterdir())[1]
    shard = sorted(p.stem for p in (sd / "done").glob("*.json"))[0]
    if how == "delete_kept":
        (sd / KEPT / f"{shard}.parquet").unlink()
    elif how == "drop_row":
        t = pq.read_table(sd / KEPT / f"{shard}.parquet")
        pq.write_table(t.slice(1), sd / KEPT / f"{shard}.parquet")
    elif how == "delete_marker":
        (sd / "done" / f"{shard}.json").unlink()
    elif how in ("stats_counts", "stats_reasons"):
        p = sd / "stats" / f"{shard}.json"
        st = json.loads(p.read_text())
        if how == "stats_counts":
            st["kept"] += 5
        else:
            st["reasons"] = {"made_up": 3}
        p.write_text(json.dumps(st))
    elif how == "delete_stats":
        (sd / "stats" / f"{shard}.json").unlink()
    return shard


@pytest.mark.parametrize("how", ["delete_kept", "drop_row", "delete_marker", "stats_counts", "stats_reasons",
                                 "delete_stats"])
def test_verify_catches_tampering(plain_run, tmp_path, how):
    copy = tmp_path / "copy"
    shutil.copytree(plain_run, copy)
    shard = tamper(copy, how)
    problems = verify(copy)
    assert any(shard in p for p in problems), problems


def test_temporary_files_are_never_shards(plain_run):
    """A `.tmp-` file (a run killed mid-write, or a second run writing) is not a finished shard."""
    sd = sorted((plain_run / "stages").iterdir())[1]
    (sd / "done" / ".tmp-1234abcd-99999.json").write_text("{}")
    from pipeline.store.shards import StageDir

    assert "99999" not in " ".join(StageDir(sd).done_shards())
    assert verify(plain_run) == []


# ------------------------------------------------------------------------------------------------ exact_dedup

DUP_TEXTS = (["alpha beta\n", "alpha  beta\n", "Alpha beta\n", "gamma\n", "gamma\n", "gamma\n", "delta\n",
              "  alpha beta", "epsilon zeta\n"] * 3)


def dedup_run(tmp_path: Path, name: str, **stage) -> Path:
    src = records(tmp_path / "dup.parquet", DUP_TEXTS, row_group_size=4)
    out = tmp_path / name
    run(src, [{"type": "exact_dedup", **stage}], out)
    return out


def rejected_rows(run_dir: Path, index: int = 1) -> list[dict]:
    sd = sorted((run_dir / "stages").iterdir())[index]
    return [r for f in sorted((sd / REJECTED).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def kept_rows(run_dir: Path, index: int = 1) -> list[dict]:
    sd = sorted((run_dir / "stages").iterdir())[index]
    return [r for f in sorted((sd / KEPT).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_exact_dedup_one_survivor_per_group(tmp_path):
    out = dedup_run(tmp_path, "ws", normalize="whitespace")
    assert verify(out) == []
    kept = kept_rows(out)
    norm = [" ".join(r["text"].split()) for r in kept]
    assert sorted(norm) == sorted({" ".join(t.split()) for t in DUP_TEXTS})  # one per distinct normalised text
    rej = rejected_rows(out)
    assert {r["reason"] for r in rej} == {"exact_duplicate"}
    kept_ids = {r["id"] for r in kept}
    assert all(r["duplicate_of"] in kept_ids for r in rej)
    for r in kept:  # the survivor is the lowest id of its group
        group = [x for x in kept + rej if " ".join(x["text"].split()) == " ".join(r["text"].split())]
        assert r["id"] == min(x["id"] for x in group) and r["dup_group_size"] == len(group)


def test_inline_executor_sets_a_global_stage_up_once_for_its_phases(tmp_path):
    """As Ray's workers are: set up before the scan, kept through the reduce and the apply, torn down once."""
    texts = [f"x = {i % 7}\n" for i in range(30)]
    srcs = [records(tmp_path / f"in{k}.parquet", texts[k::3], ids=[f"r{k}-{i}" for i in range(10)]) for k in range(3)]
    log = tmp_path / "setups.log"
    run(srcs, [{"type": "test_counting_exact_dedup", "log": str(log)}], tmp_path / "run")
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["setup", "teardown"]
    assert len(ids_of(tmp_path / "run", 1)) == 7 and verify(tmp_path / "run") == []


def test_exact_dedup_normalisations_and_survivors(tmp_path):
    n_none = len(kept_rows(dedup_run(tmp_path, "none", normalize="none")))
    n_ws = len(kept_rows(dedup_run(tmp_path, "ws", normalize="whitespace")))
    n_low = len(kept_rows(dedup_run(tmp_path, "low", normalize="lower_whitespace")))
    assert n_none > n_ws > n_low  # "alpha  beta" joins at whitespace, "Alpha beta" at lowercase
    longest = kept_rows(dedup_run(tmp_path, "long", normalize="whitespace", survivor="longest"))
    assert any(r["text"] == "alpha  beta\n" for r in longest)  # the longest spelling of its group wins
    with pytest.raises(ConfigError, match="survivor_column"):
        cfg(tmp_path / "dup.parquet", [{"type": "exact_dedup", "survivor": "highest"}])


def test_exact_dedup_partitions_do_not_change_the_result(tmp_path):
    one = dedup_run(tmp_path, "k1", partitions=1)
    four = dedup_run(tmp_path, "k4", partitions=4)
    assert {(r["id"], r["duplicate_of"]) for r in rejected_rows(one)} == \
        {(r["id"], r["duplicate_of"]) for r in rejected_rows(four)}
    assert len(list((four / "stages" / "01-exact_dedup" / "work" / "reduce").glob("p*.parquet"))) == 4


def test_exact_dedup_resumes_in_each_phase(tmp_path):
    clean = dedup_run(tmp_path, "clean", partitions=3)
    for phase in ("scan", "reduce", "apply"):
        broken = tmp_path / f"broken-{phase}"
        shutil.copytree(clean, broken)
        sd = broken / "stages" / "01-exact_dedup"
        markers = sorted((sd / "done").glob("*.json")) if phase == "apply" else \
            sorted((sd / "work" / phase / "done").glob("*.json"))
        for m in markers[len(markers) // 2:]:  # as if killed midway through the phase
            m.unlink()
        if phase != "apply":
            for m in (sd / "done").glob("*.json"):
                m.unlink()
        run(tmp_path / "dup.parquet", [{"type": "exact_dedup", "partitions": 3}], broken)
        assert verify(broken) == []
        assert rejected_rows(broken) == rejected_rows(clean)


def test_verify_catches_a_duplicate_whose_survivor_is_not_kept(tmp_path):
    out = dedup_run(tmp_path, "t")
    sd = out / "stages" / "01-exact_dedup"
    f = next(p for p in sorted((sd / REJECTED).glob("*.parquet")) if pq.read_metadata(p).num_rows)
    t = pq.read_table(f)
    t = t.set_column(t.column_names.index("duplicate_of"), "duplicate_of", pa.array(["nobody"] * len(t)))
    pq.write_table(t, f)
    assert any("survivor that was not kept" in p for p in verify(out))


def test_a_global_stage_refuses_changed_inputs(tmp_path):
    src = records(tmp_path / "dup.parquet", DUP_TEXTS, row_group_size=4)
    out = tmp_path / "run"
    run(src, [{"type": "exact_dedup"}], out)
    # the ingest is redone with more rows in one shard: the dedup's scans no longer cover its input
    ingest = out / "stages" / "00-ingest"
    t = pq.read_table(ingest / KEPT / "00000.parquet")
    extra = t.slice(0, 1).set_column(0, "id", pa.array(["zzz-new"]))
    pq.write_table(pa.concat_tables([t, extra]), ingest / KEPT / "00000.parquet")
    m = json.loads((ingest / "done" / "00000.json").read_text())
    m["kept"] += 1
    (ingest / "done" / "00000.json").write_text(json.dumps(m))
    shutil.rmtree(out / "stages" / "01-exact_dedup" / "done")
    with pytest.raises(ConfigError, match="already scanned other input shards"):
        run(src, [{"type": "exact_dedup"}], out)


# ------------------------------------------------------------------------------------------------ run directory

def test_second_run_into_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        with pytest.raises(LockError, match=rf"in use by another run: pid {os.getpid()} on {socket.gethostname()}"):
            run(records(tmp_path / "in.parquet", TEXTS), [{"type": "syntax_filter"}], out)
    run(records(tmp_path / "in.parquet", TEXTS), [{"type": "syntax_filter"}], out)  # released: goes on
    assert verify(out) == []


def test_a_stale_lock_is_taken_over(tmp_path):
    """A lock file left by a killed run holds no flock: the next run takes the directory (the file stays, empty
    once released: deleting a lock by path is what let two holders in)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 17, "started": 1.0}))
    run(records(tmp_path / "in.parquet", TEXTS), [{"type": "syntax_filter"}], out)
    assert verify(out) == [] and (out / ".lock").read_text() == ""


def test_a_refused_rerun_leaves_run_yaml_alone(plain_run, tmp_path):
    before = (plain_run / "run.yaml").read_text()
    with pytest.raises(ConfigError, match="different config"):
        run(records(tmp_path / "in.parquet", TEXTS),
            [{"type": "syntax_filter", "batch_size": 7}, {"type": "test_raises"}], plain_run)
    assert (plain_run / "run.yaml").read_text() == before


def test_a_run_that_failed_before_any_shard_does_not_block_the_fix(tmp_path):
    out = tmp_path / "run"
    src = records(tmp_path / "in.parquet", TEXTS)
    with pytest.raises(RuntimeError, match="setup"):
        run(src, [{"type": "test_bad_setup"}], out)
    run(src, [{"type": "syntax_filter"}], out)  # a different stage config at index 1: accepted
    assert verify(out) == []


# ------------------------------------------------------------------------------------------------ dependencies

def test_the_framework_never_imports_a_stage():
    offenders = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "stages" or n.startswith("stages.")]
    assert not offenders


def test_every_declared_type_loads():
    from pipeline.run import plugins

    for role in ("source", "stage", "output"):
        declared = plugins.declared()[plugins.GROUPS[role]]
        assert declared and set(declared) <= set(plugins.load_all(role))
