"""Test helpers, and stage types used only by tests (registered through the config's ``plugins`` key)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.shards import KEPT
from pipeline.stage import Stage, Verdict


def compiles(src: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(src, "<x>", "exec")
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def kept_ids(run_dir: Path, stage_index: int = -1) -> list[str]:
    stages = sorted((Path(run_dir) / "stages").iterdir())
    sd = stages[stage_index]
    return sorted(i for f in (sd / KEPT).glob("*.parquet") for i in pq.read_table(f).column("id").to_pylist())


def table_of(texts, ids=None, language="python") -> pa.Table:
    ids = ids or [f"t{i}" for i in range(len(texts))]
    return pa.table({"id": ids, "text": texts, "language": [language] * len(texts)})


class Crashy(Stage):
    """Kills its worker process when it sees a text containing ``marker`` (a stand-in for a segfault)."""

    type: ClassVar[str] = "test_crashy"
    marker: str = "CRASH-ME"

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        texts = table.column("text").to_pylist()
        if any(self.marker in (t or "") for t in texts):
            os._exit(1)
        return Verdict([None] * len(texts))


class Raises(Stage):
    """Raises on rows whose text contains ``marker``: the framework must isolate them, not fail the run."""

    type: ClassVar[str] = "test_raises"
    marker: str = "RAISE-ME"

    def process(self, table: pa.Table, ctx=None) -> Verdict:
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

    def process(self, table: pa.Table, ctx=None) -> Verdict:  # pragma: no cover - never reached
        return Verdict([None] * len(table))


def _slow_dedup():
    import time

    from stages.dedup.exact import ExactDedup

    class SlowExactDedup(ExactDedup):
        """exact_dedup that sleeps in every task of every phase, so a test can kill the driver inside one."""

        type: ClassVar[str] = "test_slow_exact_dedup"
        delay_s: float = 0.0

        def scan(self, table):
            time.sleep(self.delay_s)
            return super().scan(table)

        def reduce(self, partition, tables):
            time.sleep(self.delay_s)
            return super().reduce(partition, tables)

        def process(self, table, ctx=None):
            time.sleep(self.delay_s)
            return super().process(table, ctx)

    return SlowExactDedup


SlowExactDedup = _slow_dedup()
