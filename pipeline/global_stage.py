"""Global stages: a row's fate depends on every shard (deduplication, global sampling, decontamination).

Identify globally, remove per shard. A global stage *declares* its phases and writes only functions of tables; the
framework runs them as keyed, resumable tasks, owns every file and marker, the decisions table and the checks:

1. **scan** (one task per input shard): ``scan(table, ctx)`` measures, decides nothing, and returns one row per
   input row with a ``partition`` column in ``[0, partitions)`` (and, optionally, side tables by name, e.g. the
   rows' attributes for a later step); the framework adds ``shard`` and writes one file per partition.
2. **steps** (``steps``, in order), each ``Step(name, method, per_partition)``: a per-partition step calls
   ``method(partition, tables)`` with that partition of the previous phase's output (of every scan, for the first
   step), so no worker holds all the data; a step over everything (``per_partition=False``) calls
   ``method(inputs)`` once with a ``StepInputs`` (the previous step's tables, the scans' side tables, the input
   shards) and returns ``(table, facts)``. The last step's output is the stage's **decisions**: rows with ``id``
   and ``shard`` (and whatever the apply needs), for every scanned row (``decides = "all"``) or only some
   (``"some"``: rows in clusters, say).
3. **apply** (one task per input shard, the ordinary per-shard ledger): ``process(table, ctx)`` finds this shard's
   decisions in ``ctx.decisions`` (read once per shard) and returns a verdict for every row.

A rerun resumes at the first unfinished task of the first unfinished phase; the scan records which input shards it
saw (``work/inputs.json``) and a rerun whose inputs changed is refused. ``verify`` (the framework's) checks that
the scans saw every input row, every task of every phase finished, and the decisions name each scanned row at most
once (exactly once with ``decides = "all"``); a stage adds its own invariants in ``invariants``.

Writing one::

    class Sample(GlobalStage):                   # keep a global random sample of `keep` rows
        type: ClassVar[str] = "global_sample"
        steps: ClassVar = (Step("pick", "pick", per_partition=False),)
        decides: ClassVar = "some"
        keep: int = 1000

        def scan(self, table, ctx):
            h = [hashlib.blake2b(i.encode(), digest_size=8).digest() for i in table["id"].to_pylist()]
            return pa.table({"id": table["id"], "h": pa.array(h, pa.binary(8)), "partition": [0] * len(table)})

        def pick(self, inputs):                  # every scan's rows: the ones to keep
            return pa.concat_tables(inputs.tables()).sort_by("h").slice(0, self.keep).select(["id", "shard"]), {}

        def process(self, table, ctx=None):
            keep = set(ctx.decisions.column("id").to_pylist())
            return Verdict([None if i in keep else "not_sampled" for i in table["id"].to_pylist()])
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from pipeline.component import Resources
from pipeline.execute import ApplyPhase, read_shard, reject_whole_shard, run_stage_shard
from pipeline.phase import (
    Phase,
    check_inputs,
    peak_rss_mb,
    phase_outputs,
    read_marker,
    read_side,
    recorded_inputs,
    side_file,
    write_phase_marker,
)
from pipeline.shards import KEPT, StageDir, write_parquet
from pipeline.stage import Stage
from pipeline.task import ShardContext, StageContext, Task

SCAN = "scan"
log = logging.getLogger("swallow")


def part_name(k: int) -> str:
    return f"p{k:05d}"


@dataclass(frozen=True)
class Step:
    """One phase of a global stage after its scan: ``method`` of the stage, run per partition or once."""

    name: str
    method: str
    per_partition: bool = True


class StepInputs:
    """What a step over everything may read: the previous phase's output tables, the scans' side tables, the
    input shards (a scan's ``shard_index`` is a position in ``shards()``)."""

    def __init__(self, ctx: StageContext, previous: str):
        self.ctx, self.previous = ctx, previous

    def tables(self) -> list[pa.Table]:
        if self.previous == SCAN:
            return [pq.read_table(f) for f in sorted(self.ctx.dir.work(SCAN).glob("*/p*.parquet"))]
        return [pq.read_table(f) for f in phase_outputs(self.ctx.dir, self.previous)]

    def shards(self) -> list[str]:
        return recorded_inputs(self.ctx.dir)

    def side(self, name: str, shard: str, columns: list[str] | None = None) -> pa.Table:
        return read_side(self.ctx.dir, SCAN, shard, name, columns)


def bound_partitions(stage: "GlobalStage", rows: int) -> None:
    """No more partitions than input rows: each partition's task writes a file, and ``partitions: 100000`` over 5
    rows wrote 100,000 of them. Decided from the recorded inputs, so a rerun decides the same."""
    effective = max(1, min(stage.partitions, rows))
    if effective < stage.partitions:
        log.warning("stage %s: partitions %d > %d input rows: using %d", stage.name, stage.partitions, rows,
                    effective)
        stage.partitions = effective


class ScanPhase(Phase):
    name = SCAN

    def tasks(self, stage: "GlobalStage", ctx: StageContext) -> list[Task]:
        check_inputs(ctx, stage)
        prev = ctx.prev
        shards = prev.done_shards()
        bound_partitions(stage, sum(prev.marker(s)["kept"] for s in shards))
        return [Task(self.name, s, inputs=(str(prev.file(KEPT, s)),)) for s in shards]

    def run(self, stage: "GlobalStage", task: Task, ctx: StageContext) -> dict[str, Any]:
        t0 = time.time()
        table = read_shard(Path(task.inputs[0]), ctx.kind)
        shard_ctx = ShardContext(ctx, task.key, shard_index=recorded_inputs(ctx.dir).index(task.key))
        out = stage.scan(table, shard_ctx)
        out, sides = out if isinstance(out, tuple) else (out, {})
        if "partition" not in out.column_names:
            raise AssertionError(f"stage {stage.name}: scan must return a 'partition' column")
        out = out.append_column("shard", pa.array([task.key] * len(out), pa.string()))
        folder = ctx.dir.work(self.name) / task.key
        for name, side in sides.items():
            write_parquet(side_file(ctx.dir, self.name, task.key, name), side)
        rows = {}
        part = out.column("partition")
        for k in range(stage.partitions):
            piece = out.filter(pc.equal(part, k))
            if len(piece):
                write_parquet(folder / f"{part_name(k)}.parquet", piece.drop_columns(["partition"]))
                rows[part_name(k)] = len(piece)
        return write_phase_marker(ctx, self.name, task.key, {"rows": len(out), "rows_in": len(table),
                                                            "partitions": rows, "partitions_total": stage.partitions,
                                                            "peak_rss_mb": peak_rss_mb()}, t0,
                                  outputs=[folder] if folder.exists() else [])

    def on_dead(self, stage, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        """A shard whose scan keeps killing workers takes no part in the steps; its apply rejects every row
        as ``worker_died`` (the run goes on, nothing is lost)."""
        return write_phase_marker(ctx, self.name, task.key, {"rows": 0, "rows_in": 0, "partitions": {},
                                                            "failed": why}, time.time())


class StepPhase(Phase):
    """A declared step: per partition (reading that partition of the previous phase) or once over everything."""

    def __init__(self, step: Step, previous: str):
        self.step, self.previous, self.name = step, previous, step.name

    def resources(self, stage: "GlobalStage") -> Resources:
        return stage.reduce_resources()

    def tasks(self, stage: "GlobalStage", ctx: StageContext) -> list[Task]:
        if self.step.per_partition:
            return [Task(self.name, part_name(k)) for k in range(stage.partitions)]
        return [Task(self.name, "all")]

    def _partition_tables(self, task: Task, ctx: StageContext) -> tuple[list[pa.Table], dict[str, int]]:
        tables, seen = [], {}
        if self.previous != SCAN:
            path = ctx.dir.work(self.previous) / f"{task.key}.parquet"
            return [pq.read_table(path)], {}
        for shard in ctx.dir.phase_done(SCAN):
            n = read_marker(ctx.dir.phase_marker(SCAN, shard))["partitions"].get(task.key, 0)
            if n:
                path = ctx.dir.work(SCAN) / shard / f"{task.key}.parquet"
                t = pq.read_table(path)
                if len(t) != n:
                    raise AssertionError(f"{path}: {len(t)} rows, its scan marker says {n}")
                tables.append(t)
            seen[shard] = n
        return tables, seen

    def run(self, stage: "GlobalStage", task: Task, ctx: StageContext) -> dict[str, Any]:
        t0 = time.time()
        fn = getattr(stage, self.step.method)
        info: dict[str, Any] = {}
        if self.step.per_partition:
            tables, seen = self._partition_tables(task, ctx)
            out = fn(int(task.key[1:]), tables)
            info = {"inputs": seen, "rows_in": sum(len(t) for t in tables)} if seen else \
                {"rows_in": sum(len(t) for t in tables)}
        else:
            out, info = fn(StepInputs(ctx, self.previous))
        if "id" in out.column_names and "shard" in out.column_names:  # decisions: by shard, then id
            out = out.sort_by([("shard", "ascending"), ("id", "ascending")])
        path = ctx.dir.work(self.name) / f"{task.key}.parquet"
        write_parquet(path, out)
        return write_phase_marker(ctx, self.name, task.key, {**info, "rows": len(out), "peak_rss_mb": peak_rss_mb()},
                                  t0, outputs=[path])


class GlobalApplyPhase(ApplyPhase):
    def __init__(self, decisions_phase: str):
        self.decisions_phase = decisions_phase

    def run(self, stage, task: Task, ctx: StageContext) -> dict[str, Any]:
        failed = read_marker(ctx.dir.phase_marker(SCAN, task.key)).get("failed")
        if failed:
            return reject_whole_shard(stage, ctx, task.key, Path(task.inputs[0]), None, f"scan: {failed}")
        files = [str(p) for p in phase_outputs(ctx.dir, self.decisions_phase)]
        decisions = ds.dataset(files, format="parquet").to_table(filter=pc.field("shard") == task.key)
        return run_stage_shard(stage, ctx, task.key, Path(task.inputs[0]),
                               ShardContext(ctx, task.key, decisions=decisions))


class GlobalStage(Stage):
    """Base class of stages whose decisions need every shard (see the module docstring)."""

    type: ClassVar[str] = ""
    #: The phases after the scan, in order; the last one's output is the decisions.
    steps: ClassVar[tuple[Step, ...]] = (Step("reduce", "reduce"),)
    #: ``all``: every scanned row has exactly one decision; ``some``: only some rows have one.
    decides: ClassVar[Literal["all", "some"]] = "all"
    #: Partitions of the scans: each per-partition task reads only its partition of every scan (memory bound).
    partitions: int = 1
    #: CPUs of one step's worker (a step holds one partition of every scan in memory).
    reduce_num_cpus: float = 1.0
    #: Step workers at once (default: as many as fit).
    reduce_concurrency: int | None = None
    #: A whole shard per ``process`` call: the apply looks rows up in the shard's decisions, vectorised.
    batch_size: int = Field(1_000_000, ge=1)

    def phases(self) -> list[Phase]:
        names = [SCAN] + [s.name for s in self.steps]
        return [ScanPhase(), *(StepPhase(s, names[i]) for i, s in enumerate(self.steps)),
                GlobalApplyPhase(self.steps[-1].name)]

    @field_validator("where")
    @classmethod
    def _no_where(cls, v: str | None) -> str | None:
        if v is not None:  # the scans see every row; passing some through the apply would split the decision
            raise ValueError("a global stage (dedup) decides over all rows and takes no 'where'; filter before it")
        return v

    def reduce_resources(self) -> Resources:
        return Resources(self.reduce_num_cpus, 0.0, self.reduce_concurrency)

    def scan(self, table: pa.Table, ctx: ShardContext) -> pa.Table | tuple[pa.Table, dict[str, pa.Table]]:
        """Measurements of one shard, with a ``partition`` column; optionally ``(table, {name: side table})``.
        ``ctx.shard_index`` is the shard's position among the inputs (for compact row keys)."""
        raise NotImplementedError

    @staticmethod
    def decided(table: pa.Table, ctx: ShardContext, columns: list[str]) -> dict[str, pa.Array]:
        """The decisions' ``columns`` for ``table``'s rows, in row order (null where a row has no decision)."""
        d = ctx.decisions
        where = pc.index_in(table.column("id"), value_set=d.column("id"))
        return {c: pc.take(d.column(c), where) for c in columns}

    def invariants(self, stage_dir: StageDir) -> list[str]:
        """This stage's own checks beside the framework's (e.g. every duplicate names a kept survivor)."""
        return []

    def verify(self, stage_dir: StageDir) -> list[str]:
        """The scans saw every input row of every shard, every task of every phase finished, and the decisions
        name each scanned row at most once (exactly once with ``decides = "all"``); then ``invariants``."""
        where = stage_dir.path.name
        problems = []
        scans = {s: read_marker(stage_dir.phase_marker(SCAN, s)) for s in stage_dir.phase_done(SCAN)}
        for shard in stage_dir.done_shards():
            m = scans.get(shard)
            if m is None:
                problems.append(f"{where}/{shard}: no scan marker")
            elif not m.get("failed") and m["rows_in"] != stage_dir.marker(shard)["in"]:
                problems.append(f"{where}/{shard}: the scan saw {m['rows_in']} rows, the shard has "
                                f"{stage_dir.marker(shard)['in']}")
        if not stage_dir.done_shards():
            return problems
        total = max((m.get("partitions_total", 0) for m in scans.values()), default=0)
        for step in self.steps:
            if step.per_partition and not total:  # (markers written before partitions were recorded)
                continue
            want = [part_name(k) for k in range(total)] if step.per_partition else ["all"]
            missing = sorted(set(want) - set(stage_dir.phase_done(step.name)))
            if missing:
                problems.append(f"{where}: phase {step.name} did not finish {missing[:5]}")
        files = phase_outputs(stage_dir, self.steps[-1].name)
        if not files:
            return problems + [f"{where}: no decisions under work/{self.steps[-1].name}"]
        ids = pa.concat_tables([pq.read_table(f, columns=["id"]) for f in files]).column("id")
        scanned = sum(m["rows_in"] for m in scans.values())
        if self.decides == "all" and len(ids) != scanned:
            problems.append(f"{where}: the decisions cover {len(ids)} rows, the scans saw {scanned}")
        if len(pc.unique(ids)) != len(ids):
            problems.append(f"{where}: an id appears in more than one decision")
        return problems + self.invariants(stage_dir)
