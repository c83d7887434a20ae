"""The phases of a global stage (``pipeline/core/global_stage.py`` declares the stage): the scan, the declared
steps, and the apply that reads the decisions."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.core.component import Resources
from pipeline.core.global_stage import SCAN, GlobalStage, Step, StepInputs, part_name
from pipeline.core.task import ShardContext, StageContext, Task
from pipeline.phases.apply import ApplyPhase, read_shard, reject_whole_shard, run_stage_shard
from pipeline.phases.phase import Phase, check_inputs, peak_rss_mb, write_phase_marker
from pipeline.store.shards import KEPT, write_parquet
from pipeline.store.work import phase_outputs, read_marker, recorded_inputs, side_file

log = logging.getLogger("swallow")


def global_phases(stage: GlobalStage) -> list[Phase]:
    """The scan, each declared step (reading the phase before it), then the apply of the last step's decisions."""
    names = [SCAN] + [s.name for s in stage.steps]
    return [ScanPhase(), *(StepPhase(s, names[i]) for i, s in enumerate(stage.steps)),
            GlobalApplyPhase(stage.steps[-1].name)]


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
