"""A cheap math test on the raw HTML, before extraction: the ``math_prefilter`` stage (OpenWebMath's approach).

Extraction costs ~35 ms a page with trafilatura, and a general crawl has math on a few pages in a hundred: a math
corpus should extract only pages that may have some. After extraction, ``math_score`` looks for TeX spans, LaTeX
commands, Unicode math symbols and math markup; a page can only pass it if its HTML holds one of them, so this stage
keeps a page whose HTML has any of

- math markup or a math renderer: MathJax, KaTeX, MathML (``<math``), Wikipedia's ``mwe-math``, Stack Exchange's
  ``math-container``, ``type="math/tex"`` scripts, LaTeX image services (codecogs, ``latex.php``, mimeTeX, WP LaTeX);
- a LaTeX math command (``\\frac``, ``\\sum``, ``\\alpha``, …: the list ``math_score`` counts) or ``$$``;
- a TeX span ``math_score`` would count (``$x^2$``: a sub/superscript or command between delimiters, no code);
- at least ``min_symbols`` characters of Unicode's math-symbol category beyond ASCII (≤ ∑ √ × ↑ …), written as
  themselves or as entities (``&le;``, ``&#8721;``). With no other evidence, ``math_score`` needs
  0.5 × symbols ≥ −4·ln(1 − min_score) × (1 + chars/1000): 6 symbols at its ``min_score`` of 0.5 (2 at 0.2), so a
  page with fewer cannot pass it; a lone × in a shop's "20×30 cm" or an ↑ back-link does not cost an extraction;

and rejects the others as ``prefilter_no_math``. Every test is a literal search or a regular expression without
nested repetition, over the first ``max_chars`` characters: linear in the page. Column ``math_markers``: what was
found first (``markup:mathjax``, ``command``, ``tex_span``, ``symbols``, …). docs/benchmarks.md has what it
keeps and skips on the math pages and on general crawls (benchmarks/bench_math_prefilter.py).
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from pipeline.core.stage import Stage, Verdict
from stages.text.units import COMMANDS, tex_spans

#: Markup of math renderers and formula images, searched in the lower-cased page.
MARKUP = ("mathjax", "katex", "mwe-math", "math-container", "math/tex", "math/mml", "math/asciimath", "codecogs",
          "latex.php", "mimetex", "tex.cgi", "wp-latex", "s0.wp.com/latex")
#: MathML elements, searched case-sensitively (lower-cased, ``<math`` is also JavaScript's ``<Math.floor``).
MATHML = ("<math", "<m:math", "<mml:math")

#: Every character of the math-symbol category (Sm) beyond ASCII (942 code points): the 930 of the Basic
#: Multilingual Plane in one class, the 12 beyond it (𝛁, 𝛛, …) in another, searched only on a page that has such
#: characters (a class with astral code points scans 4x slower: 1.6 against 0.4 ms for 100 kB).
#: (Only the Basic Multilingual Plane and U+1D000-1EFFF hold any, Unicode 15: scanning those, not all 1.1 M code points,
#: keeps its import at ~20 ms instead of ~180; the test compares with the full scan.)
_SM_RANGES = (range(128, 0x10000), range(0x1D000, 0x1F000))
_SM = "".join(chr(c) for r in _SM_RANGES for c in r if unicodedata.category(chr(c)) == "Sm")
SYMBOL = re.compile("[" + re.escape("".join(c for c in _SM if c <= "\uffff")) + "]")
SYMBOL_ASTRAL = re.compile("[" + re.escape("".join(c for c in _SM if c > "\uffff")) + "]")
#: Numeric and named character references, decoded one at a time to test the character (linear: no nesting).
ENTITY = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_SM_SET = frozenset(_SM)


def count_symbols(page: str, enough: int) -> int:
    """Math symbols in ``page``, as characters and as character references, counted up to ``enough``."""
    n = 0
    if not page.isascii():
        astral = len(page.encode("utf-16-le", "surrogatepass")) > 2 * len(page)
        for rx in (SYMBOL, SYMBOL_ASTRAL) if astral else (SYMBOL,):
            for _ in rx.finditer(page):
                n += 1
                if n >= enough:
                    return n
    if "&" in page:
        for m in ENTITY.finditer(page):
            ch = html.unescape(m.group(0))
            if len(ch) == 1 and ch in _SM_SET:
                n += 1
                if n >= enough:
                    return n
    return n


def markers(page: str, min_symbols: int = 6) -> str | None:
    """The first kind of math evidence found in ``page`` (checked cheapest first), or None."""
    low = page.lower()
    for m in MARKUP:
        if m in low:
            return f"markup:{m}"
    for m in MATHML:
        if m in page:
            return "markup:mathml"
    if "$$" in page:
        return "display_dollars"
    if COMMANDS.search(page):
        return "command"
    if "$" in page and tex_spans(page):
        return "tex_span"
    if count_symbols(page, min_symbols) >= min_symbols:
        return "symbols"
    return None


class MathPrefilter(Stage):
    """Before extraction: keep pages whose raw HTML shows math (a renderer, MathML, a LaTeX command, a TeX span,
    enough math symbols); the others are prefilter_no_math and never extracted."""

    type: ClassVar[str] = "math_prefilter"
    #: Column holding the page's HTML.
    column: str = "html"
    #: Characters of the page searched (a page's formulas can come late, after a long header).
    max_chars: int = Field(4_000_000, ge=1024)
    #: Math symbols that alone make a page worth extracting: 6 for math_score's min_score 0.5, 2 for 0.2 (above).
    min_symbols: int = Field(6, ge=1)

    def makes(self) -> set[str]:
        return {"math_markers"}

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        pages = table.column(self.column).to_pylist() if self.column in table.column_names else [None] * len(table)
        found, reasons = [], []
        for page in pages:
            if not page:
                found.append(None)
                reasons.append("no_html")
                continue
            m = markers(page[: self.max_chars], self.min_symbols)
            found.append(m)
            reasons.append(None if m else "prefilter_no_math")
        return Verdict(reasons, columns={"math_markers": pa.array(found, pa.string())})
