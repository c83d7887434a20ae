"""The executor interface: run tasks of one phase of one component, report each task's stats."""

from __future__ import annotations

from typing import Any, Callable, Protocol

from pipeline.core.component import Component
from pipeline.core.errors import (  # noqa: F401
    STORAGE_ERRNOS,
    STORAGE_TEXTS,
    ResourceError,
    SetupError,
    StorageError,
    as_storage_error,
)
from pipeline.core.task import StageContext, Task
from pipeline.phases.phase import Phase

#: Called with each finished task's stats (progress bars).
OnDone = Callable[[dict[str, Any]], None]


class Executor(Protocol):
    def run(self, component: Component, phase: Phase, tasks: list[Task], ctx: StageContext,
            on_done: OnDone) -> list[dict[str, Any]]:
        """Run ``tasks`` (all unfinished); return their stats. Each worker calls ``component.setup()`` once
        before its first task; workers are kept, set up, for the same component's next phase until
        ``release()``, which calls their ``teardown()``. A task that kills its worker is retried up to
        ``component.max_retries`` times, then ``phase.on_dead`` decides. A failing ``setup()`` stops the run."""
        ...

    def release(self) -> None:
        """The component's phases are done: tear down the workers kept for it."""
        ...

    def close(self) -> None:
        """The run is done: ``release()``, then stop what the executor started."""
        ...

    def abort(self) -> None:
        """After an interrupt (Ctrl-C): stop every worker now, without graceful teardown."""
        ...
