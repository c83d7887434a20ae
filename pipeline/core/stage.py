"""The stage protocol: ``process(table, ctx) -> Verdict``, one verdict entry per input row.

A verdict gives every input row either ``None`` (kept) or a rejection reason, plus computed columns for all
rows. A stage therefore cannot drop a row: the framework splits the batch into kept and rejected by the verdict,
and checks the lengths.

Scores are columns and decisions are reasons (computing is separate from deciding), so a threshold can change
without recomputation: rejected rows keep their score columns too.

A stage is a list of phases (``pipeline.phases.phase``). A plain stage is one apply phase over the previous stage's
finished shards. A ``GlobalStage`` (``pipeline.core.global_stage``) decides a row's fate from every shard: it scans
each shard, reduces over all scans, then applies per shard what the reduce decided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
from pydantic import Field, field_validator

from pipeline.core.component import Component
from pipeline.core.errors import WorkerBroken
from pipeline.core.verdict import Verdict
from pipeline.core.where import columns, parse

if TYPE_CHECKING:
    from pipeline.core.task import ShardContext, StageContext
    from pipeline.store.shards import StageDir

__all__ = ["Stage", "Verdict", "WorkerBroken"]


class Stage(Component):
    """Base class of every stage. Subclasses set ``type`` and implement ``process``."""

    role: ClassVar[str] = "stage"
    #: Rows handed to ``process`` at once.
    batch_size: int = Field(256, ge=1)
    #: Only rows where this holds go through the stage; the others pass through unchanged and kept, counted as
    #: ``passed_through`` (grammar: ``pipeline/core/where.py``; e.g. ``llm_score < 8``).
    where: str | None = None
    #: Seconds one row may take in ``process`` (a batch gets this times its rows, then each row alone): a row over
    #: it is rejected as ``row_timeout`` and the run goes on (``pipeline/proc/row_budget.py``; where it holds).
    #: None: off.
    row_timeout_s: float | None = Field(300.0, gt=0, le=86_400)
    #: Seconds between saves of a running shard's finished rows (``work/pieces``): a kill or Ctrl-C loses at most
    #: the rows since the last save; a rerun goes on from there.
    piece_s: float = Field(30.0, gt=0, le=86_400)

    @field_validator("where")
    @classmethod
    def _check_where(cls, v: str | None) -> str | None:
        if v is not None:
            parse(v)  # a WhereError (ValueError) becomes a config error naming the key
        return v

    def reads(self) -> set[str]:
        """The columns this configuration reads: its ``column`` key where it has one, the names in its ``where:``
        and what a subclass adds. Checked when a config is loaded (``check_columns``): a column that neither the
        source nor an earlier stage makes is a config error, named before anything runs."""
        names = set(columns(self.where)) if self.where else set()
        col = getattr(self, "column", None)
        return names | ({col} if isinstance(col, str) else set())

    def makes(self) -> set[str] | None:
        """The columns ``process`` returns (added or replaced), checked on every verdict; None: not declared
        (then what later stages read is not checked against it)."""
        return None

    def process(self, table: pa.Table, ctx: "ShardContext | None" = None) -> Verdict:
        raise NotImplementedError(f"stage type {self.type!r} does not implement process()")

    def write_artifacts(self, kept: list[Any], ctx: "ShardContext") -> dict[str, Any]:
        """Write per-shard files from kept rows' artifact values; return facts to record (``files``: the paths
        written, relative to the stage folder, which the shard's marker seals). Default: nothing."""
        return {}

    def finalize(self, ctx: "StageContext") -> dict[str, Any]:
        """Once, after every shard of this stage is done: run-level artefacts (e.g. a data-path file)."""
        return {}

    def verify(self, stage_dir: "StageDir") -> list[str]:
        """Invariants the generic ledger cannot see (e.g. a duplicate's survivor was kept); problems found."""
        return []
