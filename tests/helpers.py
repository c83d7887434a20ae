"""Stage types used only by tests (registered through the config's ``plugins`` key)."""

from __future__ import annotations

import os
from typing import ClassVar

import pyarrow as pa

from pipeline.stage import Stage, Verdict


class Crashy(Stage):
    """Kills its worker process when it sees a text containing ``marker`` (a stand-in for a segfault)."""

    type: ClassVar[str] = "test_crashy"
    marker: str = "CRASH-ME"

    def process(self, table: pa.Table) -> Verdict:
        texts = table.column("text").to_pylist()
        if any(self.marker in (t or "") for t in texts):
            os._exit(1)
        return Verdict([None] * len(texts))


class Raises(Stage):
    """Raises on rows whose text contains ``marker``: the framework must isolate them, not fail the run."""

    type: ClassVar[str] = "test_raises"
    marker: str = "RAISE-ME"

    def process(self, table: pa.Table) -> Verdict:
        texts = table.column("text").to_pylist()
        for t in texts:
            if self.marker in (t or ""):
                raise ValueError("boom")
        return Verdict([None] * len(texts), columns={"seen": [True] * len(texts)})


class BadSetup(Stage):
    """Fails in setup(), like an engine pointed at a model that does not exist."""

    type: ClassVar[str] = "test_bad_setup"

    def setup(self) -> None:
        raise FileNotFoundError("model directory /nonexistent not found")

    def process(self, table: pa.Table) -> Verdict:  # pragma: no cover - never reached
        return Verdict([None] * len(table))
