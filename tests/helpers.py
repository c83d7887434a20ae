"""Test helpers, and stage types used only by tests (registered through the config's ``plugins`` key)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.stage import Stage, Verdict
from pipeline.store.shards import KEPT


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


def rows_of(run_dir: Path, stage: str, part: str) -> list[dict]:
    """Every row of one part (``kept``/``rejected``) of a stage folder (``01-name``) of a run, shard by shard."""
    sd = Path(run_dir) / "stages" / stage / part
    return [r for f in sorted(sd.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


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

        def scan(self, table, ctx=None):
            time.sleep(self.delay_s)
            return super().scan(table, ctx)

        def reduce(self, partition, tables):
            time.sleep(self.delay_s)
            return super().reduce(partition, tables)

        def process(self, table, ctx=None):
            time.sleep(self.delay_s)
            return super().process(table, ctx)

    return SlowExactDedup


SlowExactDedup = _slow_dedup()


def _counting_dedup():
    from stages.dedup.exact import ExactDedup

    class CountingExactDedup(ExactDedup):
        """exact_dedup that appends ``setup PID`` / ``teardown PID`` to ``log`` (how often workers set up)."""

        type: ClassVar[str] = "test_counting_exact_dedup"
        log: str = ""

        def setup(self) -> None:
            super().setup()
            with open(self.log, "a") as f:
                f.write(f"setup {os.getpid()}\n")

        def teardown(self) -> None:
            with open(self.log, "a") as f:
                f.write(f"teardown {os.getpid()}\n")
            super().teardown()

    return CountingExactDedup


CountingExactDedup = _counting_dedup()


def _slow_minhash():
    import time

    from stages.dedup.minhash import MinhashDedup

    class SlowMinhashDedup(MinhashDedup):
        """minhash_dedup that sleeps in every task of every phase (for kill tests)."""

        type: ClassVar[str] = "test_slow_minhash_dedup"
        delay_s: float = 0.0

        def scan(self, table, ctx):
            time.sleep(self.delay_s)
            return super().scan(table, ctx)

        def reduce(self, partition, tables):
            time.sleep(self.delay_s)
            return super().reduce(partition, tables)

        def merge(self, ctx):
            time.sleep(self.delay_s * 2)
            return super().merge(ctx)

        def process(self, table, ctx=None):
            time.sleep(self.delay_s)
            return super().process(table, ctx)

    return SlowMinhashDedup


SlowMinhashDedup = _slow_minhash()


class NeedsMissingPackage(Stage):
    """A stage whose package is not installed (what a user without the right extra sees)."""

    type: ClassVar[str] = "test_needs_package"
    requires: ClassVar[tuple[str, ...]] = ("surely_not_an_installed_package",)
    extra: ClassVar[str] = "web"

    def process(self, table: pa.Table, ctx=None) -> Verdict:  # pragma: no cover - never reached
        return Verdict([None] * len(table))


class Slow(Stage):
    """Sleeps ``delay_s`` per batch (a run that is still going while a test looks at it). With ``hold_file``: while
    that file exists, every batch after the first ``hold_after`` (counted in ``<hold_file>.seen``) waits — a run held
    mid-stage for as long as a test needs, whatever the machine's speed."""

    type: ClassVar[str] = "test_slow"
    delay_s: float = 1.0
    hold_file: str = ""
    hold_after: int = 2

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        import os
        import time
        from pathlib import Path

        time.sleep(self.delay_s)
        if self.hold_file:
            seen = Path(self.hold_file + ".seen")
            seen.mkdir(exist_ok=True)
            before = len(list(seen.iterdir()))
            (seen / f"{os.getpid()}-{time.time_ns()}").touch()
            while before >= self.hold_after and os.path.exists(self.hold_file):
                time.sleep(0.05)
        return Verdict([None] * len(table))


def _engine_killer():
    from stages.rewrite.stage import Rewrite

    class EngineKiller(Rewrite):
        """The rewrite stage, but on the shard ``kill_shard`` it kills its own vLLM engine-core process (SIGKILL)
        while that shard's requests are in flight, the first ``kill_times`` times it meets the shard (counted in
        files under ``state_dir``, which outlive the worker)."""

        type: ClassVar[str] = "test_engine_killer"
        kill_shard: str = ""
        kill_times: int = 1
        state_dir: str = ""

        def process(self, table, ctx=None):
            import signal
            import threading
            import time

            import psutil

            if ctx is not None and ctx.shard == self.kill_shard:
                marks = Path(self.state_dir)
                marks.mkdir(parents=True, exist_ok=True)
                seen = len(list(marks.glob("kill-*")))
                if seen < self.kill_times:
                    (marks / f"kill-{seen}").write_text(str(os.getpid()))
                    if not self._loop.pids:  # else the kill below would silently kill nothing
                        raise RuntimeError("no engine process to kill: set engine_process: separate")

                    def kill_engine_core():  # as soon as this shard's requests are in the engine
                        engine = self._llm.llm_engine
                        deadline = time.time() + 30
                        while engine.get_num_unfinished_requests() == 0 and time.time() < deadline:
                            time.sleep(0.001)
                        for pid in self._loop.pids:
                            try:
                                psutil.Process(pid).send_signal(signal.SIGKILL)
                            except psutil.Error:
                                pass

                    threading.Thread(target=kill_engine_core, daemon=True).start()
            return super().process(table, ctx)

    return EngineKiller


EngineKiller = _engine_killer()


class Hangs(Stage):
    """Rows whose text holds ``HANG`` never finish (a pure-Python loop, or a backtracking pattern with ``regex``);
    the others pass. For the per-row time budget."""

    type: ClassVar[str] = "test_hangs"
    how: str = "loop"

    def makes(self) -> set[str]:
        return set()

    def process(self, table, ctx=None):
        import re

        from pipeline.core.stage import Verdict

        for text in table.column("text").to_pylist():
            if text and "HANG" in text:
                if self.how == "regex":  # exponential backtracking, inside the C regex engine
                    re.match(r"(a+)+$", "a" * 64 + "b")
                while True:
                    pass
        return Verdict([None] * len(table))
