"""SwallowCode's optional rule: comments and string literals only in allowed scripts (ASCII + Japanese)."""

from __future__ import annotations

import io
import tokenize
from typing import ClassVar

import pyarrow as pa

from pipeline.stage import Stage, Verdict


SCRIPT_RANGES = {
    "ascii": [(0x00, 0x7F)],
    "japanese": [(0x3000, 0x303F), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF),
                 (0x3400, 0x4DBF)],
    "latin1": [(0x80, 0xFF)],
}


class ScriptFilter(Stage):
    """SwallowCode's optional rule: comments and string literals only in allowed scripts."""

    type: ClassVar[str] = "script_filter"
    allowed: list[str] = ["ascii", "japanese"]

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        ranges = [r for name in self.allowed for r in SCRIPT_RANGES[name]]

        def ok(s: str) -> bool:
            return all(any(lo <= ord(c) <= hi for lo, hi in ranges) for c in s)

        reasons, details = [], []
        for t in table.column("text").to_pylist():
            bad = None
            try:
                for tok in tokenize.generate_tokens(io.StringIO(t or "").readline):
                    if tok.type in (tokenize.COMMENT, tokenize.STRING) and not ok(tok.string):
                        bad = tok.string[:80]
                        break
            except (tokenize.TokenError, SyntaxError):
                pass
            reasons.append("disallowed_script" if bad else None)
            details.append(bad)
        return Verdict(reasons, details=details)
