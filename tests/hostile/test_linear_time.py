"""Every row gets its verdict in bounded time: each parser of untrusted text is linear in its input.

Two kinds of checks. **Equivalence**: each linear scanner that replaced a backtracking regular expression gives the
pattern's own answers (the pattern is kept as the reference) on fuzzed strings built from the pattern's delimiters,
and on the real files. **Growth**: each parser meets adversarial inputs of doubling size (the shapes that made the
old patterns cubic or quadratic: unclosed tags, openers without closers, lines of escaped quotes, thousands of tiny
gzip members, runs of version lines) and its CPU time over an 8x larger input must grow like the input (about 8x),
not like its square (64x): the check allows 24x, so it fails on super-linear growth, not on a slow machine.
"""

from __future__ import annotations

import gzip
import io
import random
import re
import time

import pytest

pytestmark = pytest.mark.fast

# --------------------------------------------------------------------------------------------- the references
# The language pre-filter's patterns before they were replaced by stages/extract/head_tags.py (cubic on <meta runs).
OLD_HTML_LANG = re.compile(rb"<html\b[^>]*?\b(?:xml:)?lang\s*=\s*[\"']?\s*([A-Za-z_-]{2,20})", re.I)
OLD_META_LANG = re.compile(rb"<meta\b[^>]*?http-equiv\s*=\s*[\"']?content-language[\"']?[^>]*?content\s*=\s*[\"']?"
                           rb"\s*([A-Za-z_-]{2,20})|<meta\b[^>]*?content\s*=\s*[\"']?\s*([A-Za-z_-]{2,20})[\"']?"
                           rb"[^>]*?http-equiv\s*=\s*[\"']?content-language", re.I)
OLD_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.I | re.S)
OLD_TAG = re.compile(r"<[^>]+>")


def old_declared(head: str) -> str | None:
    raw = head.encode("utf-8", "surrogatepass")
    m = OLD_HTML_LANG.search(raw)
    if m:
        return m.group(1).decode("ascii").lower()
    m = OLD_META_LANG.search(raw)
    return (m.group(1) or m.group(2)).decode("ascii").lower() if m else None


def old_title(head: str) -> str:
    import html

    m = OLD_TITLE.search(head)
    return " ".join(html.unescape(OLD_TAG.sub(" ", m.group(1))).split()) if m else ""


def fuzz(tokens, n: int, seed: int, longest: int = 14):
    rng = random.Random(seed)
    for _ in range(n):
        yield tokens[0][:0].join(rng.choice(tokens) for _ in range(rng.randint(0, longest)))


# --------------------------------------------------------------------------------------------- equivalence
def test_code_strings_and_comments_equal_the_pattern():
    from stages.decont.ngrams import STRING_OR_COMMENT, string_or_comment_spans

    tokens = ["'", '"', "#", "\\", "\n", " ", "a", "'''", '"""', "\\'", '\\"']
    for s in fuzz(tokens, 40_000, 1, 30):
        want = [(m.start(), m.end(), m.group("s") is not None) for m in STRING_OR_COMMENT.finditer(s)]
        assert string_or_comment_spans(s) == want, repr(s)


def test_formulas_equal_the_pattern():
    from stages.text.units import FORMULA, formula_fullmatch, formula_spans

    for s in fuzz(["$", "$$", "\\(", "\\)", "\\[", "\\]", "a", "\n", "\\", " ", "x$y"], 40_000, 2):
        assert formula_spans(s) == [m.span() for m in FORMULA.finditer(s)], repr(s)
        assert formula_fullmatch(s) == (FORMULA.fullmatch(s) is not None), repr(s)


def test_meta_charset_equals_the_pattern():
    from stages.ingest.warc import META_CHARSET, meta_charset

    tokens = [b"<meta", b"<META ", b" ", b"charset", b"CharSet", b"=", b'"', b"'", b"utf-8", b">", b"x", b"\n", b"<"]
    for s in fuzz(tokens, 40_000, 3, 12):
        m = META_CHARSET.search(s)
        assert meta_charset(s) == (m.group(1) if m else None), s


def test_bbcode_equals_the_pattern():
    from stages.extract.math import BBCODE, bbcode_math

    def ref(text):
        def one(m):
            inline = m.group(1).lower() in ("itex", "latex")
            return f"${m.group(2).strip()}$" if inline else f"$${m.group(2).strip()}$$"
        return BBCODE.sub(one, text)

    tokens = ["[math]", "[/math]", "[MATH]", "[tex]", "[/tex]", "[latex]", "[/LaTeX]", "[itex]", "[/itex]", "x", " ",
              "[", "]", "\n"]
    for s in fuzz(tokens, 40_000, 4, 10):
        assert bbcode_math(s) == ref(s), repr(s)


def well_formed_heads(n: int, seed: int):
    """Heads made of well-formed tags in random order, case and quoting: where the old patterns were right (they
    also read `lang` inside other attributes' names and values, which the scanner does not)."""
    rng = random.Random(seed)
    langs = ["ja", "en-US", "ja_JP", "zh-Hant", "x", "japanese", "de"]

    def q(v):
        return rng.choice(['"{}"', "'{}'", "{}"]).format(v) if " " not in v else f'"{v}"'

    def tag():
        kind = rng.randrange(7)
        case = rng.choice([str.lower, str.upper, str.title])
        if kind == 0:
            return f"<{case('html')} {rng.choice(['lang', 'xml:lang', 'LANG'])}={q(rng.choice(langs))}>"
        if kind == 1:
            return f"<{case('meta')} http-equiv={q(rng.choice(['content-language', 'Content-Language']))} " \
                   f"content={q(rng.choice(langs))}>"
        if kind == 2:
            return f"<{case('meta')} content={q(rng.choice(langs))} http-equiv={q('content-language')}>"
        if kind == 3:
            inner = rng.choice(["Title", "日本語 &amp; <b>bold</b>", "", "  spaced  out  "])
            return f"<{case('title')}>{inner}</{case('title')}>"
        if kind == 4:
            return f"<{case('meta')} charset={q('utf-8')}>"
        if kind == 5:
            return rng.choice(["text ", "\n", "<body>", "<div class=a>", "<head>"])
        return f"<{case('html')}>"

    for _ in range(n):
        yield "".join(tag() for _ in range(rng.randint(0, 6)))


def test_head_tags_equal_the_old_patterns_on_well_formed_heads():
    from stages.extract.language_prefilter import declared, title

    for s in well_formed_heads(20_000, 5):
        assert (declared(s), title(s)) == (old_declared(s), old_title(s)), repr(s)


@pytest.mark.shared_data
def test_head_tags_equal_the_old_patterns_on_the_real_pages():
    from stages.extract.language_prefilter import declared, title
    from tests.conftest import html_pages

    for name, raw in html_pages():
        head = raw.decode("utf-8", "replace")[:65_536]
        assert (declared(head), title(head)) == (old_declared(head), old_title(head)), name


@pytest.mark.shared_data
def test_code_tokens_equal_the_pattern_on_the_real_corpus(corpus_rows):
    from stages.decont.ngrams import STRING_OR_COMMENT, string_or_comment_spans

    for row in corpus_rows:
        code = row["content"]
        want = [(m.start(), m.end(), m.group("s") is not None) for m in STRING_OR_COMMENT.finditer(code)]
        assert string_or_comment_spans(code) == want, row["path"]


# --------------------------------------------------------------------------------------------- growth
def cpu_seconds(fn, arg) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        fn(arg)
        best = min(best, time.process_time() - t0)
    return best


def grows_linearly(fn, make, base: int) -> tuple[bool, list[float]]:
    """CPU time of ``fn(make(n))`` for n = base, 2 base, 4 base, 8 base: (8x input within 24x the time, times).
    ``base`` is raised until the smallest input takes a measurable time."""
    while cpu_seconds(fn, make(base)) < 0.004 and base < 10**8:
        base *= 2
    times = [cpu_seconds(fn, make(base * k)) for k in (1, 2, 4, 8)]
    return times[-1] <= 24 * max(times[0], 1e-4), times


def _warc_members(n: int) -> bytes:
    """One WARC's records split into gzip members of ``max(1, 64000 // n)`` bytes: n-ish members."""
    from tests.hostile.warc_files import synthetic_records

    raw = b"".join(synthetic_records())
    size = max(1, len(raw) * 8 // n)
    return b"".join(gzip.compress(raw[i:i + size], 1) for i in range(0, len(raw), size))


def _warc_read(data: bytes) -> int:
    from stages.ingest.warc_reader import iter_records

    return sum(1 for _ in iter_records(io.BytesIO(data), 1 << 20))


def _cases():
    from stages.decont.ngrams import code_streams, code_tokens
    from stages.extract.language_prefilter import declared, title
    from stages.extract.math import bbcode_math
    from stages.ingest.warc import meta_charset
    from stages.rewrite.prompts import extract, fenced_blocks, load_prompt
    from stages.text.units import formula_spans, mask_math

    sgcr, math = load_prompt("code_sgcr").extract, load_prompt("math_rewrite").extract
    pii = _pii()
    return {
        "pii e-mail dashes": (lambda s: pii.scan(s), lambda n: "x@" + "a-" * n, 1000),
        "pii dotted words": (lambda s: pii.scan(s), lambda n: "a." * n, 1000),
        "pii one long line of keywords": (lambda s: pii.scan(s), lambda n: "password = 'x' " * n, 500),
        "pii ip runs": (lambda s: pii.scan(s), lambda n: "1." * n, 1000),
        "prefilter <meta runs": (declared, lambda n: "<meta " * n, 500),
        "prefilter <html runs": (declared, lambda n: "<html " * n, 500),
        "prefilter lang= runs": (declared, lambda n: '<html lang="' * n, 500),
        "prefilter unclosed <": (title, lambda n: "<title>" + "<" * n, 2000),
        "prefilter <title runs": (title, lambda n: "<title" * n, 500),
        "code escaped quotes": (code_tokens, lambda n: "#\n" + "\\'" * n, 2000),
        "code streams escaped quotes": (code_streams, lambda n: "\\'" * n + '"' + '\\"' * n, 2000),
        "formula \\( openers": (formula_spans, lambda n: "\\(" * n, 2000),
        "formula mask \\[": (mask_math, lambda n: "\\[" * n, 2000),
        "bbcode openers": (bbcode_math, lambda n: "[math]" * n, 1000),
        "meta charset": (meta_charset, lambda n: b"<meta " * n, 1000),
        "fences without a close": (fenced_blocks, lambda n: "```x\n" * n, 1000),
        "heading search": (lambda s: extract(s, sgcr), lambda n: "### Improved " * n, 1000),
        "marker search": (lambda s: extract(s, math), lambda n: "Rewritten " * n, 1000),
        "warc tiny gzip members": (_warc_read, _warc_members, 500),
        "warc version lines": (_warc_read, lambda n: b"\nWARC/1.0\r\n" * n + b"".join(_synthetic()), 500),
        "warc version lines in gzip": (_warc_read, lambda n: gzip.compress(b"\nWARC/1.0\r\n" * n), 500),
    }


def _pii():
    from stages.pii.stage import Pii

    stage = Pii()
    stage.setup()
    return stage


def _synthetic():
    from tests.hostile.warc_files import synthetic_records

    return synthetic_records()


@pytest.mark.parametrize("case", sorted(_cases()))
def test_adversarial_inputs_take_time_linear_in_their_size(case):
    fn, make, base = _cases()[case]
    ok, times = grows_linearly(fn, make, base)
    assert ok, f"{case}: CPU seconds at 1x, 2x, 4x, 8x the input: {[round(t, 4) for t in times]}"
