"""The phase protocol and the work directory: what every phase of every component shares.

A component is a list of phases; a phase is a set of keyed tasks, each with its own completion marker written
last, so a rerun redoes exactly the tasks without one. A phase knows its resources (a reduce may want one big
worker) and what to do when a task keeps killing its workers (``on_dead``). The runner knows no stage kinds: it
asks each phase for its tasks and hands the unfinished ones to an executor.

Multi-phase stages keep their intermediate files under ``work/PHASE/`` of their stage folder, through this API
only (no stage builds a framework path): a task's marker (``work/PHASE/done/KEY.json``, sealing every file the
task wrote), side files of a task (``work/PHASE/KEY/NAME.parquet``), and the inputs the stage's first phase saw
(``work/inputs.json``: the previous stage's finished shards and their seals), against which a rerun is checked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.component import Component, Resources
from pipeline.errors import ConfigError
from pipeline.shards import KEPT, StageDir, seal, write_json, write_parquet
from pipeline.task import StageContext, Task
from pipeline.where import WhereError, check


class Phase:
    """One phase of a component; subclasses implement ``tasks`` and ``run``."""

    name: str = ""

    def resources(self, component: Component) -> Resources:
        return component.resources()

    def tasks(self, component: Component, ctx: StageContext) -> list[Task]:
        raise NotImplementedError

    def is_done(self, ctx: StageContext, key: str) -> bool:
        return ctx.dir.phase_marker(self.name, key).exists()

    def run(self, component: Component, task: Task, ctx: StageContext) -> dict[str, Any]:
        """Do the task in a worker (the component already set up); write its files, then its marker."""
        raise NotImplementedError

    def attempt_key(self, task: Task, ctx: StageContext) -> str:
        """What the executor counts a dead worker's attempts against (``max_retries``): the task."""
        return task.key

    def max_retries(self, component: Component, task: Task, ctx: StageContext) -> int:
        """How many dead workers this task may be retried after (its stage's ``max_retries``)."""
        return component.max_retries

    def event_context(self, task: Task, ctx: StageContext) -> StageContext:
        """The stage whose ``events.jsonl`` records this task's retries."""
        return ctx

    def on_dead(self, component: Component, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        """A task killed ``max_retries + 1`` workers. Default: stop the run (a global phase cannot guess)."""
        raise RuntimeError(f"stage {component.name!r}, phase {self.name!r}, task {task.key}: killed "
                           f"{component.max_retries + 1} workers ({why}); stopping (finished tasks are kept)")


# ------------------------------------------------------------------------------------------------ markers

def write_phase_marker(ctx: StageContext, phase: str, key: str, info: dict[str, Any], t0: float,
                       outputs: list[Path] = ()) -> dict[str, Any]:
    """The marker of one task of a multi-phase stage, written after all of the task's files; it seals
    ``outputs`` (files, or folders: every file under them) with their sizes and SHA-256."""
    info = {"phase": phase, "key": key, "wall_s": round(time.time() - t0, 3), **info}
    if outputs:
        info["files"] = seal(ctx.dir.path, list(outputs))
    write_json(ctx.dir.phase_marker(phase, key), info)
    return info


def read_marker(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def peak_rss_mb() -> float:
    """This worker process's peak resident memory so far (MB): what a task really needed."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ------------------------------------------------------------------------------------------------ work files

def side_file(stage_dir: StageDir, phase: str, key: str, name: str) -> Path:
    """Where a task of ``phase`` keeps a side table ``name`` (sealed with the task's other files)."""
    return stage_dir.work(phase) / key / f"{name}.parquet"


def write_side(ctx: StageContext, phase: str, key: str, name: str, table: pa.Table) -> None:
    write_parquet(side_file(ctx.dir, phase, key, name), table)


def read_side(stage_dir: StageDir, phase: str, key: str, name: str, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(side_file(stage_dir, phase, key, name), columns=columns)


def phase_outputs(stage_dir: StageDir, phase: str) -> list[Path]:
    """The files a partitioned phase wrote, one per task (``work/PHASE/KEY.parquet``), in key order."""
    return sorted(p for p in stage_dir.work(phase).glob("*.parquet") if not p.name.startswith(".tmp-"))


# ------------------------------------------------------------------------------------------------ inputs

def input_fingerprint(ctx: StageContext) -> dict[str, Any]:
    """The previous stage's finished shards and their kept files' seals: what a multi-phase stage's scan saw."""
    prev = ctx.prev
    out = {}
    for shard in prev.done_shards():
        m = prev.marker(shard)
        out[shard] = {"kept": m["kept"], "file": m["files"][KEPT]}
    return out


def check_inputs(ctx: StageContext, component: Component) -> None:
    """A multi-phase stage records its inputs once; a rerun whose inputs changed is refused (like a config)."""
    path = ctx.dir.path / "work" / "inputs.json"
    now = input_fingerprint(ctx)  # (sorted keys: the scan numbers shards by their order here)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != now:
            added = sorted(set(now) - set(saved))
            gone = sorted(set(saved) - set(now))
            changed = sorted(k for k in set(now) & set(saved) if now[k] != saved[k])
            raise ConfigError(f"{ctx.stage_dir}: stage {component.name!r} already scanned other input shards "
                              f"(added {added[:5]}, gone {gone[:5]}, changed {changed[:5]}); its decisions would "
                              f"not cover the input. Use a new --output directory or delete {ctx.stage_dir}")
    else:
        write_json(path, now)


def recorded_inputs(stage_dir: StageDir) -> list[str]:
    """The input shards a multi-phase stage scanned, in order (a scan's shard index is a position here)."""
    return sorted(json.loads((stage_dir.path / "work" / "inputs.json").read_text()))


def check_where(component: Component, schema: pa.Schema) -> None:
    """A stage's ``where:`` against the columns and types its rows will have: a config error before any row."""
    try:
        check(component.where, schema)
    except WhereError as exc:
        raise ConfigError(f"stages.{component.name}.where: {exc}") from None
