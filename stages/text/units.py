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
#: A delimited formula: ``$$…$$``, ``$…$`` (one line, not after ``\`` or ``$``), ``\(…\)``, ``\[…\]``. The reference
#: of ``formula_spans`` / ``formula_fullmatch``, which give its matches in linear time (it rescans to the end from
#: every unclosed ``\(``: quadratic); kept for the equivalence test, never run on a corpus.
FORMULA = re.compile(r"\$\$.+?\$\$|(?<![\\$])\$[^$\n]+?\$|\\\(.+?\\\)|\\\[.+?\\\]", re.S)
_PAIRS = {"$$": "$$", "\\(": "\\)", "\\[": "\\]"}


def formula_spans(text: str) -> list[tuple[int, int]]:
    """The spans ``FORMULA.finditer`` matches, in one linear pass: a ``$$``/``\\(``/``\\[`` opener ends at the
    first closer after at least one character, and an opener with no closer after it means no later one of its
    kind has one either (it is skipped, not rescanned); a ``$`` runs to the next ``$`` on its line."""
    spans: list[tuple[int, int]] = []
    n, i = len(text), 0
    dead = set()
    nxt = {c: text.find(c) for c in "$\\"}
    while i < n:
        for c in nxt:
            if 0 <= nxt[c] < i:
                nxt[c] = text.find(c, i)
        live = [p for p in nxt.values() if p >= 0]
        if not live:
            break
        j = min(live)
        two = text[j:j + 2]
        if two in _PAIRS and two not in dead:
            close = text.find(_PAIRS[two], j + 3)
            if close >= 0:
                spans.append((j, close + 2))
                i = close + 2
                continue
            dead.add(two)
        if text[j] == "$" and (j == 0 or text[j - 1] not in "\\$"):
            k = j + 1
            while k < n and text[k] not in "$\n":
                k += 1
            if k < n and text[k] == "$" and k > j + 1:
                spans.append((j, k + 1))
                i = k + 1
                continue
        i = j + 1
    return spans


def formula_fullmatch(s: str) -> bool:
    """``FORMULA.fullmatch(s) is not None``, in linear time."""
    for opener, closer in _PAIRS.items():
        if len(s) >= 5 and s.startswith(opener) and s.endswith(closer):
            return True
    return len(s) >= 3 and s[0] == "$" and s[-1] == "$" and "$" not in s[1:-1] and "\n" not in s[1:-1]


def formula_sub(text: str, replacement: str) -> str:
    """``FORMULA.sub(replacement, text)`` for a plain replacement."""
    out, pos = [], 0
    for start, end in formula_spans(text):
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)
MATH_WORD = "MATH"


@lru_cache(maxsize=1)
def nlp():
    import sys

    # spaCy's thinc imports torch when it is installed (vLLM brings it): 180 MB and 1.1 s in every worker that
    # counts words, for a rule-based tokenizer that never calls it (measured: spaCy 304 MB / 2.2 s to load with
    # torch, 124 MB / 1.1 s without). Unless torch is loaded already, the import is refused while spaCy loads and
    # allowed again after (a later ``import torch`` works as usual).
    refuse = "torch" not in sys.modules
    if refuse:
        sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import spacy

        pipeline = spacy.blank("en")
        pipeline.add_pipe("sentencizer")
    finally:
        if refuse and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return pipeline


#: Characters of text whose words one shard keeps (``words_scope``): their words take ~10 bytes per character of
#: text (measured on the WARC sample's pages: 1.8 M characters, 378 k words, 18.5 MB), so at most ~40 MB.
WORDS_MEMO_CHARS = 4_000_000


class _WordsMemo:
    """The words of the texts of the current shard (see ``words_scope``)."""

    def __init__(self):
        self.scope: object = None
        self.chars = 0
        self.entries: dict[str, tuple[str, ...]] = {}


_MEMO = _WordsMemo()


def words_scope(scope: object) -> None:
    """Say which shard the next ``words`` calls are for (a filter calls it with its shard before measuring). The
    words of that shard's texts are kept until the scope changes, so a filter chained after another (Gopher
    repetition after Gopher quality: one worker, the same shard, the texts it kept) finds them instead of tokenizing
    again: on the 12-file web sample Gopher repetition's 5.2 s of the 22 s spent in spaCy's tokenizer (FineWeb comes
    after C4, which rewrites the texts, so it tokenizes anew). words is a function of the text alone: nothing but
    the time changes. Texts past ``WORDS_MEMO_CHARS`` are not kept."""
    if scope != _MEMO.scope:
        _MEMO.__init__()
        _MEMO.scope = scope


def words(text: str) -> tuple[str, ...]:
    """spaCy's tokens of ``text``, whitespace tokens dropped."""
    found = _MEMO.entries.get(text)
    if found is not None:
        return found
    pipeline = nlp()
    pipeline.max_length = max(pipeline.max_length, len(text) + 10)
    with pipeline.memory_zone():
        found = tuple(s for s in (t.text.strip() for t in pipeline.tokenizer(text)) if s)
    if _MEMO.chars + len(text) <= WORDS_MEMO_CHARS:
        _MEMO.entries[text] = found
        _MEMO.chars += len(text)
    return found


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
    return formula_sub(text, f" {MATH_WORD} ")


# What reads as TeX (the math score and the extraction child count formulas so; here, in a module that imports
# no pyarrow, so that the extraction child stays small).
COMMANDS = re.compile(
    r"\\(frac|dfrac|tfrac|sqrt|sum|int|iint|oint|prod|lim|limsup|liminf|infty|alpha|beta|gamma|delta|epsilon|"
    r"varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|pi|rho|sigma|tau|upsilon|phi|varphi|chi|psi|"
    r"omega|Gamma|Delta|Theta|Lambda|Xi|Pi|Sigma|Phi|Psi|Omega|partial|nabla|cdot|cdots|ldots|times|div|pm|mp|"
    r"leq|geq|le|ge|neq|ne|approx|equiv|sim|simeq|cong|propto|mathbb|mathbf|mathrm|mathcal|mathfrak|operatorname|"
    r"left|right|begin|end|binom|choose|vec|hat|bar|tilde|overline|underline|forall|exists|in|notin|subset|"
    r"subseteq|supset|cup|cap|setminus|emptyset|mapsto|to|rightarrow|Rightarrow|Leftrightarrow|iff|implies|log|ln|"
    r"exp|sin|cos|tan|det|dim|ker|deg|gcd|max|min|sup|inf|mod|pmod|quad|qquad|text|displaystyle)(?![A-Za-z])")
SCRIPT = re.compile(r"[\^_](\{|[A-Za-z0-9])")
CODE_MARKS = re.compile(r';|"|->|==|&&|\|\||\$\{|\$\(')


@lru_cache(maxsize=65536)
def is_math_symbol(ch: str) -> bool:
    return ord(ch) > 127 and unicodedata.category(ch) == "Sm"


def tex_spans(text: str) -> int:
    n = 0
    for start, end in formula_spans(text):
        body = text[start:end]
        if CODE_MARKS.search(body):
            continue
        if COMMANDS.search(body) or SCRIPT.search(body):
            n += 1
    return n
