"""What sources, stages and outputs share: typed configuration, declared resources, a lifecycle, a registry.

A component is a small pydantic model: its fields are its configuration (validated, with errors that name the
key) and its resources (``num_cpus``/``num_gpus``/``concurrency``, per worker). ``setup()`` builds heavy state
once per worker (a model, a linter, an engine), ``teardown()`` releases it; the executor calls both, never the
component itself. Subclasses that set ``type`` are registered under their role (``source``, ``stage``,
``output``) when their module is imported; which modules to import is found through entry points
(``pipeline.plugins``), so the framework never names a concrete component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

#: role -> type name -> class; filled by ``Component.__init_subclass__``.
REGISTRY: dict[str, dict[str, type["Component"]]] = {"source": {}, "stage": {}, "output": {}}


@dataclass(frozen=True)
class Resources:
    """What one worker of a phase holds. ``concurrency``: number of workers (default: as many as fit)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    concurrency: int | None = None


class NotSetUp(RuntimeError):
    """A component's heavy state was used before the executor called ``setup()``: a framework bug."""


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    type: ClassVar[str] = ""
    role: ClassVar[str] = "stage"
    #: Name in the run directory and in ``--set stages.NAME.key=value``; defaults to ``type``.
    name: str = ""
    #: CPUs and GPUs one worker (Ray actor) holds.
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    #: Number of workers; default: as many as the cluster's CPUs (or GPUs) allow.
    concurrency: int | None = None
    #: Times a task is retried after its worker died before its rows are rejected as ``worker_died``.
    max_retries: int = 2

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("type"):
            REGISTRY.setdefault(cls.role, {})[cls.type] = cls

    def model_post_init(self, _ctx) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.type)

    def resources(self) -> Resources:
        return Resources(self.num_cpus, self.num_gpus, self.concurrency)

    def prestart(self, local: bool):
        """In the driver, before Ray starts: begin slow preparations that workers on this node can share (e.g. a
        warm lint server). ``local``: every worker will run on this machine. Returns something with ``close()``
        that the runner calls at the end of the run, or None. Default: nothing."""
        return None

    def setup(self) -> None:
        """Build heavy state (models, linters, engines) once per worker."""

    def teardown(self) -> None:
        """Release what ``setup`` built (engines, subprocesses)."""

    def shard_info(self) -> dict[str, Any]:
        """Facts worth recording in every shard's stats (e.g. the interpreter version)."""
        return {}

    def config_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain data (what a run records and compares on resume)."""
        return {"type": self.type, **self.model_dump(mode="json")}
