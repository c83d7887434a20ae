"""The output protocol: what a run writes once, at the end, from its last stage's kept rows.

An output is a component with role ``output`` chosen by the config's ``export:`` key (``type``, default
``dataset``); the runner calls ``write`` after every stage finished, and ``swallow export RUN`` calls it again on a
finished run. The framework names no output type: they are found like stages (``pipeline.run.plugins``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pipeline.core.component import Component


class Output(Component):
    role: ClassVar[str] = "output"
    name: str = "export"
    #: Write it at the end of ``swallow run`` (``swallow export RUN`` writes it on demand).
    enabled: bool = True

    def write(self, run_dir: Path, cfg) -> Path:
        raise NotImplementedError(f"output type {self.type!r} does not implement write()")
