"""Exact deduplication across every shard: one survivor per group of rows whose normalised text is identical.

scan: a 128-bit BLAKE2b of the normalised text per row (normalisation ``none``, ``whitespace`` (runs of
whitespace -> one space, ends stripped) or ``lower_whitespace``), partitioned by the hash; reduce: per
partition, rows grouped by hash and one survivor chosen deterministically (``lowest_id``, ``longest`` text, or
``highest`` value of ``survivor_column``, ties to the lowest id); apply: the others are rejected as
``exact_duplicate`` with ``duplicate_of`` naming the survivor. Every row gets ``dup_group_size``.
"""

from __future__ import annotations

import hashlib
import re
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from pipeline.global_stage import GlobalStage
from pipeline.shards import KEPT, REJECTED, StageDir
from pipeline.stage import Verdict

WS = re.compile(r"\s+")


def normalise(text: str | None, how: str) -> str:
    text = text or ""
    if how == "none":
        return text
    if how == "lower_whitespace":
        text = text.lower()
    return WS.sub(" ", text).strip()


def choose_survivors(t: pa.Table, group_col: str, survivor: str, value_col: str | None = None) -> pa.Table:
    """For rows with columns ``id``, ``shard``, ``group_col`` (and ``length``/``value``): ``duplicate_of`` (null for
    the survivor of each group) and ``group_size``. Deterministic: a total order on (group, priority, id)."""
    if len(t) == 0:
        return pa.table({"id": pa.array([], pa.string()), "shard": pa.array([], pa.string()),
                         "duplicate_of": pa.array([], pa.string()), "group_size": pa.array([], pa.int64())})
    keys = [(group_col, "ascending", "at_end")]
    if survivor == "longest":
        keys.append(("length", "descending", "at_end"))
    elif survivor == "highest":
        keys.append((value_col or "value", "descending", "at_end"))  # a missing value never wins
    keys.append(("id", "ascending", "at_end"))
    t = t.take(pc.sort_indices(t, sort_keys=keys))
    groups = t.column(group_col).to_numpy(zero_copy_only=False)
    n = len(t)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    sizes = np.diff(np.r_[starts, n])
    first = np.repeat(starts, sizes)
    ids = t.column("id").to_numpy(zero_copy_only=False)
    is_first = first == np.arange(n)
    dup_of = np.where(is_first, None, ids[first])
    return pa.table({"id": t.column("id"), "shard": t.column("shard"),
                     "duplicate_of": pa.array(dup_of.tolist(), pa.string()),
                     "group_size": pa.array(np.repeat(sizes, sizes), pa.int64())})


def verify_duplicates(stage_dir: StageDir, column: str = "duplicate_of") -> list[str]:
    """Every rejected duplicate names a survivor that this stage kept."""
    kept: set[str] = set()
    named: set[str] = set()
    for shard in stage_dir.done_shards():
        kept.update(pq.read_table(stage_dir.file(KEPT, shard), columns=["id"]).column("id").to_pylist())
        rej = pq.read_table(stage_dir.file(REJECTED, shard))
        if column in rej.column_names and len(rej):
            named.update(v for v in rej.column(column).to_pylist() if v is not None)
    missing = named - kept
    if missing:
        return [f"{stage_dir.path.name}: {len(missing)} duplicates name a survivor that was not kept "
                f"(e.g. {sorted(missing)[:3]})"]
    return []


class ExactDedup(GlobalStage):
    """Reject rows whose normalised text equals an earlier-chosen survivor's, across all shards."""

    type: ClassVar[str] = "exact_dedup"
    #: Column compared.
    column: str = "text"
    #: none | whitespace (collapse runs, strip) | lower_whitespace.
    normalize: Literal["none", "whitespace", "lower_whitespace"] = "whitespace"
    #: Which row of a group is kept: lowest_id, longest (text), or highest (value of survivor_column).
    survivor: Literal["lowest_id", "longest", "highest"] = "lowest_id"
    #: Numeric column for survivor: highest (e.g. lint_score).
    survivor_column: str | None = None
    partitions: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _survivor_column_given(self):
        if self.survivor == "highest" and not self.survivor_column:
            raise ValueError("survivor: highest needs survivor_column (a numeric column, e.g. lint_score)")
        return self

    def reads(self) -> set[str]:
        return super().reads() | ({self.survivor_column} if self.survivor_column else set())

    def makes(self) -> set[str]:
        return {"duplicate_of", "dup_group_size"}

    def scan(self, table: pa.Table, ctx=None) -> pa.Table:
        texts = table.column(self.column).to_pylist()
        digests = [hashlib.blake2b(normalise(t, self.normalize).encode("utf-8", "surrogatepass"),
                                   digest_size=16).digest() for t in texts]
        part = [int.from_bytes(d[:8], "little") % self.partitions for d in digests]
        cols = {"id": table.column("id"), "hash": pa.array(digests, pa.binary(16)),
                "length": pa.array([len(t or "") for t in texts], pa.int64()),
                "partition": pa.array(part, pa.int32())}
        if self.survivor == "highest":
            if self.survivor_column not in table.column_names:
                raise KeyError(f"exact_dedup: survivor_column {self.survivor_column!r} is not a column "
                               f"(columns: {table.column_names})")
            cols["value"] = table.column(self.survivor_column).cast(pa.float64())
        return pa.table(cols)

    def reduce(self, partition: int, tables: list[pa.Table]) -> pa.Table:
        t = pa.concat_tables(tables) if tables else pa.table({"id": pa.array([], pa.string()),
                                                              "shard": pa.array([], pa.string()),
                                                              "hash": pa.array([], pa.binary(16))})
        return choose_survivors(t, "hash", self.survivor)

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        d = self.decided(table, ctx, ["duplicate_of", "group_size"])
        dup_of = d["duplicate_of"].to_pylist()
        return Verdict([None if x is None else "exact_duplicate" for x in dup_of],
                       columns={"duplicate_of": d["duplicate_of"].cast(pa.string()),
                                "dup_group_size": d["group_size"].cast(pa.int64())})

    def invariants(self, stage_dir: StageDir) -> list[str]:
        return verify_duplicates(stage_dir)
