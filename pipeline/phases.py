"""Phases: what the runner runs. A component is a list of phases; a phase is a set of keyed tasks.

Every task has its own completion marker, written last, so a rerun redoes exactly the tasks without one:

* ``SourcePhase`` (a source's only phase): one task per planned input shard -> ``kept``/``rejected``/``stats``
  and ``done/SHARD.json``.
* ``ApplyPhase`` (every stage's last phase): one task per finished shard of the previous stage, the same files.
  The per-shard ledger (rows in = kept + rejected, same ids) is checked before anything is written, and
  ``verify`` reads only these files, whatever phases came before.
* ``ScanPhase`` / ``ReducePhase`` (``GlobalStage``): per-shard measurements written partitioned by key under
  ``work/scan/``, then one task per partition under ``work/reduce/``; their markers live in
  ``work/PHASE/done/KEY.json``.

A phase knows its resources (a reduce may want one big worker) and what to do when a task keeps killing its
workers (``on_dead``). The runner knows no stage kinds: it asks each phase for its tasks and hands the unfinished
ones to an executor.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.component import Component, Resources
from pipeline.shards import KEPT, StageDir, seal, write_json


@dataclass(frozen=True)
class StageContext:
    """Where one component of a run reads and writes (plain paths: it travels to workers)."""

    run_dir: str
    stage_dir: str
    #: The previous stage's directory (None for the source).
    prev_dir: str | None
    kind: str
    index: int

    @property
    def dir(self) -> StageDir:
        return StageDir(self.stage_dir)

    @property
    def prev(self) -> StageDir | None:
        return StageDir(self.prev_dir) if self.prev_dir else None


@dataclass
class ShardContext:
    """What ``process`` may need besides the rows: which shard, and where the stage's phases wrote."""

    stage: StageContext
    shard: str
    #: Per-shard memo for a stage (e.g. the reduce's decisions, read once per shard).
    memo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One unit of work of one phase: a shard (``00012``) or a partition (``p003``)."""

    phase: str
    key: str
    #: Input files of the task (the previous stage's kept shard; nothing for a source or a reduce).
    inputs: tuple[str, ...] = ()
    #: A source shard's plan entry.
    spec: dict | None = None


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

    def on_dead(self, component: Component, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        """A task killed ``max_retries + 1`` workers. Default: stop the run (a global phase cannot guess)."""
        raise RuntimeError(f"stage {component.name!r}, phase {self.name!r}, task {task.key}: killed "
                           f"{component.max_retries + 1} workers ({why}); stopping (finished tasks are kept)")


class SourcePhase(Phase):
    """Read one planned input shard into records; unusable inputs become rejected rows with a reason."""

    name = "read"

    def tasks(self, component, ctx: StageContext) -> list[Task]:
        plan = json.loads((Path(ctx.run_dir) / "plan.json").read_text())
        return [Task(self.name, shard, spec=spec) for shard, spec in plan.items()]

    def is_done(self, ctx: StageContext, key: str) -> bool:
        return ctx.dir.is_done(key)

    def run(self, component, task: Task, ctx: StageContext) -> dict[str, Any]:
        from pipeline.execute import run_source_shard

        return run_source_shard(component, ctx, task.key, task.spec)

    def on_dead(self, component, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        from pipeline.execute import reject_whole_shard

        return reject_whole_shard(component, ctx, task.key, None, task.spec, why)


class ApplyPhase(Phase):
    """``process`` over one finished shard of the previous stage -> kept/rejected/stats/done."""

    name = "apply"

    def tasks(self, component, ctx: StageContext) -> list[Task]:
        prev = ctx.prev
        shards = prev.done_shards()
        if getattr(component, "where", None) and shards:
            check_where(component, pq.read_schema(prev.file(KEPT, shards[0])))
        return [Task(self.name, s, inputs=(str(prev.file(KEPT, s)),)) for s in shards]

    def is_done(self, ctx: StageContext, key: str) -> bool:
        return ctx.dir.is_done(key)

    def run(self, component, task: Task, ctx: StageContext) -> dict[str, Any]:
        from pipeline.execute import run_stage_shard

        return run_stage_shard(component, ctx, task.key, Path(task.inputs[0]))

    def on_dead(self, component, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        from pipeline.execute import reject_whole_shard

        return reject_whole_shard(component, ctx, task.key, Path(task.inputs[0]), None, why)


def check_where(component: Component, schema) -> None:
    """A stage's ``where:`` against the columns and types its rows will have: a config error before any row."""
    from pipeline.config import ConfigError
    from pipeline.where import WhereError, check

    try:
        check(component.where, schema)
    except WhereError as exc:
        raise ConfigError(f"stages.{component.name}.where: {exc}") from None


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


def input_fingerprint(ctx: StageContext) -> dict[str, Any]:
    """The previous stage's finished shards and their kept files' seals: what a global stage's scan saw."""
    prev = ctx.prev
    out = {}
    for shard in prev.done_shards():
        m = prev.marker(shard)
        out[shard] = {"kept": m["kept"], "file": m["files"][KEPT]}
    return out


def check_inputs(ctx: StageContext, component: Component) -> None:
    """A multi-phase stage records its inputs once; a rerun whose inputs changed is refused (like a config)."""
    from pipeline.config import ConfigError

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
