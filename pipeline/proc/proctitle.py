"""Name this worker process after what it does, so a person, ``ps``, py-spy or the fault-injection tests can tell
a lint worker from a tokenize worker: ``ray::swallow lint_filter apply 00003``."""

from __future__ import annotations


def set_title(what: str) -> None:
    """Through Ray's own setter (``ray._raylet.setproctitle``): the ``setproctitle`` package's changes do not show
    in a Ray worker, and Ray sets its own title back when the task ends. Outside Ray: nothing."""
    try:
        import ray._raylet

        ray._raylet.setproctitle(f"ray::swallow {what}")
    except Exception:  # noqa: BLE001 - a name is a convenience, never a reason to fail
        pass
