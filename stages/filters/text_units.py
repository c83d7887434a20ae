"""Words, sentences, symbols and formulas: the units the web-text rules count.

* Words and sentences come from spaCy's rule-based English tokenizer and sentencizer (``spacy.blank("en")``,
  nothing downloaded) — the tokenizer datatrove's filters use, so verdicts can be compared with them.
* A *symbol word* is a word made only of punctuation, symbol or control characters (Unicode categories P*, S*,
  Cc, Cf); a *terminal* is a character with Unicode's ``Sentence_Terminal`` property. (datatrove lists its own
  characters instead; where the two definitions disagree on a document, the comparison test says so.)
* Math-aware counting replaces each delimited formula (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``) by one word,
  ``MATH``, so a page of LaTeX is not judged by the look of its markup (braces, backslashes, one-letter words).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import regex

TERMINAL = regex.compile(r"\p{Sentence_Terminal}")
FORMULA = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$[^$\n]+?\$|\\\(.+?\\\)|\\\[.+?\\\]", re.S)
MATH_WORD = "MATH"


@lru_cache(maxsize=1)
def nlp():
    import spacy

    pipeline = spacy.blank("en")
    pipeline.add_pipe("sentencizer")
    return pipeline


def words(text: str) -> list[str]:
    """spaCy's tokens of ``text``, whitespace tokens dropped."""
    tok = nlp().tokenizer
    nlp().max_length = max(nlp().max_length, len(text) + 10)
    with nlp().memory_zone():
        return [t.text.strip() for t in tok(text) if t.text.strip()]


def sentences(text: str) -> list[str]:
    pipeline = nlp()
    pipeline.max_length = max(pipeline.max_length, len(text) + 10)
    with pipeline.memory_zone():
        return [s.text.strip() for s in pipeline(text).sents if s.text.strip()]


@lru_cache(maxsize=65536)
def is_symbol_char(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "PS" or cat in ("Cc", "Cf")


def is_symbol_word(word: str) -> bool:
    return all(is_symbol_char(c) for c in word)


def ends_with_terminal(line: str) -> bool:
    return bool(line) and TERMINAL.match(line[-1]) is not None


def mask_math(text: str) -> str:
    """``text`` with every delimited formula replaced by the word ``MATH`` (line breaks inside it kept out)."""
    return FORMULA.sub(f" {MATH_WORD} ", text)
