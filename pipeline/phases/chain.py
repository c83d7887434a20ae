"""Consecutive row-wise stages run as one chain: one worker per shard reads the shard once and hands each stage's
kept rows to the next in memory, while every stage still writes its own kept/rejected/stats files and marker.

Why (issue 25): run apart, each stage of the web path starts its own pool of workers (a Python process importing
pyarrow, pydantic, the stage and its libraries: spaCy alone takes 1.8 s), and reads back from Parquet what the
stage before it just wrote. On the web sample (3 files, 531 pages, six stages) that was ~3 s of CPU per stage
for work of 1-2 s.

What may chain: the source (its read phase) and the stages after it whose only phase is the plain apply phase (no
global phase, which must see every shard), with the same resources, one task at a time, and no GPU. The ledger is
unchanged: a chain's task for shard S runs the stages in order, each writing its files and marker as it would
alone, so ``swallow verify``, ``status`` and the report read the same folders. A rerun resumes a shard at its first
stage without a marker; a worker that dies
is counted against that stage and shard (``attempt_key``), as it would be unchained, and a shard that keeps
killing workers is rejected (``worker_died``) at that stage; the stages after it then finish the shard on their
own, unchained (``leftover``). The worker's process title names the stage it is in (``ray::swallow lint_filter
apply 00003``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.core.component import Component, Resources
from pipeline.core.errors import MemberSetupError, WorkerBroken
from pipeline.core.task import StageContext, Task
from pipeline.phases.apply import (
    ApplyPhase,
    SourcePhase,
    apply_shard,
    read_shard,
    read_source_shard,
    reject_whole_shard,
    stale_shards,
)
from pipeline.phases.defaults import phases_of
from pipeline.phases.phase import Phase
from pipeline.proc.proctitle import set_title
from pipeline.store.shards import KEPT


def chainable(component: Component) -> bool:
    """A source or stage that may run inside a chain: one plain read or apply phase, one task per worker, no
    GPU."""
    if not getattr(component, "chainable", True):
        return False
    phases = phases_of(component)
    res = component.resources()
    plain = SourcePhase if component.role == "source" else ApplyPhase
    return (len(phases) == 1 and type(phases[0]) is plain and res.num_gpus == 0
            and res.tasks_per_worker == 1)


def chains(pairs: list[tuple[Component, StageContext]]) -> list[list[tuple[Component, StageContext]]]:
    """The (component, context) pairs in order, grouped: consecutive chainable stages with equal resources form
    one group; everything else is a group of one."""
    groups: list[list[tuple[Component, StageContext]]] = []
    for comp, ctx in pairs:
        last = groups[-1] if groups else None
        if (last and comp.role == "stage" and chainable(comp) and chainable(last[-1][0])
                and comp.resources() == last[-1][0].resources()):
            last.append((comp, ctx))
        else:
            groups.append([(comp, ctx)])
    return groups


class Chain:
    """The component a chain's workers hold: every member set up once per worker (what the executor needs of a
    component: a name, resources, retries, setup and teardown)."""

    role = "chain"

    def __init__(self, members: list[Component]):
        self.members = members
        self.name = "+".join(m.name for m in members)
        # a death in setup() cannot be told to a member: the chain's workers start while any member allows it (a
        # task's deaths are counted and bounded per member: ChainPhase.max_retries)
        self.max_retries = max(m.max_retries for m in members)

    def resources(self) -> Resources:
        return self.members[0].resources()

    def setup(self) -> None:
        for m in self.members:
            try:
                m.setup()
            except WorkerBroken:  # a killed helper: the worker is replaced (bounded), as for a stage alone
                raise
            except Exception as exc:  # noqa: BLE001 - named after the stage, not the chain
                raise MemberSetupError(m.name, f"{type(exc).__name__}: {exc}") from exc

    def teardown(self) -> None:
        for m in self.members:
            try:
                m.teardown()
            except Exception:  # noqa: BLE001 - one member's teardown must not keep the others' from running
                pass


class ChainPhase(Phase):
    """One task per planned shard (a chain that starts with the source) or per finished shard of the stage before
    the chain: the members in order, from the first member that has no marker for the shard."""

    name = "apply"

    def __init__(self, contexts: list[StageContext]):
        self.contexts = contexts

    def tasks(self, chain: Chain, ctx: StageContext) -> list[Task]:
        return phases_of(chain.members[0])[0].tasks(chain.members[0], self.contexts[0])

    def first_undone(self, key: str) -> int | None:
        return next((i for i, c in enumerate(self.contexts) if not c.dir.is_done(key)), None)

    def is_done(self, ctx: StageContext, key: str) -> bool:
        return self.first_undone(key) is None

    def attempt_key(self, task: Task, ctx: StageContext) -> str:
        i = self.first_undone(task.key)
        return f"{self.contexts[i].dir.path.name if i is not None else 'done'}/{task.key}"

    def max_retries(self, chain: Chain, task: Task, ctx: StageContext) -> int:
        """The retries of the member the task is in. Regression (a fault campaign): the chain took the smallest of
        its members', the source's default 2, so three kills in a stage configured for 40 rejected its shard."""
        i = self.first_undone(task.key)
        return chain.members[i if i is not None else -1].max_retries

    def event_context(self, task: Task, ctx: StageContext) -> StageContext:
        i = self.first_undone(task.key)
        return self.contexts[i if i is not None else -1]

    def run(self, chain: Chain, task: Task, ctx: StageContext) -> dict[str, Any]:
        t0 = time.time()
        start = self.first_undone(task.key)
        per_stage = []
        table = None  # the rows the next member takes: the previous member's kept rows, when it ran here
        ran = False  # whether the member before ran in this task (then a later one done before may be stale)
        for member, mctx in list(zip(chain.members, self.contexts))[start or 0:] if start is not None else []:
            if mctx.dir.is_done(task.key) and not (ran and task.key in stale_shards(mctx, [task.key])):
                table = None  # finished by an earlier attempt, from the same input: never written twice
                ran = False
                continue
            ran = True
            if member.role == "source":  # (only ever first)
                set_title(f"{member.name} read {task.key}")
                stats, table = read_source_shard(member, mctx, task.key, task.spec)
            else:
                if table is None:
                    table = read_shard(mctx.prev.file(KEPT, task.key), mctx.kind)
                set_title(f"{member.name} apply {task.key}")
                stats, table = apply_shard(member, mctx, task.key, table)
            per_stage.append(stats)
        n_in = per_stage[0]["in"] if per_stage else 0
        kept = per_stage[-1]["kept"] if per_stage else 0
        return {"in": n_in, "kept": kept, "stages": per_stage, "wall_s": round(time.time() - t0, 3)}

    def on_dead(self, chain: Chain, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        """The stage the workers died in rejects the shard (``worker_died``); the stages after it finish the
        shard unchained (the runner's leftover pass)."""
        i = self.first_undone(task.key)
        if i is None:
            return {"in": 0, "kept": 0, "stages": []}
        mctx = self.contexts[i]
        source = chain.members[i].role == "source"
        stats = reject_whole_shard(chain.members[i], mctx, task.key,
                                   None if source else Path(mctx.prev.file(KEPT, task.key)),
                                   task.spec if source else None, why)
        return {"in": stats["in"], "kept": 0, "stages": [stats]}
