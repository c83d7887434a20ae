"""What sources, stages and outputs share: typed configuration, declared resources, a lifecycle, a registry.

A component is a small pydantic model: its fields are its configuration (validated, with errors that name the
key) and its resources (``num_cpus``/``num_gpus``/``concurrency``, per worker). ``setup()`` builds heavy state
once per worker (a model, a linter, an engine), ``teardown()`` releases it; the executor calls both, never the
component itself. Subclasses that set ``type`` are registered under their role (``source``, ``stage``,
``output``) when their module is imported; which modules to import is found through entry points
(``pipeline.run.plugins``), so the framework never names a concrete component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: role -> type name -> class; filled by ``Component.__init_subclass__``.
REGISTRY: dict[str, dict[str, type["Component"]]] = {"source": {}, "stage": {}, "output": {}}


@dataclass(frozen=True)
class Resources:
    """What one worker of a phase holds. ``concurrency``: number of workers (default: as many as fit).
    ``tasks_per_worker``: tasks one worker holds at once (threads in one actor): a stage that feeds a shared
    engine (the rewrite) takes the next shard while the current one drains; 1 for everything else."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    concurrency: int | None = None
    tasks_per_worker: int = 1


class NotSetUp(RuntimeError):
    """A component's heavy state was used before the executor called ``setup()``: a framework bug."""


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    type: ClassVar[str] = ""
    role: ClassVar[str] = "stage"
    #: Python packages (import names) the component needs, and the extra of this project that installs them.
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""
    #: Numeric columns this component makes that are no measurement (offsets, ids, codes): the report draws no
    #: histogram of them.
    not_measured: ClassVar[frozenset[str]] = frozenset({"source_offset"})
    #: Which settings bound which measured column (``{"lint_score": ("min_score",)}``): the report draws them on the
    #: column's histogram and beside a rejected row's value.
    thresholds: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: Rough CPU seconds per MB of the run's raw input this component costs (the executor choice for a local run:
    #: ``pipeline/run/executor/choose.py``); cheap rule filters are well under a second, pylint ~15, an LLM far more.
    work_s_per_mb: ClassVar[float] = 0.5
    #: Name in the run directory and in ``--set stages.NAME.key=value``; defaults to ``type``.
    name: str = ""
    #: CPUs and GPUs one worker (Ray actor) holds.
    num_cpus: float = Field(1.0, gt=0, le=4096)
    num_gpus: float = Field(0.0, ge=0, le=1024)
    #: Number of workers; default: as many as the cluster's CPUs (or GPUs) allow.
    concurrency: int | None = Field(None, ge=1, le=100_000)
    #: Times a task is retried after its worker died before its rows are rejected as ``worker_died``.
    max_retries: int = Field(2, ge=0, le=100)

    @model_validator(mode="after")
    def _numbers_in_range(self):
        """Every number of a configuration is finite and at most 2^53 in size (past that, a float cannot hold it
        and a size is no size: ``max_bytes: 10**18``), and a field named as a share (``*_ratio``, ``*_frac``,
        ``*_fraction``) lies in [0, 1]; fields with ranges of their own (``Field(ge=..., le=...)``) are checked by
        them too. The message names the key."""
        for name, info in type(self).model_fields.items():
            v = getattr(self, name, None)
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{name}: {v} is not a finite number")
            if abs(v) > 2 ** 53:
                raise ValueError(f"{name}: {v} is out of range (at most 2^53 in size)")
            if name.endswith(("_ratio", "_frac", "_fraction")) and not 0 <= v <= 1:
                raise ValueError(f"{name}: {v} is a share and must lie in [0, 1]")
        return self

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        """A name is a folder of the run directory and a key of ``--set``: lower-case letters, digits, ``_``, ``-``."""
        import re

        if v and not re.fullmatch(r"[a-z0-9_-]{1,64}", v):
            raise ValueError(f"{v!r} is not a stage name: use 1-64 of a-z, 0-9, '_' and '-'")
        return v

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("type"):
            REGISTRY.setdefault(cls.role, {})[cls.type] = cls

    def model_post_init(self, _ctx) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.type)

    def resources(self) -> Resources:
        return Resources(self.num_cpus, self.num_gpus, self.concurrency, self.tasks_per_worker())

    def tasks_per_worker(self) -> int:
        """See ``Resources.tasks_per_worker``; a component whose ``process`` is thread-safe may return more."""
        return 1

    def preflight(self) -> list[str]:
        """Problems to report before any work starts (one line each, naming the key and what to do): missing
        packages here; subclasses add files that must exist (models, tokenizers)."""
        import importlib.util

        problems = []
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                hint = f"pip install -e '.[{self.extra}]'" if self.extra else f"pip install {module}"
                problems.append(f"stage {self.name!r} ({self.type}) needs the Python package {module!r}: {hint}")
        return problems

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


def looks_local(path: str) -> bool:
    """Whether a model/tokenizer reference names a local path (else it may be a Hub name like ``org/model``)."""
    import os

    if path.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(path)):
        return True
    head = path.split("/", 1)[0]
    return os.path.isdir(head) or path.endswith((".json", ".gz", ".bin", ".ftz", ".model", ".safetensors"))


def missing_path(stage: str, key: str, path: str | None, what: str) -> list[str]:
    """One problem line when ``path`` is meant to be local and does not exist."""
    import os

    if path and looks_local(path) and not os.path.exists(os.path.expanduser(path)):
        return [f"stage {stage!r}: {key} {path!r}: no such {what} (give an existing local path, or a Hub name)"]
    return []
