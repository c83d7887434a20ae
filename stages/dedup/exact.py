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

import pyarrow as pa
from pydantic import Field

from pipeline.core.stage import Verdict
from pipeline.store.shards import StageDir
from stages.dedup.survivors import DedupStage, choose_survivors, verify_duplicates

WS = re.compile(r"\s+")


def normalise(text: str | None, how: str) -> str:
    text = text or ""
    if how == "none":
        return text
    if how == "lower_whitespace":
        text = text.lower()
    return WS.sub(" ", text).strip()


class ExactDedup(DedupStage):
    """Reject rows whose normalised text equals an earlier-chosen survivor's, across all shards."""

    type: ClassVar[str] = "exact_dedup"
    #: Column compared.
    column: str = "text"
    #: none | whitespace (collapse runs, strip) | lower_whitespace.
    normalize: Literal["none", "whitespace", "lower_whitespace"] = "whitespace"
    partitions: int = Field(4, ge=1, le=1_048_576)

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
