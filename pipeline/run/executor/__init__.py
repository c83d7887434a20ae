"""Executors run a phase's tasks on workers that hold a set-up component: ``ray`` (the default, local or a
cluster) and ``inline`` (in this process, serially: the fast test tier and debugging)."""

from pipeline.run.executor.base import Executor
from pipeline.run.executor.inline import InlineExecutor
from pipeline.run.executor.ray import RayExecutor

__all__ = ["Executor", "make_executor"]


def make_executor(name: str, ray_config=None) -> Executor:
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        return RayExecutor(ray_config)
    raise ValueError(f"unknown executor {name!r} (ray, inline)")
