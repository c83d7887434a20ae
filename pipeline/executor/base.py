"""The executor interface: run tasks of one phase of one component, report each task's stats."""

from __future__ import annotations

from typing import Any, Callable, Protocol

from pipeline.component import Component
from pipeline.phases import Phase, StageContext, Task

class ResourceError(RuntimeError):
    """The cluster cannot hold a worker of a stage (more CPUs than any node, a GPU stage without GPUs)."""


class SetupError(RuntimeError):
    """A worker's ``setup()`` failed: a configuration or environment problem (a wrong path, a missing package),
    not bad data; the run stops, finished shards are kept."""


class StorageError(RuntimeError):
    """The run folder cannot be written (disk full, read-only, no permission): not the data's fault and not worth
    retrying elsewhere; the run stops, what was finished is kept, the half-written files are temporary ones that
    the rerun removes."""


#: errno values that say "the storage refused the write", not "this task is wrong"
STORAGE_ERRNOS = {28: "no space left on the device", 122: "disk quota exceeded", 30: "read-only file system",
                  13: "permission denied", 1: "operation not permitted"}
STORAGE_TEXTS = {"No space left on device": 28, "Disk quota exceeded": 122, "Read-only file system": 30,
                 "Permission denied": 13}


def as_storage_error(exc: BaseException, component_name: str, task_key: str, out_dir) -> StorageError | None:
    """``exc`` as a one-line StorageError when it is a refused write under ``out_dir`` (the run folder; pyarrow's
    OSErrors carry the errno only in their text), else None."""
    if not isinstance(exc, OSError):
        return None
    code = exc.errno if exc.errno in STORAGE_ERRNOS else next(
        (c for text, c in STORAGE_TEXTS.items() if text in str(exc)), None)
    if code is None:
        return None
    where = str(exc.filename or out_dir)
    if code in (1, 13) and not where.startswith(str(out_dir)):
        return None  # an input the task could not read: that is the task's own business (a rejected row)
    return StorageError(f"stage {component_name!r}, task {task_key}: cannot write {where}: {STORAGE_ERRNOS[code]}; "
                        f"free space or fix the folder's permissions, then rerun (finished shards are kept)")


#: Called with each finished task's stats (progress bars).
OnDone = Callable[[dict[str, Any]], None]


class Executor(Protocol):
    def run(self, component: Component, phase: Phase, tasks: list[Task], ctx: StageContext,
            on_done: OnDone) -> list[dict[str, Any]]:
        """Run ``tasks`` (all unfinished); return their stats. Each worker calls ``component.setup()`` once
        before its first task and ``teardown()`` at the end. A task that kills its worker is retried up to
        ``component.max_retries`` times, then ``phase.on_dead`` decides. A failing ``setup()`` stops the run."""
        ...

    def close(self) -> None:
        ...

    def abort(self) -> None:
        """After an interrupt (Ctrl-C): stop every worker now, without graceful teardown."""
        ...


def make_executor(name: str, ray_config=None) -> Executor:
    if name == "inline":
        from pipeline.executor.inline import InlineExecutor

        return InlineExecutor()
    if name == "ray":
        from pipeline.executor.ray import RayExecutor

        return RayExecutor(ray_config)
    raise ValueError(f"unknown executor {name!r} (ray, inline)")
