"""A deterministic sample: a rate or a count of rows, chosen by a hash of each row's id (and a seed).

A row's key is the first 8 bytes of BLAKE2b(``seed:id``) read as a fraction in [0, 1) (the ``sample_key``
column). ``rate: r`` keeps the rows whose key is below r; ``count: n`` keeps the n rows with the smallest keys over
every shard (a global stage: scan, one pick over all keys, apply), ties broken by id. Either way the same rows are
kept on every rerun and under any sharding, since the key depends on the id and the seed alone. The others are
``not_sampled``.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from pipeline.core.global_stage import GlobalStage, Step
from pipeline.core.stage import Verdict

_SCALE = float(1 << 64)


def sample_keys(ids: list, seed: int | str) -> list[float]:
    return [int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode("utf-8", "surrogatepass"),
                                           digest_size=8).digest(), "big") / _SCALE for i in ids]


class Sample(GlobalStage):
    """Keep a deterministic sample of rows: a ``rate`` or a ``count`` (see the module docstring)."""

    type: ClassVar[str] = "sample"
    not_measured: ClassVar[frozenset[str]] = frozenset({"sample_key"})
    steps: ClassVar = (Step("pick", "pick", per_partition=False),)
    decides: ClassVar = "all"
    #: Keep rows whose key is below this fraction (0-1).
    rate: float | None = Field(None, ge=0.0, le=1.0)
    #: Keep this many rows (the smallest keys over every shard).
    count: int | None = Field(None, ge=0, le=10**12)
    #: Another seed draws another sample.
    seed: int = Field(0, ge=0, le=2**63 - 1)
    #: A numeric column whose ranges share ``count`` equally (a stratified sample); None: uniform.
    stratify_by: str | None = None
    #: Ascending edges of the ranges of ``stratify_by`` (at least two).
    strata: list[float] = []

    @model_validator(mode="after")
    def _one_of(self):
        if (self.rate is None) == (self.count is None):
            raise ValueError("sample: give exactly one of rate (a fraction) or count (a number of rows)")
        if self.stratify_by is not None:
            if self.count is None:
                raise ValueError("sample: stratify_by shares a count between ranges; give count, not rate")
            if len(self.strata) < 2 or sorted(self.strata) != self.strata or len(set(self.strata)) != len(self.strata):
                raise ValueError("sample: strata are at least two ascending edges, e.g. [0, 0.2, 0.5, 1]")
        return self

    def reads(self) -> set[str]:
        return super().reads() | ({self.stratify_by} if self.stratify_by else set())

    def stratum(self, values: list) -> list[int]:
        """The range of each value (-1: outside the edges or none: never sampled)."""
        edges, out = self.strata, []
        for v in values:
            if v is None or not isinstance(v, int | float) or v != v or v < edges[0] or v > edges[-1]:
                out.append(-1)
            else:
                out.append(min(sum(1 for e in edges if v >= e) - 1, len(edges) - 2))
        return out

    def makes(self) -> set[str]:
        return {"sample_key"}

    def scan(self, table: pa.Table, ctx=None) -> pa.Table:
        keys = sample_keys(table.column("id").to_pylist(), self.seed)
        strata = self.stratum(table.column(self.stratify_by).to_pylist()) if self.stratify_by else [0] * len(keys)
        return pa.table({"id": table.column("id"), "key": pa.array(keys, pa.float64()),
                         "stratum": pa.array(strata, pa.int32()), "partition": pa.array([0] * len(keys), pa.int32())})

    def pick(self, inputs) -> tuple[pa.Table, dict]:
        tables = inputs.tables()
        t = pa.concat_tables(tables) if tables else pa.table({
            "id": pa.array([], pa.string()), "key": pa.array([], pa.float64()), "shard": pa.array([], pa.string()),
            "stratum": pa.array([], pa.int32())})
        if self.rate is not None:
            keep = pc.less(t.column("key"), self.rate)
        else:
            order = t.sort_by([("key", "ascending"), ("id", "ascending")])
            if self.stratify_by:  # count shared equally between the ranges (the first ones take the remainder)
                n = len(self.strata) - 1
                share = {k: self.count // n + (1 if k < self.count % n else 0) for k in range(n)}
                taken: dict[int, int] = {}
                chosen_ids = []
                for i, st in zip(order.column("id").to_pylist(), order.column("stratum").to_pylist()):
                    if taken.get(st, 0) < share.get(st, 0):
                        taken[st] = taken.get(st, 0) + 1
                        chosen_ids.append(i)
                chosen = pa.array(chosen_ids, pa.string())
            else:
                chosen = order.slice(0, self.count).column("id")
            keep = pc.is_in(t.column("id"), value_set=chosen)
        t = t.append_column("keep", keep)
        return t.select(["id", "shard", "key", "keep"]), {"kept": int(pc.sum(keep).as_py() or 0), "rows": len(t)}

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        d = self.decided(table, ctx, ["key", "keep"])
        keep = d["keep"].to_pylist()
        return Verdict([None if k else "not_sampled" for k in keep],
                       columns={"sample_key": d["key"].cast(pa.float64())})
