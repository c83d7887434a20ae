"""C4's rules (Raffel et al. 2020; datatrove's C4QualityFilter, 0.10 defaults), line by line then per document.

A line is dropped when it has a word longer than ``max_word_length``, does not end in terminal punctuation
(``. ? ! " '``, not an ellipsis), has fewer than ``min_words_per_line`` words, mentions "javascript" or a
policy phrase (cookies, terms of use); a document is rejected when any kept line contains "lorem ipsum" or a
curly bracket, or when its kept lines hold fewer than ``min_num_sentences`` sentences. Kept documents keep only
their kept lines (as C4 does); the original is in ``text_before_<name>`` when ``keep_original``.

Math: C4's ``{`` rule rejects nearly every LaTeX page. With ``math_aware``, braces inside formulas do not count,
and a line that is only a display formula is kept without the punctuation and word-count rules (it adds no
sentence). ``filter_curly_bracket`` and ``filter_javascript`` switch those rules off entirely.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from pipeline.core.document_filter import NO_SPACE_LANGUAGES, DocumentFilter
from pipeline.core.verdict import Verdict
from stages.text.units import formula_fullmatch, mask_math, sentences

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY = ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"]


class C4Filter(DocumentFilter):
    """C4's line and document rules; kept documents keep only their kept lines."""

    type: ClassVar[str] = "c4_filter"
    measures: ClassVar = {k: pa.int64() for k in ("sentences", "lines_kept", "dropped_long_word",
                                                  "dropped_no_terminal_punct", "dropped_few_words",
                                                  "dropped_javascript", "dropped_policy")}
    prefix_columns: ClassVar = True
    requires: ClassVar[tuple[str, ...]] = ("spacy", "regex")
    extra: ClassVar[str] = "web"
    #: Remove Wikipedia-style citation marks ([1], [edit], [citation needed]) from lines.
    remove_citations: bool = True
    #: Drop lines that do not end in terminal punctuation (C4).
    filter_no_terminal_punct: bool = True
    #: Fewer sentences than this in the kept lines rejects the document (-1: off).
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    #: Not judged (kept, counted): languages without spaces between words or ``.`` sentence ends.
    skip_languages: list[str] = NO_SPACE_LANGUAGES
    #: Formulas' braces do not count; display-formula lines are kept as they are.
    math_aware: bool = False
    #: Keep the text as it was before the line filter in ``text_before_<name>``.
    keep_original: bool = False
    batch_size: int = Field(256, ge=1)

    def measure(self, text: str) -> dict:
        kept, n_sent = [], 0
        dropped = {"long_word": 0, "no_terminal_punct": 0, "few_words": 0, "javascript": 0, "policy": 0}
        reason = None
        for line in text.splitlines():
            line = line.strip()
            if self.math_aware and line and formula_fullmatch(line) and line.startswith(("$$", "\\[")):
                kept.append(line)
                continue
            ws = line.split()
            if self.max_word_length != -1 and any(len(w) > self.max_word_length for w in ws):
                dropped["long_word"] += 1
                continue
            if self.remove_citations:
                line = CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                dropped["no_terminal_punct"] += 1
                continue
            if len(ws) < self.min_words_per_line:
                dropped["few_words"] += 1
                continue
            low = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in low:
                reason = "c4_lorem_ipsum"
                break
            if self.filter_javascript and "javascript" in low:
                dropped["javascript"] += 1
                continue
            if self.filter_curly_bracket and "{" in (mask_math(line) if self.math_aware else line):
                reason = "c4_curly_bracket"
                break
            if self.filter_policy and any(p in low for p in POLICY):
                dropped["policy"] += 1
                continue
            if self.min_num_sentences != -1:
                n_sent += len(sentences(line))
            kept.append(line)
        if reason is None and n_sent < self.min_num_sentences:
            reason = "c4_too_few_sentences"
        return {"reason": reason, "text": "\n".join(kept).strip(), "sentences": n_sent, "lines_kept": len(kept),
                **{f"dropped_{k}": v for k, v in dropped.items()}}

    def decide(self, m: dict, text: str) -> str | None:
        return m["reason"]

    def new_text(self, text: str, m: dict) -> str:
        return m["text"]  # a kept document keeps its kept lines (as C4 does)

    def makes(self) -> set[str]:
        return super().makes() | ({f"text_before_{self.name}"} if self.keep_original else set())

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        verdict = super().process(table, ctx)
        if self.keep_original:
            verdict.columns[f"text_before_{self.name}"] = pa.array(table.column(self.column).to_pylist(), pa.string())
        return verdict
