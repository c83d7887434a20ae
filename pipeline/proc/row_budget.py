"""A time budget per row for every stage: a row over it is ``row_timeout`` and the run goes on.

Every parser of untrusted text in this project is linear (tests/hostile/test_linear_time.py), but a stage is code,
and one pathological row must not hold a shard, a worker or a run. A batch of n rows gets ``n x row_timeout_s``
seconds; a batch over it is retried row by row, each row with ``row_timeout_s`` of its own, and a row that runs
out alone is rejected as ``row_timeout``. The verdicts of the other rows are unchanged (a verdict is a function of
the row and the config, not of its batch).

The clock is the process's interval timer (``SIGALRM``): its handler raises ``RowTimeout`` in the stage's code at
the next bytecode or inside the regular-expression engine, which checks for signals. Only the main thread of a
process receives signals, so the budget holds where a stage runs in its worker's main thread (every stage of the
inline executor and of Ray's one-task-at-a-time workers); stages that hold several shards at once in threads (the
LLM stages: every generation is bounded by ``max_tokens``) and code in child processes with their own time limits
(extraction, pylint) are bounded by their own means. ``RowTimeout`` derives from ``BaseException`` so that no
``except Exception`` in a stage can swallow it.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class RowTimeout(BaseException):
    """The rows being processed ran past their time budget."""


def usable() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


@contextlib.contextmanager
def budget(seconds: float | None):
    """Raise ``RowTimeout`` inside the block once ``seconds`` have passed (no budget: None, 0, or not usable
    here). Nested budgets are not supported: the inner one replaces the outer until it ends."""
    if not seconds or not usable():
        yield
        return

    def expired(signum, frame):
        raise RowTimeout(f"over its budget of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
