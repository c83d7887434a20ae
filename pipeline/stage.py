"""The stage protocol: ``process(table, ctx) -> Verdict``, one verdict entry per input row.

A verdict gives every input row either ``None`` (kept) or a rejection reason, plus computed columns for all
rows. A stage therefore cannot drop a row: the framework splits the batch into kept and rejected by the verdict,
and checks the lengths.

Scores are columns and decisions are reasons (computing is separate from deciding), so a threshold can change
without recomputation: rejected rows keep their score columns too.

A stage is a list of phases (``pipeline.phases``). A plain stage is one apply phase over the previous stage's
finished shards. A ``GlobalStage`` (``pipeline.global_stage``) decides a row's fate from every shard: it scans
each shard, reduces over all scans, then applies per shard what the reduce decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
from pydantic import Field, field_validator

from pipeline.component import Component

if TYPE_CHECKING:
    from pipeline.phases import Phase, ShardContext, StageContext
    from pipeline.shards import StageDir


class WorkerBroken(RuntimeError):
    """Raised by ``process`` when the worker's heavy state is broken (an engine that died), not the data: the
    executor replaces the worker and retries the task (``max_retries``), then rejects its rows as
    ``worker_died``. Never turned into a per-row rejection."""


@dataclass
class Verdict:
    """What a stage decided for one batch: one entry per input row, in order."""

    reasons: list[str | None]
    columns: dict[str, list | pa.Array] = field(default_factory=dict)
    details: list[str | None] | None = None
    #: Optional per-row payload handed to ``Stage.write_artifacts`` for kept rows (e.g. token ids); not stored.
    artifacts: list[Any] | None = None
    #: Additive counters for the stats file (e.g. tokens generated).
    counters: dict[str, float] = field(default_factory=dict)

    def check(self, n: int, stage: str) -> None:
        """Fail loudly if the verdict does not cover exactly ``n`` rows: that would lose or invent records."""
        if len(self.reasons) != n:
            raise AssertionError(f"stage {stage}: verdict has {len(self.reasons)} reasons for {n} rows")
        for name, col in self.columns.items():
            if len(col) != n:
                raise AssertionError(f"stage {stage}: column {name!r} has {len(col)} values for {n} rows")
        if self.details is not None and len(self.details) != n:
            raise AssertionError(f"stage {stage}: {len(self.details)} details for {n} rows")
        if self.artifacts is not None and len(self.artifacts) != n:
            raise AssertionError(f"stage {stage}: {len(self.artifacts)} artifact values for {n} rows")


class Stage(Component):
    """Base class of every stage. Subclasses set ``type`` and implement ``process``."""

    role: ClassVar[str] = "stage"
    #: Rows handed to ``process`` at once.
    batch_size: int = Field(256, ge=1)
    #: Only rows where this holds go through the stage; the others pass through unchanged and kept, counted as
    #: ``passed_through`` (grammar: ``pipeline/where.py``; e.g. ``llm_score < 8``).
    where: str | None = None

    @field_validator("where")
    @classmethod
    def _check_where(cls, v: str | None) -> str | None:
        if v is not None:
            from pipeline.where import parse

            parse(v)  # a WhereError (ValueError) becomes a config error naming the key
        return v

    def phases(self) -> list["Phase"]:
        from pipeline.phases import ApplyPhase

        return [ApplyPhase()]

    def process(self, table: pa.Table, ctx: "ShardContext | None" = None) -> Verdict:
        raise NotImplementedError(f"stage type {self.type!r} does not implement process()")

    def write_artifacts(self, kept: list[Any], ctx: "ShardContext") -> dict[str, Any]:
        """Write per-shard files from kept rows' artifact values; return facts to record. Default: nothing."""
        return {}

    def finalize(self, ctx: "StageContext") -> dict[str, Any]:
        """Once, after every shard of this stage is done: run-level artefacts (e.g. a data-path file)."""
        return {}

    def verify(self, stage_dir: "StageDir") -> list[str]:
        """Invariants the generic ledger cannot see (e.g. a duplicate's survivor was kept); problems found."""
        return []
