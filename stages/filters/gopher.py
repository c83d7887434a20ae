"""Gopher's rules for web text (Rae et al. 2021, appendix A): quality heuristics and repetition.

Both stages measure everything first (columns, on kept and rejected rows) and then apply the rules in the order
datatrove applies them, so the first failing rule is the reason. Defaults are datatrove's (0.10). With
``math_aware``, word-level statistics are taken on the text with each formula replaced by one word (see
``stages.text.units``): Gopher's "80 % of words contain a letter" rejects most LaTeX pages otherwise.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.core.document_filter import NO_SPACE_LANGUAGES
from stages.filters.word_counting import WordCountingFilter
from stages.text.units import is_symbol_word, mask_math, words

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]


class GopherFilter(WordCountingFilter):
    """What both Gopher filters share: word tokenisation (spaCy, regex) and columns named after the stage."""

    prefix_columns: ClassVar = True
    requires: ClassVar[tuple[str, ...]] = ("spacy", "regex")
    extra: ClassVar[str] = "web"
    #: Not judged (kept, counted): languages without spaces between words, where words cannot be counted so.
    skip_languages: list[str] = NO_SPACE_LANGUAGES


class GopherQuality(GopherFilter):
    """Gopher quality rules: document length, mean word length, symbol ratios, bullets/ellipses, letters, stop
    words."""

    type: ClassVar[str] = "gopher_quality"
    measures: ClassVar = {"words": pa.int64(), "avg_word_length": pa.float64(), "hash_ratio": pa.float64(),
                          "ellipsis_ratio": pa.float64(), "bullet_lines": pa.float64(),
                          "ellipsis_lines": pa.float64(), "alpha_words": pa.float64(), "stop_words": pa.int64()}
    #: Fewest words a document may have (Gopher: 50); None: no bound.
    min_doc_words: int | None = 50
    #: Most words a document may have (Gopher: 100,000); None: no bound.
    max_doc_words: int | None = 100_000
    #: Shortest mean word length in characters (Gopher: 3); None: no bound.
    min_avg_word_length: float | None = 3
    #: Longest mean word length in characters (Gopher: 10); None: no bound.
    max_avg_word_length: float | None = 10
    #: Max ratio of '#' (and, separately, of ellipses) to words.
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    #: Minimum share of words that contain a letter (datatrove calls it max_non_alpha_words_ratio).
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: list[str] = STOP_WORDS
    #: Take word statistics on the text with each formula counted as one word.
    math_aware: bool = False
    batch_size: int = Field(256, ge=1)

    def measure(self, text: str) -> dict:
        counted = mask_math(text) if self.math_aware else text
        ws = words(counted)
        n = len(ws)
        content = [w for w in ws if not is_symbol_word(w)]
        lines = text.splitlines() or [""]
        return {
            "words": len(content),
            "avg_word_length": float(np.mean([len(w) for w in content])) if content else 0.0,
            "hash_ratio": text.count("#") / n if n else 0.0,
            "ellipsis_ratio": (text.count("...") + text.count("…")) / n if n else 0.0,
            "bullet_lines": sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines),
            "ellipsis_lines": sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines),
            "alpha_words": sum(any(c.isalpha() for c in w) for w in ws) / n if n else 0.0,
            "stop_words": len(set(self.stop_words) & set(ws)),
        }

    def decide(self, m: dict, text: str) -> str | None:
        if self.min_doc_words and m["words"] < self.min_doc_words:
            return "gopher_short_doc"
        if self.max_doc_words and m["words"] > self.max_doc_words:
            return "gopher_long_doc"
        if self.min_avg_word_length and m["avg_word_length"] < self.min_avg_word_length:
            return "gopher_below_avg_word_length"
        if self.max_avg_word_length and m["avg_word_length"] > self.max_avg_word_length:
            return "gopher_above_avg_word_length"
        if self.max_symbol_word_ratio and m["hash_ratio"] > self.max_symbol_word_ratio:
            return "gopher_too_many_hashes"
        if self.max_symbol_word_ratio and m["ellipsis_ratio"] > self.max_symbol_word_ratio:
            return "gopher_too_many_ellipsis"
        if self.max_bullet_lines_ratio and m["bullet_lines"] > self.max_bullet_lines_ratio:
            return "gopher_too_many_bullets"
        if self.max_ellipsis_lines_ratio and m["ellipsis_lines"] > self.max_ellipsis_lines_ratio:
            return "gopher_too_many_end_ellipsis"
        if self.min_alpha_words_ratio and m["alpha_words"] < self.min_alpha_words_ratio:
            return "gopher_below_alpha_threshold"
        if self.min_stop_words and m["stop_words"] < self.min_stop_words:
            return "gopher_few_stop_words"
        return None



def duplicates(items: list[str]) -> tuple[int, int]:
    """(elements seen before, their characters), in order."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def top_ngram_chars(ws: list[str], n: int) -> int:
    """Characters of the most frequent word n-gram (joined by spaces) times its count."""
    grams = Counter(" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1))
    if not grams:
        return 0
    gram, count = grams.most_common(1)[0]
    return len(gram) * count


def duplicate_ngram_chars(ws: list[str], n: int) -> int:
    """Characters in word n-grams that repeat an earlier n-gram; a repeat's words are not counted again."""
    seen: set[str] = set()
    chars = i = 0
    while i < len(ws) - n + 1:
        gram = "".join(ws[i:i + n])
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


class GopherRepetition(GopherFilter):
    """Gopher repetition rules: duplicate paragraphs and lines, top n-grams, duplicated n-grams."""

    type: ClassVar[str] = "gopher_repetition"
    #: Largest share of lines that repeat an earlier line (Gopher: 0.3); None: off.
    dup_line_frac: float | None = 0.3
    #: Largest share of paragraphs that repeat an earlier paragraph (Gopher: 0.3); None: off.
    dup_para_frac: float | None = 0.3
    #: Largest share of characters in repeated lines (Gopher: 0.2); None: off.
    dup_line_char_frac: float | None = 0.2
    #: Largest share of characters in repeated paragraphs (Gopher: 0.2); None: off.
    dup_para_char_frac: float | None = 0.2
    #: (n, max fraction of characters in the most frequent n-gram).
    top_n_grams: list[tuple[int, float]] = [(2, 0.2), (3, 0.18), (4, 0.16)]
    #: (n, max fraction of characters in repeated n-grams).
    dup_n_grams: list[tuple[int, float]] = [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
    math_aware: bool = False
    batch_size: int = Field(256, ge=1)

    def measurement_types(self) -> dict:
        keys = ["dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"]
        keys += [f"top_{n}_gram" for n, _ in self.top_n_grams] + [f"dup_{n}_gram" for n, _ in self.dup_n_grams]
        return {k: pa.float64() for k in keys}

    def measure(self, text: str) -> dict:
        length = max(len(text), 1)
        paras = re.split(r"\n{2,}", text.strip())
        para_dups, para_chars = duplicates(paras)
        lines = re.split(r"\n+", text)
        line_dups, line_chars = duplicates(lines)
        ws = words(mask_math(text) if self.math_aware else text)
        m = {"dup_para_frac": para_dups / len(paras), "dup_para_char_frac": para_chars / length,
             "dup_line_frac": line_dups / len(lines), "dup_line_char_frac": line_chars / length}
        for n, _ in self.top_n_grams:
            m[f"top_{n}_gram"] = top_ngram_chars(ws, n) / length
        for n, _ in self.dup_n_grams:
            m[f"dup_{n}_gram"] = duplicate_ngram_chars(ws, n) / length
        return m

    def decide(self, m: dict, text: str) -> str | None:
        if not text:
            return "gopher_empty"
        for key in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"):
            limit = getattr(self, key)
            if limit and m[key] > limit:
                return f"gopher_{key}"
        for n, limit in self.top_n_grams:
            if m[f"top_{n}_gram"] > limit:
                return f"gopher_top_{n}_gram"
        for n, limit in self.dup_n_grams:
            if m[f"dup_{n}_gram"] > limit:
                return f"gopher_duplicated_{n}_grams"
        return None

