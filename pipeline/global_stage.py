"""Global stages: a row's fate depends on every shard (deduplication, global sampling, decontamination).

Identify globally, remove per shard, in three phases, each a set of keyed, resumable tasks:

1. **scan** (one task per input shard): ``scan(table)`` measures, decides nothing, and returns one row per input
   row with a ``partition`` column in ``[0, partitions)``; the framework adds ``shard`` and writes
   ``work/scan/SHARD/pNNNNN.parquet``, one file per partition.
2. **reduce** (one task per partition): ``reduce(partition, tables)`` reads only its partition of every scan, so
   no worker ever holds all the data, and returns decisions (``id``, ``shard`` and whatever columns the apply
   needs), written to ``work/reduce/pNNNNN.parquet`` sorted by shard.
3. **apply** (one task per input shard, the ordinary per-shard ledger): ``process(table, ctx)`` reads its shard's
   decisions with ``self.decisions(ctx)`` and returns a verdict for every row.

A rerun resumes at the first unfinished task of the first unfinished phase. The scan records which input shards
it saw (``work/inputs.json``); if they changed, the rerun is refused. ``verify`` checks that the reduce covered
exactly the input ids.

Writing one::

    class Sample(GlobalStage):
        type: ClassVar[str] = "global_sample"
        keep: int = 1000

        def scan(self, table, ctx):
            h = [hashlib.blake2b(i.encode(), digest_size=8).digest() for i in table["id"].to_pylist()]
            return pa.table({"id": table["id"], "h": pa.array(h, pa.binary(8)), "partition": [0] * len(table)})

        def reduce(self, partition, tables):
            t = pa.concat_tables(tables).sort_by("h").slice(0, self.keep)
            return t.select(["id", "shard"])          # the rows to keep

        def process(self, table, ctx=None):
            keep = set(self.decisions(ctx).column("id").to_pylist())
            return Verdict([None if i in keep else "not_sampled" for i in table["id"].to_pylist()])
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import field_validator

from pipeline.component import Resources
from pipeline.execute import read_shard
from pipeline.phases import (ApplyPhase, Phase, ShardContext, StageContext, Task, check_inputs, read_marker,
                             write_phase_marker)
from pipeline.shards import KEPT, StageDir, write_parquet
from pipeline.stage import Stage

SCAN, REDUCE = "scan", "reduce"
log = logging.getLogger("swallow")


def part_name(k: int) -> str:
    return f"p{k:05d}"


class ScanPhase(Phase):
    name = SCAN

    def tasks(self, stage, ctx: StageContext) -> list[Task]:
        check_inputs(ctx, stage)
        prev = ctx.prev
        shards = prev.done_shards()
        bound_partitions(stage, sum(prev.marker(s)["kept"] for s in shards))
        return [Task(self.name, s, inputs=(str(prev.file(KEPT, s)),)) for s in shards]

    def run(self, stage: "GlobalStage", task: Task, ctx: StageContext) -> dict[str, Any]:
        t0 = time.time()
        table = read_shard(Path(task.inputs[0]), ctx.kind)
        shards = json.loads((ctx.dir.path / "work" / "inputs.json").read_text())
        shard_ctx = ShardContext(ctx, task.key, {"shard_index": sorted(shards).index(task.key)})
        out = stage.scan(table, shard_ctx)
        if "partition" not in out.column_names:
            raise AssertionError(f"stage {stage.name}: scan must return a 'partition' column")
        out = out.append_column("shard", pa.array([task.key] * len(out), pa.string()))
        folder = ctx.dir.work(self.name) / task.key
        rows = {}
        part = out.column("partition")
        for k in range(stage.partitions):
            piece = out.filter(pc.equal(part, k))
            if len(piece):
                write_parquet(folder / f"{part_name(k)}.parquet", piece.drop_columns(["partition"]))
                rows[part_name(k)] = len(piece)
        return write_phase_marker(ctx, self.name, task.key, {"rows": len(out), "rows_in": len(table),
                                                            "partitions": rows, "peak_rss_mb": peak_rss_mb()}, t0,
                                  outputs=[folder] if folder.exists() else [])

    def on_dead(self, stage, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        """A shard whose scan keeps killing workers takes no part in the reduce; its apply rejects every row
        as ``worker_died`` (the run goes on, nothing is lost)."""
        return write_phase_marker(ctx, self.name, task.key, {"rows": 0, "rows_in": 0, "partitions": {},
                                                            "failed": why}, time.time())


def bound_partitions(stage: "GlobalStage", rows: int) -> None:
    """No more partitions than input rows: each reduce task writes a file, and ``partitions: 100000`` over 5 rows
    wrote 100,000 of them. Decided from the recorded inputs, so a rerun decides the same."""
    effective = max(1, min(stage.partitions, rows))
    if effective < stage.partitions:
        log.warning("stage %s: partitions %d > %d input rows: using %d", stage.name, stage.partitions, rows,
                    effective)
        stage.partitions = effective


class GlobalApplyPhase(ApplyPhase):
    def run(self, stage, task: Task, ctx: StageContext) -> dict[str, Any]:
        failed = read_marker(ctx.dir.phase_marker(SCAN, task.key)).get("failed")
        if failed:
            from pipeline.execute import reject_whole_shard

            return reject_whole_shard(stage, ctx, task.key, Path(task.inputs[0]), None, f"scan: {failed}")
        return super().run(stage, task, ctx)


class ReducePhase(Phase):
    name = REDUCE

    def resources(self, stage: "GlobalStage") -> Resources:
        return stage.reduce_resources()

    def tasks(self, stage, ctx: StageContext) -> list[Task]:
        return [Task(self.name, part_name(k)) for k in range(stage.partitions)]

    def run(self, stage: "GlobalStage", task: Task, ctx: StageContext) -> dict[str, Any]:
        t0 = time.time()
        scan_dir = ctx.dir.work(SCAN)
        shards = ctx.dir.phase_done(SCAN)
        tables, seen = [], {}
        for shard in shards:
            path = scan_dir / shard / f"{task.key}.parquet"
            n = read_marker(ctx.dir.phase_marker(SCAN, shard))["partitions"].get(task.key, 0)
            if n:
                t = pq.read_table(path)
                if len(t) != n:
                    raise AssertionError(f"{path}: {len(t)} rows, its scan marker says {n}")
                tables.append(t)
            seen[shard] = n
        out = stage.reduce(int(task.key[1:]), tables)
        if "id" in out.column_names and "shard" in out.column_names:  # decisions: one per shard's rows, in order
            out = out.sort_by([("shard", "ascending"), ("id", "ascending")])
        path = ctx.dir.work(self.name) / f"{task.key}.parquet"
        write_parquet(path, out)
        return write_phase_marker(ctx, self.name, task.key, {"rows": len(out), "inputs": seen,
                                                            "rows_in": sum(seen.values()),
                                                            "peak_rss_mb": peak_rss_mb()}, t0, outputs=[path])


def peak_rss_mb() -> float:
    """This worker process's peak resident memory so far (MB): what a reduce really needed."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class GlobalStage(Stage):
    """Base class of stages whose decisions need every shard (see the module docstring)."""

    type: ClassVar[str] = ""
    #: The phase whose output ``decisions`` reads (a stage with more phases may decide later).
    decisions_phase: ClassVar[str] = REDUCE
    #: Reduce partitions: each reduce task reads only its partition of every scan (memory bound per task).
    partitions: int = 1
    #: CPUs of one reduce worker (a reduce holds one partition of every scan in memory).
    reduce_num_cpus: float = 1.0
    #: Reduce workers at once (default: as many as fit).
    reduce_concurrency: int | None = None

    def phases(self) -> list[Phase]:
        return [ScanPhase(), ReducePhase(), GlobalApplyPhase()]

    @field_validator("where")
    @classmethod
    def _no_where(cls, v: str | None) -> str | None:
        if v is not None:  # the scans see every row; passing some through the apply would split the decision
            raise ValueError("a global stage (dedup) decides over all rows and takes no 'where'; filter before it")
        return v

    def reduce_resources(self) -> Resources:
        return Resources(self.reduce_num_cpus, 0.0, self.reduce_concurrency)

    def scan(self, table: pa.Table, ctx: ShardContext) -> pa.Table:
        """Measurements of one shard, with a ``partition`` column; ``ctx.memo["shard_index"]`` is the shard's
        position among the inputs (for compact row keys)."""
        raise NotImplementedError

    def reduce(self, partition: int, tables: list[pa.Table]) -> pa.Table:
        raise NotImplementedError

    def decisions(self, ctx: ShardContext, columns: list[str] | None = None) -> pa.Table:
        """The reduce's rows for this shard (read once per shard, from every partition)."""
        if "decisions" not in ctx.memo:
            folder = ctx.stage.dir.work(self.decisions_phase)
            files = sorted(str(p) for p in folder.glob("p*.parquet"))
            dataset = ds.dataset(files, format="parquet")
            ctx.memo["decisions"] = dataset.to_table(columns=columns, filter=pc.field("shard") == ctx.shard)
        return ctx.memo["decisions"]

    def verify(self, stage_dir: StageDir) -> list[str]:
        """The scans saw every input row of every shard and the reduce covered exactly those ids, each once."""
        where = stage_dir.path.name
        problems = []
        scanned = {s: read_marker(stage_dir.phase_marker(SCAN, s))["rows_in"] for s in stage_dir.phase_done(SCAN)}
        failed = {s for s in scanned if read_marker(stage_dir.phase_marker(SCAN, s)).get("failed")}
        for shard in stage_dir.done_shards():
            n_in = stage_dir.marker(shard)["in"]
            if shard not in failed and scanned.get(shard) != n_in:
                problems.append(f"{where}/{shard}: the scan saw {scanned.get(shard)} rows, the shard has {n_in}")
        files = sorted(stage_dir.work(REDUCE).glob("p*.parquet"))
        if not files:
            return problems + [f"{where}: no reduce output under work/{REDUCE}"]
        ids = pa.concat_tables([pq.read_table(f, columns=["id"]) for f in files]).column("id")
        if len(ids) != sum(scanned.values()):
            problems.append(f"{where}: the reduce decided {len(ids)} rows, the scans saw {sum(scanned.values())}")
        if len(pc.unique(ids)) != len(ids):
            problems.append(f"{where}: an id appears in more than one reduce row")
        return problems
