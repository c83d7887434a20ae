"""One page's extraction, as the extraction child runs it (``pipeline.proc.sandbox``): HTML -> main text with its math.

Kept apart from the stage (``html.py``) so the child imports what extraction needs and nothing else: trafilatura
and lxml (38 MB), not pyarrow and pydantic (the child was 96 MB before any page, and each worker starts one).
See ``html.py`` for what the options mean.
"""

from __future__ import annotations

import re
from typing import Any


def count_formulas(text: str) -> int:
    """Delimited spans that read as TeX (a command or a sub/superscript, no code punctuation)."""
    from stages.text.units import tex_spans

    return tex_spans(text)


def visible_text(tree, sep: str = " ") -> str:
    """The page's text outside scripts and styles (a page's JavaScript is full of ``$`` and braces)."""
    return sep.join(tree.xpath("//body//text()[not(ancestor::script) and not(ancestor::style)]"))

_OPTIONS: dict[str, Any] = {}
#: Cheap tests on the raw HTML: does the page name any math markup, or hold TeX in its text?
#: (substring tests: an alternation regex with IGNORECASE took 20 ms on a 1 MB page, more than the extraction)
MATH_MARKERS = ("<math", "katex", "mathjax", "mjx-", "math/tex", "math/mml", "math-container", "mwe-math", "latex",
                "codecogs", "mimetex", "mathtex", "asciimath")


def math_hint(html: str) -> bool:
    low = html.lower()
    return any(m in low for m in MATH_MARKERS) or "AM_" in html
TEX_HINT = re.compile(r"(\$|\\\(|\\\[)[^$<>]{0,300}?\\[A-Za-z]")
#: A sentence end: Japanese/Chinese 「。！？」 (full width) or ``.!?`` ending a sentence.
SENTENCE_END = re.compile(r"[。！？!?]|\.(\s|$)")


#: trafilatura's text is checked against its baseline when it holds less than this share of the page's prose: 29 of 29
#: ClueWeb shop pages, 5 of 43 Japanese ground-truth pages and 5 of trafilatura's 300 English evaluation pages.
PROSE_SHARE = 0.25
#: ... and when under this share of trafilatura's own text is prose: a list or a table (ClueWeb's sidebar: 0.05).
#: Both together select the 29 ClueWeb pages and none of trafilatura's 300 evaluation pages whose baseline wins
#: (with the first alone, 4 of those 300 changed and 3 lost: German pages of bullet lists, or a page with comments).
LIST_SHARE = 0.1


def prose_chars(text: str) -> int:
    """Characters in lines that read as prose: ≥ 10 characters with a sentence end. Navigation, rankings and
    product lists have none, in any language; a Japanese product description or news article is made of them."""
    return sum(len(line) for line in text.split("\n") if len(line.strip()) >= 10 and SENTENCE_END.search(line))


def setup_worker(options: dict[str, Any]) -> None:
    """In the extraction child: remember the options, import the extractor once."""
    _OPTIONS.clear()
    _OPTIONS.update(options)
    if options["extractor"] == "resiliparse":
        import resiliparse.extract.html2text  # noqa: F401
    else:
        import trafilatura  # noqa: F401
    if options["math"]:  # the converters' one-time start (XSLT compile, AsciiMath grammar: ~2 s), not per page
        from stages.extract.math import _asciimath, _mathml_xslt

        _mathml_xslt()
        _asciimath()


def parse_cut_short() -> str | None:
    """Why the last parse of trafilatura's HTML parser stopped before the page's end, or None. libxml2 stops at a
    text node over 10,000,000 bytes (a giant ``math/tex`` script, say) and keeps only what came before: the page
    would be kept without that node and every word after it. Such a page is rejected (``parser_limit``) instead:
    lifting the limit (``huge_tree``) would let one page take gigabytes of the extraction child."""
    from trafilatura.utils import HTML_PARSER

    for err in HTML_PARSER.error_log:
        if err.type_name == "ERR_RESOURCE_LIMIT" or "XML_PARSE_HUGE" in err.message:
            return f"the HTML parser stopped at line {err.line}: {err.message.strip()[:200]}"
    return None


def extract_page(html: str, url: str | None) -> dict[str, Any]:
    """The page's main text with its math, and how it was obtained (runs in the extraction child)."""
    from trafilatura.utils import load_html

    from stages.extract.math import bbcode_math, mark_math

    opts = _OPTIONS
    tree = load_html(html)  # trafilatura's loader: XML declarations, broken markup, stray encodings
    cut = parse_cut_short()
    if cut:
        return {"text": None, "math_formulas": 0, "method": None, "reason": "parser_limit", "detail": cut}
    if tree is None:
        return {"text": None, "math_formulas": 0, "method": None}
    hint = math_hint(html)  # most pages name no math markup at all: skip the pre-pass
    n_math = mark_math(tree) if opts["math"] and hint else 0
    if opts["extractor"] == "resiliparse":
        from lxml import etree
        from resiliparse.extract.html2text import extract_plain_text

        text = extract_plain_text(etree.tostring(tree, encoding="unicode"), main_content=True,
                                  preserve_formatting=True, list_bullets=True)
        return {"text": bbcode_math(text or ""), "math_formulas": n_math, "method": "resiliparse"}
    import trafilatura

    in_page = count_formulas(visible_text(tree)) if opts["math_fallback"] and (hint or TEX_HINT.search(html)) else 0
    if opts.get("deduplicate"):  # trafilatura counts repeated segments in a module-level LRU kept from page to page:
        from trafilatura.deduplication import LRU_TEST  # a page's text must not depend on the pages before it

        LRU_TEST.clear()
    text = trafilatura.extract(tree, url=url, output_format=opts["output_format"], include_tables=True,
                               include_comments=opts["include_comments"], favor_precision=opts.get("favor_precision",
                                                                                                    False),
                               deduplicate=opts.get("deduplicate", False)) or ""
    method = "trafilatura"
    ours = count_formulas(text) if in_page else 0
    formulas_checked = bool(in_page and ours < 0.8 * in_page)
    if formulas_checked:  # trafilatura left formulas out: try the whole article (a fresh tree,
        fresh = load_html(html)           # since trafilatura pruned the first; this costs a second parse)
        mark_math(fresh)
        base = trafilatura.baseline(fresh)[1] or ""
        theirs = count_formulas(base)
        if theirs >= 1.25 * ours and theirs >= ours + 3:
            text, method = base, "trafilatura_baseline"
    ours = prose_chars(text) if opts.get("prose_fallback") else 0
    # (not where the formulas already chose between the two: on physicsforums_2 the prose rule took the baseline
    # the formula count had refused, and the page's formula recall fell from 0.67 to 0)
    if opts.get("prose_fallback") and not formulas_checked and ours < LIST_SHARE * len(text):
        # trafilatura's text is a list or a table; if it also holds almost none of the page's sentences (a ranking
        # sidebar on 29 of 29 product pages of a Japanese shop), its whole-article baseline wins when that holds
        # clearly more prose. The page's prose is read here, on a fresh parse (trafilatura pruned the first), so
        # that the pages whose text is prose — nearly all — pay nothing for the rule.
        fresh = load_html(html)
        if opts["math"] and hint:
            mark_math(fresh)
        if ours < PROSE_SHARE * prose_chars(visible_text(fresh, "\n")):
            base = trafilatura.baseline(fresh)[1] or ""
            theirs = prose_chars(base)
            if theirs >= 2 * ours and theirs >= ours + 100:
                text, method = base, "trafilatura_baseline"
    return {"text": bbcode_math(text), "math_formulas": n_math, "method": method}
