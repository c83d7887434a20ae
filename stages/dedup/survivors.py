"""What every dedup stage shares: one survivor per group of duplicates, chosen deterministically, and the check
that every rejected duplicate names a survivor the stage kept.

``survivor``: ``lowest_id``, ``longest`` (text), or ``highest`` (value of ``survivor_column``, e.g. lint_score);
ties go to the lowest id, so the choice is a function of the rows alone.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import model_validator

from pipeline.core.global_stage import GlobalStage
from pipeline.store.shards import KEPT, REJECTED, StageDir


class DedupStage(GlobalStage):
    """A global stage that keeps one survivor per group of duplicates (``survivor``, ``survivor_column``)."""

    #: Which row of a group is kept: lowest_id, longest (text), or highest (value of survivor_column).
    survivor: Literal["lowest_id", "longest", "highest"] = "lowest_id"
    #: Numeric column for survivor: highest (e.g. lint_score).
    survivor_column: str | None = None

    @model_validator(mode="after")
    def _survivor_column_given(self):
        if self.survivor == "highest" and not self.survivor_column:
            raise ValueError("survivor: highest needs survivor_column (a numeric column, e.g. lint_score)")
        return self

    def reads(self) -> set[str]:
        return super().reads() | ({self.survivor_column} if self.survivor_column else set())


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
