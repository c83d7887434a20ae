"""FineWeb's extra rules (Penedo et al. 2024; datatrove's FineWebQualityFilter, 0.10 defaults).

Share of lines ending in terminal punctuation, share of short lines, characters in duplicated lines, and newlines
per word (lists). With ``math_aware``, lines that are only a formula take no part in the punctuation and
short-line shares, and each formula counts as one word.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from pipeline.core.document_filter import NO_SPACE_LANGUAGES
from stages.filters.gopher import duplicates
from stages.filters.word_counting import WordCountingFilter
from stages.text.units import ends_with_terminal, formula_fullmatch, mask_math, words


class FineWebFilter(WordCountingFilter):
    """FineWeb quality rules: line punctuation, short lines, duplicated-line characters, list-like text."""

    type: ClassVar[str] = "fineweb_filter"
    measures: ClassVar = {k: pa.float64() for k in ("line_punct", "short_lines", "dup_chars", "newlines_per_word")}
    prefix_columns: ClassVar = True
    requires: ClassVar[tuple[str, ...]] = ("spacy", "regex")
    extra: ClassVar[str] = "web"
    #: Reject when fewer lines than this share end in punctuation (FineWeb: 0.12).
    line_punct_thr: float = 0.12
    #: Do not reject a document with no line ending in punctuation at all (FineWeb: off).
    line_punct_exclude_zero: bool = False
    #: Reject when more lines than this share are short (FineWeb: 0.67).
    short_line_thr: float = 0.67
    #: A line shorter than this many characters is short (FineWeb: 30).
    short_line_length: int = 30
    #: Largest share of characters in duplicated lines (FineWeb: 0.01).
    char_duplicates_ratio: float = 0.01
    #: Reject list-like documents: more line breaks per word than this (FineWeb: 0.3).
    new_line_ratio: float = 0.3
    #: Not judged (kept, counted): languages without spaces between words or ``.`` sentence ends.
    skip_languages: list[str] = NO_SPACE_LANGUAGES
    math_aware: bool = False
    batch_size: int = Field(256, ge=1)

    def measure(self, text: str) -> dict:
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if self.math_aware:
            prose = [line for line in lines if not formula_fullmatch(line.strip())] or lines
        else:
            prose = lines
        m = {"line_punct": 0.0, "short_lines": 0.0, "dup_chars": 0.0, "newlines_per_word": 0.0, "empty": not lines}
        if not lines:
            return m
        m["line_punct"] = sum(1 for line in prose if ends_with_terminal(line)) / len(prose)
        m["short_lines"] = sum(1 for line in prose if len(line) <= self.short_line_length) / len(prose)
        m["dup_chars"] = duplicates(lines)[1] / max(len(text.replace("\n", "")), 1)
        ws = words(mask_math(text) if self.math_aware else text)
        m["newlines_per_word"] = text.count("\n") / max(len(ws), 1)
        return m

    def decide(self, m: dict, text: str) -> str | None:
        if m["empty"]:
            return "fineweb_empty"
        if m["line_punct"] < self.line_punct_thr and not (m["line_punct"] == 0 and self.line_punct_exclude_zero):
            return "fineweb_line_punct_ratio"
        if m["short_lines"] > self.short_line_thr:
            return "fineweb_short_line_ratio"
        if m["dup_chars"] > self.char_duplicates_ratio:
            return "fineweb_char_dup_ratio"
        if m["newlines_per_word"] > self.new_line_ratio:
            return "fineweb_list_ratio"
        return None
