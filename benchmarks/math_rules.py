"""What the web rule filters do to math pages, with datatrove's defaults and with the math-aware settings.

The math pages of ../shared/data/html/math (benchmark pages, test assets, misc) are extracted with our extract
function; each rule stage runs on them twice (default, ``math_aware: true``, and for C4 also without the ``{``
rule) and the share kept is printed, with the reasons of the rejections.

    python benchmarks/math_rules.py
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from stages.extract.page import extract_page, setup_worker
    from stages.filters.c4 import C4Filter
    from stages.filters.fineweb import FineWebFilter
    from stages.filters.gopher import GopherQuality, GopherRepetition
    from stages.filters.math_score import measure
    from stages.ingest.warc import decode_html
    from tests.conftest import html_pages

    setup_worker({"extractor": "trafilatura", "math": True, "math_fallback": True, "output_format": "txt",
                  "include_comments": True})
    texts = []
    for name, raw in html_pages():
        if not name.startswith("math/"):
            continue
        out = extract_page(decode_html(raw, None)[0], None)
        if (out["text"] or "").strip() and measure(out["text"], out["math_formulas"])["math_score"] >= 0.5:
            texts.append(out["text"])
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    print(f"{len(texts)} math pages (math_score >= 0.5) from ../shared/data/html/math\n")
    print(f"{'stage':<20} {'setting':<28} {'kept':>6}  rejections")
    cases = [("gopher_quality", "default", GopherQuality()), ("gopher_quality", "math_aware", GopherQuality(math_aware=True)),  # noqa: E501
             ("gopher_repetition", "default", GopherRepetition()),
             ("gopher_repetition", "math_aware", GopherRepetition(math_aware=True)),
             ("c4_filter", "default", C4Filter()), ("c4_filter", "math_aware", C4Filter(math_aware=True)),
             ("c4_filter", "no { rule", C4Filter(filter_curly_bracket=False)),
             ("fineweb_filter", "default", FineWebFilter()), ("fineweb_filter", "math_aware", FineWebFilter(math_aware=True))]  # noqa: E501
    for stage, setting, s in cases:
        reasons = s.process(table).reasons
        kept = sum(r is None for r in reasons)
        top = collections.Counter(r for r in reasons if r).most_common(3)
        print(f"{stage:<20} {setting:<28} {kept / len(texts):6.0%}  {', '.join(f'{r} {n}' for r, n in top)}")


if __name__ == "__main__":
    main()
