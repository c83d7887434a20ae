"""SwallowCode's syntax filter: keep exactly the Python files CPython's ``compile(source, path, "exec")`` accepts.

The interpreter running the stage decides (its version is recorded in every shard's stats). Nothing is executed:
``compile`` only builds a code object.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, ClassVar

import pyarrow as pa

from pipeline.stage import Stage, Verdict


def syntax_check(source: str, path: str = "<code>") -> tuple[str | None, str | None]:
    """(reason, detail) of ``compile(source, path, "exec")``; (None, None) when it compiles. Never executes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning/DeprecationWarning are not rejections
            compile(source, path, "exec", dont_inherit=True)
        return None, None
    except SyntaxError as exc:  # includes IndentationError, TabError
        return f"syntax_error:{type(exc).__name__}", f"{exc.msg} (line {exc.lineno})"
    except ValueError as exc:  # e.g. source code string cannot contain null bytes
        return "syntax_error:ValueError", str(exc)
    except RecursionError as exc:
        return "syntax_error:RecursionError", str(exc)[:500]
    except MemoryError as exc:
        return "syntax_error:MemoryError", str(exc)[:500] or "parser ran out of memory (deeply nested input)"
    except OverflowError as exc:
        return "syntax_error:OverflowError", str(exc)[:500]


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
