"""Length limits on a text column: characters and words (whitespace-separated), each bound optional."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from pipeline.stage import Stage, Verdict


class LengthFilter(Stage):
    """Reject texts outside [min, max] characters or words: ``too_short`` / ``too_long`` (detail says which)."""

    type: ClassVar[str] = "length_filter"
    column: str = "text"
    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        texts = [t or "" for t in table.column(self.column).to_pylist()]
        chars = [len(t) for t in texts]
        n_words = [len(t.split()) for t in texts]
        reasons, details = [], []
        for c, w in zip(chars, n_words):
            r = d = None
            if self.min_chars is not None and c < self.min_chars:
                r, d = "too_short", f"{c} characters < {self.min_chars}"
            elif self.min_words is not None and w < self.min_words:
                r, d = "too_short", f"{w} words < {self.min_words}"
            elif self.max_chars is not None and c > self.max_chars:
                r, d = "too_long", f"{c} characters > {self.max_chars}"
            elif self.max_words is not None and w > self.max_words:
                r, d = "too_long", f"{w} words > {self.max_words}"
            reasons.append(r)
            details.append(d)
        return Verdict(reasons, columns={"n_chars": pa.array(chars, pa.int64()),
                                         "n_words": pa.array(n_words, pa.int64())}, details=details)
