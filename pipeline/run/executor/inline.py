"""Run tasks in this process, one after the other: no Ray, no retries (a worker death is this process's).

For the fast test tier and for debugging a stage with a plain debugger. The component is set up once and kept
through its phases until ``release()``, as a Ray worker is.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.component import Component
from pipeline.core.errors import MemberSetupError, SetupError, as_storage_error
from pipeline.core.task import StageContext, Task
from pipeline.phases.phase import Phase
from pipeline.run.executor.base import OnDone


class InlineExecutor:
    def __init__(self) -> None:
        self._held: Component | None = None  # set up, kept for the component's next phase

    def run(self, component: Component, phase: Phase, tasks: list[Task], ctx: StageContext,
            on_done: OnDone) -> list[dict[str, Any]]:
        if not tasks:
            return []
        if self._held is not component:
            self.release()
            try:
                component.setup()
            except Exception as exc:
                name, cause = ((exc.member, exc.cause) if isinstance(exc, MemberSetupError)
                               else (component.name, f"{type(exc).__name__}: {exc}"))
                raise SetupError(f"stage {name!r}: setup() failed, stopping the run "
                                 f"(finished shards are kept; rerun after fixing): {cause}") from exc
            self._held = component
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
        except BaseException:  # as a failed worker's state is not reused
            self.release()
            raise
        return results

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.teardown()

    def close(self) -> None:
        self.release()

    def abort(self) -> None:
        self.release()
