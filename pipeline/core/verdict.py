"""What a stage decides for a batch: one entry per input row, kept (None) or a reason, and the columns it computed
for every row. A stage therefore cannot drop a row: the framework splits the batch by the verdict and checks the
lengths."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


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

    def check(self, n: int, stage: str, declared: set[str] | None = None) -> None:
        """Fail loudly if the verdict does not cover exactly ``n`` rows (that would lose or invent records), or
        returns a column the stage does not declare (``declared``: its ``makes()``; None: not declared)."""
        if declared is not None and set(self.columns) - declared:
            raise AssertionError(f"stage {stage}: returned columns {sorted(set(self.columns) - declared)} that its "
                                 f"makes() does not declare ({sorted(declared)})")
        if len(self.reasons) != n:
            raise AssertionError(f"stage {stage}: verdict has {len(self.reasons)} reasons for {n} rows")
        for name, col in self.columns.items():
            if len(col) != n:
                raise AssertionError(f"stage {stage}: column {name!r} has {len(col)} values for {n} rows")
        if self.details is not None and len(self.details) != n:
            raise AssertionError(f"stage {stage}: {len(self.details)} details for {n} rows")
        if self.artifacts is not None and len(self.artifacts) != n:
            raise AssertionError(f"stage {stage}: {len(self.artifacts)} artifact values for {n} rows")
