"""What keeping formulas costs per page (issue 25): the extraction with ``math: true`` (the pre-pass that turns
MathJax/KaTeX/MathML/images/AsciiMath into LaTeX, and the whole-article fallback where trafilatura dropped
formulas) beside ``math: false``, on pages with math and on pages without, one core, one process.

Pages: the 500 real HTML pages of ../shared/data/html (trafilatura's evaluation set, readability's test pages, the
math benchmark pages) and the 177 HTML responses of the WARC files in ../shared/data/warc. A page "has math" when the
math-on extraction marked a formula in it. Each page is extracted with both settings in alternating rounds; a page's
time is its best round (CPU time of this process: the extraction function itself, without the sandbox's pipe).

    python benchmarks/bench_math_cost.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OFF = {"extractor": "trafilatura", "math": False, "math_fallback": False, "output_format": "txt",
       "include_comments": False, "prose_fallback": True}
ON = {**OFF, "math": True, "math_fallback": True}


def pages() -> list[tuple[str, str, str | None]]:
    from benchmarks.bench_extract import html_records, warc_records

    out = []
    for sample, (htmls, urls) in (("html", html_records()), ("warc", warc_records())):
        out += [(sample, h, u) for h, u in zip(htmls, urls)]
    return out


def timed(opts: dict, items: list[tuple[str, str, str | None]]) -> tuple[list[float], list[dict]]:
    from stages.extract.page import extract_page, setup_worker

    setup_worker(opts)
    extract_page("<html><body><p>warm up</p></body></html>", None)
    times, results = [], []
    for _, html, url in items:
        t0 = time.process_time()
        results.append(extract_page(html, url))
        times.append(time.process_time() - t0)
    return times, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    os.sched_setaffinity(0, {0})
    items = pages()
    best = {"off": [float("inf")] * len(items), "on": [float("inf")] * len(items)}
    math_on = None
    for r in range(a.rounds):
        for side in (("off", "on") if r % 2 == 0 else ("on", "off")):
            times, results = timed(OFF if side == "off" else ON, items)
            best[side] = [min(x, y) for x, y in zip(best[side], times)]
            if side == "on":
                math_on = results
    has_math = [bool(res.get("math_formulas")) for res in math_on]
    print(f"one core, {len(items)} pages, best of {a.rounds} rounds per page; ms of CPU per page\n")
    print("| pages | n | math: false | math: true | ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, pick in (("with math (formulas marked)", lambda i: has_math[i]),
                        ("without math", lambda i: not has_math[i]), ("all", lambda i: True)):
        idx = [i for i in range(len(items)) if pick(i)]
        off = sum(best["off"][i] for i in idx) / max(len(idx), 1) * 1000
        on = sum(best["on"][i] for i in idx) / max(len(idx), 1) * 1000
        print(f"| {label} | {len(idx)} | {off:.1f} | {on:.1f} | {on / off if off else float('nan'):.2f} |")
    for sample in ("html", "warc"):
        idx = [i for i, (s, _, _) in enumerate(items) if s == sample]
        off = sum(best["off"][i] for i in idx)
        on = sum(best["on"][i] for i in idx)
        print(f"\n{sample}: {len(idx)} pages, {sum(has_math[i] for i in idx)} with math; total {off:.2f} s off, "
              f"{on:.2f} s on ({on / off:.2f}x)")


if __name__ == "__main__":
    main()
