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

from dataclasses import dataclass
from typing import ClassVar, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from pipeline.core.component import Resources
from pipeline.core.stage import Stage
from pipeline.core.task import ShardContext, StageContext
from pipeline.store.shards import StageDir
from pipeline.store.work import phase_outputs, read_marker, read_side, recorded_inputs

SCAN = "scan"


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
