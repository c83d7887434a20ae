"""SwallowCode's optional rule: comments and string literals only in allowed scripts (ASCII + Japanese)."""

from __future__ import annotations

import io
import tokenize
from typing import ClassVar

from pipeline.core.document_filter import DocumentFilter

SCRIPT_RANGES = {
    "ascii": [(0x00, 0x7F)],
    "japanese": [(0x3000, 0x303F), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF),
                 (0x3400, 0x4DBF)],
    "latin1": [(0x80, 0xFF)],
}


class ScriptFilter(DocumentFilter):
    """SwallowCode's optional rule: comments and string literals only in allowed scripts."""

    type: ClassVar[str] = "script_filter"
    #: Scripts comments and strings may use (Unicode script names; ASCII is always allowed).
    allowed: list[str] = ["ascii", "japanese"]

    def measure(self, text: str) -> dict:
        """The first comment or string literal with a character outside the allowed scripts (None: none)."""
        ranges = [r for name in self.allowed for r in SCRIPT_RANGES[name]]
        try:
            for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                if tok.type in (tokenize.COMMENT, tokenize.STRING) and \
                        not all(any(lo <= ord(c) <= hi for lo, hi in ranges) for c in tok.string):
                    return {"outside": tok.string[:80]}
        except (tokenize.TokenError, SyntaxError):
            pass
        return {"outside": None}

    def decide(self, m: dict, text: str):
        return ("disallowed_script", m["outside"]) if m["outside"] else None
