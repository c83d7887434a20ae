"""The stage protocol.

A stage is a small pydantic model: its fields are its configuration (validated, with errors that name the
key), it declares the resources one worker needs (``num_cpus``/``num_gpus``), builds heavy state once in
``setup()`` and has one method, ``process(table) -> Verdict``. A verdict gives every input row either ``None``
(kept) or a rejection reason, plus computed columns for all rows. A stage therefore cannot drop a row: the
framework splits the batch into kept and rejected by the verdict, and checks the lengths.

Scores are columns and decisions are reasons (computing is separate from deciding), so a threshold can change
without recomputation: rejected rows keep their score columns too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

#: type name -> Stage subclass; filled by ``Stage.__init_subclass__``.
REGISTRY: dict[str, type["Stage"]] = {}


@dataclass
class Verdict:
    """What a stage decided for one batch: one entry per input row, in order."""

    reasons: list[str | None]
    columns: dict[str, list | pa.Array] = field(default_factory=dict)
    details: list[str | None] | None = None
    #: Optional per-row payload handed to ``Stage.write_side`` for kept rows (e.g. token ids); not stored.
    side: list[Any] | None = None
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
        if self.side is not None and len(self.side) != n:
            raise AssertionError(f"stage {stage}: {len(self.side)} side values for {n} rows")


class Stage(BaseModel):
    """Base class of every stage. Subclasses set ``type`` and implement ``process``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    type: ClassVar[str] = ""
    #: Name in the run directory and in ``--set stages.NAME.key=value``; defaults to ``type``.
    name: str = ""
    #: CPUs and GPUs one worker (Ray actor) of this stage holds.
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    #: Number of workers; default: as many as the cluster's CPUs (or GPUs) allow.
    concurrency: int | None = None
    #: Rows handed to ``process`` at once.
    batch_size: int = 256
    #: Times a shard is retried after its worker died before its rows are rejected as ``worker_died``.
    max_retries: int = 2

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("type"):
            REGISTRY[cls.type] = cls

    def model_post_init(self, _ctx) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.type)

    # -- the protocol -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Build heavy state (models, linters, engines) once per worker."""

    def process(self, table: pa.Table) -> Verdict:  # pragma: no cover - abstract
        raise NotImplementedError

    def write_side(self, side: list[Any], stage_dir: str, shard: str) -> dict[str, Any]:
        """Write per-shard artifacts from kept rows' side values; return stats to record. Default: nothing."""
        return {}

    def shard_info(self) -> dict[str, Any]:
        """Facts worth recording in every shard's stats (e.g. the interpreter version)."""
        return {}

    def teardown(self) -> None:
        """Release what ``setup`` built (engines, subprocesses)."""


def stage_class(type_name: str) -> type[Stage]:
    import stages  # noqa: F401  (registers the stage families)

    try:
        return REGISTRY[type_name]
    except KeyError:
        raise KeyError(f"unknown stage type {type_name!r}; known: {', '.join(sorted(REGISTRY))}") from None
