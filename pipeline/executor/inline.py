"""Run tasks in this process, one after the other: no Ray, no retries (a worker death is this process's).

For the fast test tier and for debugging a stage with a plain debugger. The component is set up once per
``run`` call and torn down after it, as a Ray worker would be.
"""

from __future__ import annotations

from typing import Any

from pipeline.component import Component
from pipeline.errors import MemberSetupError, SetupError, as_storage_error
from pipeline.executor.base import OnDone
from pipeline.phase import Phase
from pipeline.task import StageContext, Task


class InlineExecutor:
    def run(self, component: Component, phase: Phase, tasks: list[Task], ctx: StageContext,
            on_done: OnDone) -> list[dict[str, Any]]:
        if not tasks:
            return []
        try:
            component.setup()
        except Exception as exc:
            name, cause = ((exc.member, exc.cause) if isinstance(exc, MemberSetupError)
                           else (component.name, f"{type(exc).__name__}: {exc}"))
            raise SetupError(f"stage {name!r}: setup() failed, stopping the run "
                             f"(finished shards are kept; rerun after fixing): {cause}") from exc
        results = []
        try:
            for task in tasks:
                try:
                    stats = phase.run(component, task, ctx)
                except OSError as exc:
                    storage = as_storage_error(exc, component.name, task.key, ctx.run_dir)
                    if storage is None:
                        raise
                    raise storage from exc
                results.append(stats)
                on_done(stats)
        finally:
            component.teardown()
        return results

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass
