"""The tokens decontamination compares, so that formatting does not hide a copy.

- **prose** (web text, math): lowercased, every run of digits (with one decimal part) read as ``0``, punctuation and
  symbols (Unicode categories P and S) folded into spaces, diacritics dropped (NFD, combining marks removed), split
  on whitespace — the normalisation datatrove's n-gram decontamination applies by default, written anew.
- **code**: comments dropped (a ``#`` inside a string literal is not one), then every run of letters, digits and
  ``_`` (identifiers, keywords, numbers, and the words inside string literals); operators, brackets and whitespace
  are not tokens, so ``ruff format`` or another indentation does not change them.
- **near-copy shingles** for code (``code_streams``): the code with its comments *and* string literals dropped (a
  literal reads as ``0str``, which no name can be), every number read as ``0`` (``ruff format`` writes ``1.`` as
  ``1.0``), every other word that is not a Python keyword or builtin read as ``v``: renaming every variable,
  reformatting, or rewriting the docstring and comments leaves it unchanged. The MinHash kernels shingle it as
  words.

N-grams are looked up as 64-bit rolling hashes of the tokens (numpy, in C) and a hash hit is confirmed on the token
strings, so a collision can never reject a row.
"""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata
import zlib

import numpy as np
import regex

NUMBER = regex.compile(r"\p{Nd}+(?:[.,،٫]\p{Nd}+)?")
#: A Python string literal or a comment; strings first, so that a ``#`` inside one is not a comment (a literal's
#: prefix letters are a word either way). The reference of ``string_or_comment_spans``, which gives the same spans
#: in linear time: this pattern fails from every quote of a line of escaped quotes, each time scanning to the
#: line's end (80 KB: 50 s). Kept for the equivalence test; never run on a corpus.
STRING_OR_COMMENT = re.compile(r"""(?=['"#])(?:(?P<s>'''[\s\S]*?(?:'''|\Z)|\"\"\"[\s\S]*?(?:\"\"\"|\Z)|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")|\#[^\n]*)""")  # noqa: E501
WORD = re.compile(r"\w+")
#: Names a near copy keeps as they are: Python's keywords and builtins (``_`` is a name like any other).
KEEP = (frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins)) | {"self", "cls"}) - {"_"}
#: A near copy's tokens: a number whole (``1.``, ``1.0``, ``0x1F``, ``.5``), or a word.
NEAR_TOKEN = re.compile(r"\.?\d[\w.]*|\w+")
MARKS = regex.compile(r"\p{Mn}+")
_FOLD: dict[int, str] = {}


def _fold() -> dict[int, str]:
    """Every punctuation or symbol code point -> a space (built once: ~0.4 s over all of Unicode)."""
    if not _FOLD:
        _FOLD.update((c, " ") for c in range(0x110000) if unicodedata.category(chr(c))[0] in "PS")
    return _FOLD


def prose_tokens(text: str) -> list[str]:
    text = NUMBER.sub("0", (text or "").lower())
    if not text.isascii():
        text = MARKS.sub("", unicodedata.normalize("NFD", text))
    return text.translate(_fold()).split()


def string_or_comment_spans(code: str) -> list[tuple[int, int, bool]]:
    """``(start, end, is_string)`` of what ``STRING_OR_COMMENT.finditer`` matches, in one linear pass.

    At each quote or ``#`` (in order): a triple quote runs to its closing triple or the end; a single-quoted string
    runs to its unescaped closing quote, and fails at a newline, a backslash before a newline, or the end; a ``#``
    runs to the line's end. A failed single-quoted string resumes the scan at the next character, like the
    pattern, but every later quote of the same kind up to where the failure stopped fails too (the escapes pair up
    the same from there), so those are skipped instead of scanned again: each character is scanned a bounded
    number of times.
    """
    n = len(code)
    spans: list[tuple[int, int, bool]] = []
    nxt = {c: code.find(c) for c in "'\"#"}
    fails_until = {"'": -1, '"': -1}
    i = 0
    while i < n:
        for c in nxt:  # the next position of each candidate, found again only once passed
            if 0 <= nxt[c] < i:
                nxt[c] = code.find(c, i)
        live = [p for p in nxt.values() if p >= 0]
        if not live:
            break
        j = min(live)
        c = code[j]
        if c == "#":
            end = code.find("\n", j)
            end = n if end < 0 else end
            spans.append((j, end, False))
            i = end if end > j else j + 1
            continue
        if code.startswith(c * 3, j):
            end = code.find(c * 3, j + 3)
            end = n if end < 0 else end + 3
            spans.append((j, end, True))
            i = end
            continue
        if j <= fails_until[c]:
            i = j + 1
            continue
        k = j + 1
        while k < n:
            ch = code[k]
            if ch == "\\":
                if k + 1 >= n or code[k + 1] == "\n":
                    break
                k += 2
            elif ch == c:
                break
            elif ch == "\n":
                break
            else:
                k += 1
        if k < n and code[k] == c:
            spans.append((j, k + 1, True))
            i = k + 1
        else:
            fails_until[c] = k
            i = j + 1
    return spans


def code_streams(code: str) -> tuple[list[str], list[str]]:
    """(code tokens, near-copy tokens) from one pass over the strings and comments."""
    code = code or ""
    plain, bare, pos = [], [], 0
    for start, end, is_string in string_or_comment_spans(code):
        seg = code[pos:start]
        plain.append(seg)
        bare.append(seg)
        literal = code[start:end] if is_string else None
        plain.append(literal or " ")
        bare.append(" 0str " if literal else " ")
        pos = end
    plain.append(code[pos:])
    bare.append(code[pos:])
    near = [t if t in KEEP or t == "0str" else "0" if t[0].isdigit() or t[0] == "." else "v"
            for t in NEAR_TOKEN.findall("".join(bare))]
    return WORD.findall("".join(plain)), near


def code_tokens(code: str) -> list[str]:
    code = code or ""
    if "#" in code:  # comments go, strings stay
        parts, pos = [], 0
        for start, end, is_string in string_or_comment_spans(code):
            if not is_string:
                parts.append(code[pos:start])
                pos = end
        code = "".join(parts) + code[pos:]
    return WORD.findall(code)


def tokens(text: str, kind: str) -> list[str]:
    return code_tokens(text) if kind == "code" else prose_tokens(text)


def ngrams(toks: list[str], n: int) -> list[str]:
    """Every ``n`` consecutive tokens joined by a space (none when fewer than ``n``: too short to be evidence)."""
    return [" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)]


#: The rolling hash's multiplier (odd, so every step is invertible modulo 2^64).
MULT = np.uint64(0x9E3779B97F4A7C15)


def ngram_keys(toks: list[str], n: int) -> np.ndarray:
    """uint64 [len(toks) - n + 1]: one hash per n-gram, ``sum(h(tok_j) * MULT^(n-1-j))`` modulo 2^64 over a
    token hash that is the same in every process (CRC-32 of the UTF-8 and the length, not Python's salted hash)."""
    m = len(toks) - n + 1
    if m <= 0:
        return np.empty(0, np.uint64)
    h = np.fromiter((zlib.crc32(t.encode("utf-8", "surrogatepass")) | (len(t) << 32) for t in toks), np.uint64,
                    len(toks))
    acc = h[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            acc *= MULT
            acc += h[j:j + m]
    return acc
