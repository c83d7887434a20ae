"""SwallowCode's syntax filter: keep exactly the Python files CPython's ``compile(source, path, "exec")`` accepts.

The interpreter running the stage decides (its version is recorded in every shard's stats). Nothing is executed:
``compile`` only builds a code object.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import pyarrow as pa

from pipeline.core.stage import Stage, Verdict
from stages.text.python_code import syntax_check


class SyntaxFilter(Stage):
    """Keep the Python files that ``compile()`` accepts; other languages pass through untouched."""

    type: ClassVar[str] = "syntax_filter"
    #: Column holding the code (``text``; the rewrite stage checks its own output column).
    column: str = "text"

    def makes(self) -> set[str]:
        return set()

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        texts = table.column(self.column).to_pylist()
        langs = table.column("language").to_pylist() if "language" in table.column_names else ["python"] * len(texts)
        reasons, details = [], []
        for text, lang in zip(texts, langs):
            if lang != "python":
                reasons.append(None)
                details.append(None)
                continue
            if text is None:
                reasons.append("missing_text")
                details.append(None)
                continue
            r, d = syntax_check(text)
            reasons.append(r)
            details.append(d)
        return Verdict(reasons, details=details)

    def shard_info(self) -> dict[str, Any]:
        return {"python": sys.version.split()[0]}
