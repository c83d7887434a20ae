"""Length limits on a text column: characters and words (whitespace-separated), each bound optional."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from pipeline.core.document_filter import DocumentFilter


class LengthFilter(DocumentFilter):
    """Reject texts outside [min, max] characters or words: ``too_short`` / ``too_long`` (detail says which)."""

    type: ClassVar[str] = "length_filter"
    thresholds: ClassVar[dict[str, tuple[str, ...]]] = {"n_chars": ("min_chars", "max_chars"), "n_words": ("min_words", "max_words")}  # noqa: E501
    measures: ClassVar = {"n_chars": pa.int64(), "n_words": pa.int64()}
    #: Fewest characters a row may have (too_short below); None: no bound.
    min_chars: int | None = None
    #: Most characters a row may have (too_long above); None: no bound.
    max_chars: int | None = None
    #: Fewest whitespace-separated words (too_short below); None: no bound.
    min_words: int | None = None
    #: Most whitespace-separated words (too_long above); None: no bound.
    max_words: int | None = None

    def measure(self, text: str) -> dict:
        return {"n_chars": len(text), "n_words": len(text.split())}

    def decide(self, m: dict, text: str):
        c, w = m["n_chars"], m["n_words"]
        if self.min_chars is not None and c < self.min_chars:
            return "too_short", f"{c} characters < {self.min_chars}"
        if self.min_words is not None and w < self.min_words:
            return "too_short", f"{w} words < {self.min_words}"
        if self.max_chars is not None and c > self.max_chars:
            return "too_long", f"{c} characters > {self.max_chars}"
        if self.max_words is not None and w > self.max_words:
            return "too_long", f"{w} words > {self.max_words}"
        return None
