"""ruff stages: a cheap pre-gate before pylint, and ``ruff format`` normalisation (SwallowCode-v2)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from pipeline.core.stage import Stage, Verdict
from stages.text.python_code import ruff_bin, ruff_format


class RuffGate(Stage):
    """Fast pre-gate before pylint: reject files with more ruff violations per line than allowed.

    ruff is one compiled process per batch, orders of magnitude cheaper than pylint; files it finds riddled
    with errors would score near zero in pylint anyway. The violation count is a column.
    """

    type: ClassVar[str] = "ruff_gate"
    #: ruff rules counted as violations.
    select: list[str] = ["E9", "F63", "F7", "F82", "F821", "F811", "E711", "E712", "F401", "F841"]
    #: Reject when violations / non-empty lines exceeds this.
    max_violations_per_line: float = 0.3
    #: Column holding the code.
    column: str = "text"

    def makes(self) -> set[str]:
        return {"ruff_violations"}

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        texts = table.column(self.column).to_pylist()
        with tempfile.TemporaryDirectory(prefix="swallow-ruff-") as tmp:
            names = []
            for i, t in enumerate(texts):
                name = os.path.join(tmp, f"f{i}.py")
                Path(name).write_text(t or "", encoding="utf-8")
                names.append(name)
            proc = subprocess.run([ruff_bin(), "check", "--no-cache", "--isolated", "--output-format=json",
                                   f"--select={','.join(self.select)}", "--exit-zero", tmp],
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"ruff failed: {proc.stderr[:500]}")
            counts: dict[str, int] = {}
            for v in json.loads(proc.stdout or "[]"):
                counts[v["filename"]] = counts.get(v["filename"], 0) + 1
        viol = [counts.get(n, 0) for n in names]
        reasons = []
        for t, v in zip(texts, viol):
            lines = max(1, sum(1 for line in (t or "").splitlines() if line.strip()))
            reasons.append("ruff_gate" if v / lines > self.max_violations_per_line else None)
        return Verdict(reasons, columns={"ruff_violations": pa.array(viol, pa.int64())})


class RuffFormat(Stage):
    """Normalise code with ``ruff format`` (SwallowCode-v2 formats before scoring); the original is kept."""

    type: ClassVar[str] = "ruff_format"
    #: Line length ruff formats to.
    line_length: int = 88
    #: Column formatted; the original is kept in ``<column>_unformatted``.
    column: str = "text"

    def makes(self) -> set[str]:
        return {self.column, f"{self.column}_unformatted"}

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        texts = table.column(self.column).to_pylist()
        out, reasons, details = [], [], []
        for t in texts:
            formatted, error = ruff_format(t or "", self.line_length)
            out.append(t if error else formatted), reasons.append("format_error" if error else None)
            details.append(error)
        return Verdict(reasons, columns={self.column: out, f"{self.column}_unformatted": texts}, details=details)
