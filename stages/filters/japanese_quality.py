"""Swallow Corpus v1's quality rules for Japanese web text (Okazaki et al., COLM 2024), as measurements and reasons.

Japanese has no spaces between words and ends sentences with 「。」「！」「？」, so the English rules (Gopher's words,
C4's and FineWeb's line punctuation) reject good Japanese pages; these are the rules the Swallow Corpus was built
with. Every measurement is a column (``ja_<name>``, on kept and rejected rows) and every threshold its own reason.
Definitions follow the reference (``quality.py`` of swallow-llm/swallow-corpus, MIT; written anew here) so that the
numbers are the same, including its conventions:

* a paragraph is a line (``\\n``), blank lines included; a sentence is a run of characters up to and including one of
  「。．！？!?」 within a line;
* ``duplicate_<n>gram_character_fraction`` (n = 5…10) is the share of *distinct* character n-grams that occur more
  than once (the name is the reference's); ``top_<n>gram_character_fraction`` (n = 2…4) is the count of the most
  frequent n-gram over all n-grams;
* Japanese letters are hiragana (U+3041–3096), katakana (U+30A1–30FA), kanji (「々〇〻」, U+3400–9FFF,
  U+F900–FAFF), 「。．！？」 and 「、，」; ``japanese_fraction`` is their share of all characters.

Where the reference raises (an empty text: no sentence; a text shorter than n: no n-gram) the measurement is 0 and
the document is rejected for its length first. ``tests/stages/filters/test_japanese_quality.py`` holds every
measurement and verdict equal to the reference's on 576 documents.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import ClassVar

import pyarrow as pa

from pipeline.core.document_filter import DocumentFilter
from stages.filters.gopher import duplicates

SENTENCE = re.compile(r"[^。．！？!?]+[。．！？!?]?")
HIRAGANA = re.compile("[\u3041-\u3096]")
KATAKANA = re.compile("[\u30a1-\u30fa]")
KANJI = re.compile("[々〇〻\u3400-\u9fff\uf900-\ufaff]")
KUTEN = re.compile("[。．！？]")
TOTEN = re.compile("[、，]")
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

MEASURES: dict[str, pa.DataType] = {
    "duplicate_paragraph_fraction": pa.float64(), "duplicate_paragraph_fraction_in_character": pa.float64(),
    "duplicate_sentence_fraction": pa.float64(), "duplicate_sentence_fraction_in_character": pa.float64(),
    **{f"top_{n}gram_character_fraction": pa.float64() for n in TOP_NGRAMS},
    **{f"duplicate_{n}gram_character_fraction": pa.float64() for n in DUP_NGRAMS},
    "num_letters": pa.int64(), "num_hiragana_letters": pa.int64(), "num_katakana_letters": pa.int64(),
    "num_kanji_letters": pa.int64(), "num_kuten": pa.int64(), "num_toten": pa.int64(),
    "num_japanese_letters": pa.int64(), "hiragana_fraction": pa.float64(), "katakana_fraction": pa.float64(),
    "kanji_fraction": pa.float64(), "kuten_fraction": pa.float64(), "toten_fraction": pa.float64(),
    "japanese_fraction": pa.float64(), "avg_sentence_length": pa.float64(), "max_sentence_length": pa.int64(),
    "num_sentences_ending_with_ellipsis": pa.int64(), "ellipsis_fraction": pa.float64(),
}


def measure_japanese(text: str) -> dict[str, float | int]:
    """Every measurement of Swallow Corpus v1's rules for one text (names without the ``ja_`` prefix)."""
    paragraphs, sentences = [], []
    for line in text.split("\n"):
        found = SENTENCE.findall(line)
        paragraphs.append("".join(found))
        sentences += found
    m: dict[str, float | int] = {}
    dp, dpc = duplicates(paragraphs)  # occurrences after an item's first, and their characters
    ds, dsc = duplicates(sentences)
    p_chars, s_chars = sum(map(len, paragraphs)), sum(map(len, sentences))
    m["duplicate_paragraph_fraction"] = dp / len(paragraphs) if paragraphs else 0.0
    m["duplicate_paragraph_fraction_in_character"] = dpc / p_chars if p_chars else 0.0
    m["duplicate_sentence_fraction"] = ds / len(sentences) if sentences else 0.0
    m["duplicate_sentence_fraction_in_character"] = dsc / s_chars if s_chars else 0.0
    for n in TOP_NGRAMS + DUP_NGRAMS:
        grams = Counter(text[i:i + n] for i in range(len(text) - n + 1))
        if n in TOP_NGRAMS:
            total = len(text) - n + 1
            m[f"top_{n}gram_character_fraction"] = max(grams.values()) / total if grams else 0.0
        else:
            repeated = sum(1 for f in grams.values() if f > 1)
            m[f"duplicate_{n}gram_character_fraction"] = repeated / len(grams) if grams else 0.0
    counts = {"num_hiragana_letters": len(HIRAGANA.findall(text)), "num_katakana_letters": len(KATAKANA.findall(text)),
              "num_kanji_letters": len(KANJI.findall(text)), "num_kuten": len(KUTEN.findall(text)),
              "num_toten": len(TOTEN.findall(text))}
    japanese = sum(counts.values())
    m["num_letters"] = len(text)
    m.update(counts)
    m["num_japanese_letters"] = japanese
    for name, key in (("hiragana", "num_hiragana_letters"), ("katakana", "num_katakana_letters"),
                      ("kanji", "num_kanji_letters"), ("kuten", "num_kuten"), ("toten", "num_toten")):
        m[f"{name}_fraction"] = counts[key] / japanese if japanese else 0.0
    m["japanese_fraction"] = japanese / len(text) if text else 0.0
    m["avg_sentence_length"] = s_chars / len(sentences) if sentences else 0.0
    m["max_sentence_length"] = max(map(len, sentences), default=0)
    ellipsis = sum(1 for s in sentences if s.strip().endswith(("・", "…")))
    m["num_sentences_ending_with_ellipsis"] = ellipsis
    m["ellipsis_fraction"] = ellipsis / len(sentences) if sentences else 0.0
    return m


class JapaneseQuality(DocumentFilter):
    """Swallow Corpus v1's quality rules: columns ``ja_*``, one reason per threshold (defaults: the paper's)."""

    type: ClassVar[str] = "japanese_quality"
    measures: ClassVar = {f"ja_{k}": t for k, t in MEASURES.items()}
    #: Fewest letters a document may have (Swallow Corpus: 400).
    min_letters: int = 400
    #: Largest share of paragraphs repeated in the document (0.30).
    max_duplicate_paragraph_fraction: float = 0.30
    #: Largest share of sentences repeated in the document (0.30).
    max_duplicate_sentence_fraction: float = 0.30
    #: Largest share of characters in repeated paragraphs (0.20).
    max_duplicate_paragraph_char_fraction: float = 0.20
    #: Largest share of characters in repeated sentences (0.20).
    max_duplicate_sentence_char_fraction: float = 0.20
    #: top character n-gram fractions, n = 2, 3, 4
    max_top_ngram_fraction: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16}
    #: duplicate character n-gram fractions, n = 5 … 10
    max_duplicate_ngram_fraction: dict[int, float] = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    min_hiragana_fraction: float = 0.2
    max_katakana_fraction: float = 0.5
    min_japanese_fraction: float = 0.5
    min_japanese_letters: int = 400
    min_avg_sentence_length: float = 20
    max_avg_sentence_length: float = 90
    max_sentence_length: int = 200
    max_ellipsis_fraction: float = 0.2

    def measure(self, text: str) -> dict:
        return {f"ja_{k}": v for k, v in measure_japanese(text).items()}

    def bounds(self) -> list[tuple[str, str, str, float]]:
        """(reason, measurement, "min" or "max", bound) in the reference's order: the first one broken decides."""
        return [
            ("ja_too_few_letters", "num_letters", "min", self.min_letters),
            ("ja_duplicate_paragraphs", "duplicate_paragraph_fraction", "max", self.max_duplicate_paragraph_fraction),
            ("ja_duplicate_sentences", "duplicate_sentence_fraction", "max", self.max_duplicate_sentence_fraction),
            ("ja_duplicate_paragraph_chars", "duplicate_paragraph_fraction_in_character", "max",
             self.max_duplicate_paragraph_char_fraction),
            ("ja_duplicate_sentence_chars", "duplicate_sentence_fraction_in_character", "max",
             self.max_duplicate_sentence_char_fraction),
            *[(f"ja_top_{n}gram", f"top_{n}gram_character_fraction", "max", v)
              for n, v in sorted(self.max_top_ngram_fraction.items())],
            *[(f"ja_duplicate_{n}gram", f"duplicate_{n}gram_character_fraction", "max", v)
              for n, v in sorted(self.max_duplicate_ngram_fraction.items())],
            ("ja_few_hiragana", "hiragana_fraction", "min", self.min_hiragana_fraction),
            ("ja_much_katakana", "katakana_fraction", "max", self.max_katakana_fraction),
            ("ja_not_japanese", "japanese_fraction", "min", self.min_japanese_fraction),
            ("ja_too_few_japanese_letters", "num_japanese_letters", "min", self.min_japanese_letters),
            ("ja_short_sentences", "avg_sentence_length", "min", self.min_avg_sentence_length),
            ("ja_long_sentences", "avg_sentence_length", "max", self.max_avg_sentence_length),
            ("ja_longest_sentence", "max_sentence_length", "max", self.max_sentence_length),
            ("ja_ellipsis", "ellipsis_fraction", "max", self.max_ellipsis_fraction),
        ]

    def decide(self, m: dict, text: str):
        for reason, name, side, bound in self.bounds():
            value = m[f"ja_{name}"]
            if (value < bound) if side == "min" else (value > bound):
                return reason, f"ja_{name} = {value:.4g} (bound {bound:g})"
        return None
