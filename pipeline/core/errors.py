"""Errors the framework and the stages share, in one leaf module (it imports nothing of the project): a person can
act on each, so the CLI prints them in one line."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, with the file and key in the message."""


class WorkerBroken(RuntimeError):
    """Raised by ``process`` when the worker's heavy state is broken (an engine that died), not the data: the
    executor replaces the worker and retries the task (``max_retries``), then rejects its rows as
    ``worker_died``. Never turned into a per-row rejection."""


class ResourceError(RuntimeError):
    """The cluster cannot hold a worker of a stage (more CPUs than any node, a GPU stage without GPUs)."""


class SetupError(RuntimeError):
    """A worker's ``setup()`` failed: a configuration or environment problem (a wrong path, a missing package),
    not bad data; the run stops, finished shards are kept."""


class MemberSetupError(RuntimeError):
    """The ``setup()`` of one stage of a chain (``pipeline.phases.chain``) failed: says which, so the user reads the
    stage's name, not the chain's."""

    def __init__(self, member: str, cause: str):
        super().__init__(f"setup of stage {member!r}: {cause}")
        self.member, self.cause = member, cause

    def __reduce__(self):  # (Ray pickles it to the driver)
        return type(self), (self.member, self.cause)


def failed_setup(component_name: str, cause_line: str) -> tuple[str, str]:
    """(stage name, cause) of a failed setup, from its one-line cause: the chain's member when it names one."""
    import re

    m = re.search(r"MemberSetupError: setup of stage '([^']+)': (.*)", cause_line)
    return (m.group(1), m.group(2)) if m else (component_name, cause_line)


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
