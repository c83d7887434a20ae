"""Executors run a phase's tasks on workers that hold a set-up component: ``ray`` (the default, local or a
cluster) and ``inline`` (in this process, serially: the fast test tier and debugging)."""

from pipeline.executor.base import Executor, make_executor

__all__ = ["Executor", "make_executor"]
