"""The math pre-filter before extraction: what counts as math in raw HTML, and no page the full math path keeps is
lost on the real math pages, while most general pages are never extracted."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stages.extract.math_prefilter import MathPrefilter, count_symbols, markers

PAGES = {  # page -> the evidence found first (None: skipped)
    "<html><head><script src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js'></script></head>"
    "<body>When $a \\ne 0$, ...</body></html>": "markup:mathjax",
    "<html><body><span class='katex'>x</span></body></html>": "markup:katex",
    "<html><body><math xmlns='http://www.w3.org/1998/Math/MathML'><mi>x</mi></math></body></html>": "markup:mathml",
    "<p>Then \\frac{a}{b} is the ratio.</p>": "command",
    "<p>$$ x = y $$</p>": "display_dollars",
    "<p>so $x^2 + y_1$ grows</p>": "tex_span",
    "<p>a ≤ b, b ≠ c, ∑ x, √y, ∫ f, x ∈ A</p>": "symbols",
    "<p>a &le; b &ne; c &sum; &radic; &int; &#8712; A</p>": "symbols",
    # not math: JavaScript's Math, a shop's "20×30", a back-link arrow, prices, jQuery, a JS regex with \\(
    "<script>var n = Math.floor(Math.max(a, b)); $('#x').hide(); /\\(d+\\)/.test(s)</script>"
    "<p>Frame 20×30 cm ↑ top — only $5 or $60 million</p>": None,
    "<p>Ordinary text &amp; entities &quot;quoted&quot; &#8217;s</p>": None,
}


@pytest.mark.fast
def test_evidence_in_the_html():
    for page, want in PAGES.items():
        assert markers(page) == want, page
    assert count_symbols("𝛁 ≤ &le; &#x2211; &#8721; ×", 99) == 6  # astral, BMP, named, hex and decimal references
    assert count_symbols("≤" * 100, 6) == 6  # counted only up to what decides
    assert markers("≤ ≥ ≠", min_symbols=2) == "symbols" and markers("≤ ≥ ≠") is None


@pytest.mark.fast
def test_the_symbol_set_is_every_math_symbol():
    import sys
    import unicodedata

    from stages.extract.math_prefilter import _SM

    full = "".join(chr(c) for c in range(128, sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Sm")
    assert _SM == full and len(full) > 900


@pytest.mark.fast
def test_every_row_a_verdict():
    stage = MathPrefilter(name="pre")
    pages = list(PAGES) + ["", None]
    v = stage.process(pa.table({"id": [str(i) for i in range(len(pages))], "html": pa.array(pages, pa.string())}))
    assert v.reasons == [None] * 8 + ["prefilter_no_math"] * 2 + ["no_html"] * 2
    assert v.columns["math_markers"].to_pylist()[:8] == list(PAGES.values())[:8]
    # evidence beyond max_chars is not read: the bound on a row's work
    late = "x" * 5000 + "\\frac{1}{2}"
    assert MathPrefilter(name="p", max_chars=4096).process(pa.table({"id": ["a"], "html": [late]})).reasons == \
        ["prefilter_no_math"]


@pytest.mark.shared_data
def test_no_page_the_full_math_path_keeps_is_lost_and_most_general_pages_skip_extraction(tmp_path):
    """The 39 math pages of html/math and the 177 HTML responses of the real WARC files: every page that extraction
    + math_score (0.5) keeps passes the pre-filter; of the WARC files' general pages most are never extracted."""
    from benchmarks.bench_ja_prefilter import read
    from benchmarks.bench_math_prefilter import full_path
    from pipeline.tiny import html_warc
    from stages.extract.html import Extract
    from stages.filters.math_score import MathScore
    from tests.conftest import HTML, WARC

    ext, score, pre = Extract(name="extract", timeout_s=30), MathScore(name="math", min_score=0.5), \
        MathPrefilter(name="pre")
    ext.setup()
    try:
        for table, least_skipped in ((read([str(html_warc(HTML / "math", tmp_path / "m.warc.gz"))]), 0.0),
                                     (read([str(WARC)]), 0.7)):
            kept = full_path(table, ext, score)
            v = pre.process(table)
            passed = {k for k, r in zip(table.column("id").to_pylist(), v.reasons) if r is None}
            assert kept <= passed, sorted(kept - passed)
            assert (len(table) - len(passed)) / len(table) >= least_skipped
        assert len(kept) >= 1 and len(table) == 177
    finally:
        ext.teardown()
