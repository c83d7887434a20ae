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

from pipeline.core.component import Component, Resources
from pipeline.core.errors import ConfigError
from pipeline.core.task import StageContext, Task
from pipeline.core.where import WhereError, check
from pipeline.store.shards import KEPT, seal, write_json, write_parquet
from pipeline.store.work import side_file


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


def peak_rss_mb() -> float:
    """This worker process's peak resident memory so far (MB): what a task really needed."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ------------------------------------------------------------------------------------------------ work files

def write_side(ctx: StageContext, phase: str, key: str, name: str, table: pa.Table) -> None:
    write_parquet(side_file(ctx.dir, phase, key, name), table)


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


def check_where(component: Component, schema: pa.Schema) -> None:
    """A stage's ``where:`` against the columns and types its rows will have: a config error before any row."""
    try:
        check(component.where, schema)
    except WhereError as exc:
        raise ConfigError(f"stages.{component.name}.where: {exc}") from None
