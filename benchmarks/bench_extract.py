"""Extraction throughput on one core: our web path vs a bare ``trafilatura.extract`` loop, same records, one run.

ours:  the warc source reading the files + the ``extract`` stage (math pre-pass, trafilatura, the math fallback,
       in its time-limited worker process) + ``language_id`` (fastText lid.176), batch by batch as a worker runs them
bare:  for each HTML response record of the same files (already read and decoded, not timed), trafilatura.extract
resiliparse: ours with ``extractor: resiliparse``

Two samples: the HTML responses of every WARC file in ../shared/data/warc, and the 500 HTML pages of
../shared/data/html wrapped as records. Also prints the math recall of the 22 math benchmark pages per page, and
the with/without precision/recall on trafilatura's evaluation set (ours vs bare). Single-process, one core each.

    python benchmarks/bench_extract.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def warc_records() -> tuple[list[str], list[str]]:
    from stages.ingest.warc import WarcSource

    src = WarcSource(paths=[str(SHARED / "warc")])
    htmls, urls = [], []
    for spec in src.plan():
        for t in src.read(spec):
            if isinstance(t, dict):
                continue
            for r in t.to_pylist():
                if r["reason"] is None and r["html"]:
                    htmls.append(r["html"])
                    urls.append(r["url"])
    return htmls, urls


def html_records() -> tuple[list[str], list[str]]:
    from stages.ingest.warc import decode_html
    from tests.conftest import html_pages

    htmls = []
    for _, raw in html_pages():
        html, _ = decode_html(raw, None)
        htmls.append(html or raw.decode("utf-8", "replace"))
    return htmls, [None] * len(htmls)


def run_ours(htmls, urls, extractor: str, read_warcs: bool) -> float:
    from stages.extract.html import Extract
    from stages.extract.langid import LanguageId

    ext = Extract(extractor=extractor)
    lid = LanguageId(model=str(SHARED / "fasttext" / "lid.176.ftz"), languages=[])
    ext.setup()
    lid.setup()
    ext._box.call("<html><body><p>warm</p></body></html>", None, timeout_s=60)  # the worker's start, not timed
    try:
        t0 = time.perf_counter()
        if read_warcs:  # the reading is part of our path
            htmls, urls = warc_records()
        for i in range(0, len(htmls), 64):
            batch = pa.table({"id": [str(j) for j in range(i, i + len(htmls[i:i + 64]))], "html": htmls[i:i + 64],
                              "text": [None] * len(htmls[i:i + 64]), "url": urls[i:i + 64]})
            v = ext.process(batch)
            batch = batch.set_column(batch.column_names.index("text"), "text", v.columns["text"])
            lid.process(batch.filter(pa.array([r is None for r in v.reasons])))
        return time.perf_counter() - t0
    finally:
        ext.teardown()


def run_bare(htmls, urls) -> float:
    import trafilatura

    t0 = time.perf_counter()
    for html, url in zip(htmls, urls):
        trafilatura.extract(html, url=url)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    import os

    os.sched_setaffinity(0, {0})  # one core for every side (the worker process inherits it)
    samples = {"warc": warc_records(), "html500": html_records()}
    print(f"one core; samples: {', '.join(f'{k} {len(v[0])} pages' for k, v in samples.items())}")
    for name, (htmls, urls) in samples.items():
        times = {"bare": [], "ours": [], "resiliparse": []}
        for _ in range(a.rounds):
            times["bare"].append(run_bare(htmls, urls))
            times["ours"].append(run_ours(htmls, urls, "trafilatura", read_warcs=name == "warc"))
            times["resiliparse"].append(run_ours(htmls, urls, "resiliparse", read_warcs=name == "warc"))
        n = len(htmls)
        best = {k: min(v) for k, v in times.items()}
        print(f"\n== {name}: {n} pages, best of {a.rounds} (median)")
        for k, v in times.items():
            print(f"  {k:<12} {n / best[k]:7.1f} pages/s   ({statistics.median(v):.2f} s median, {best[k]:.2f} s best)")
        print(f"  ratio ours/bare: {best['bare'] / best['ours']:.3f} (median "
              f"{statistics.median(times['bare']) / statistics.median(times['ours']):.3f});"
              f" resiliparse/bare: {best['bare'] / best['resiliparse']:.2f}")
    quality()


def quality() -> None:
    import trafilatura

    from benchmarks import extract_quality, math_recall
    from stages.extract.page import extract_page, setup_worker
    from stages.ingest.warc import decode_html

    print("\n== math recall (22 pages of webkit_bench)")
    results = {}
    for extractor in ("trafilatura", "resiliparse"):
        setup_worker({"extractor": extractor, "math": True, "math_fallback": True, "output_format": "txt",
                      "include_comments": True})
        results[extractor] = [math_recall.recall(extract_page(p.read_bytes().decode("utf-8", "replace"), None)["text"]
                                                 or "", f) for _, p, f in math_recall.pages()]
    bare = [math_recall.recall(trafilatura.extract(p.read_bytes().decode("utf-8", "replace")) or "", f)
            for _, p, f in math_recall.pages()]
    print(f"  {'page':<28} {'ours':>9} {'resiliparse':>12} {'bare trafilatura':>17}")
    for (name, _, _), o, r, b in zip(math_recall.pages(), results["trafilatura"], results["resiliparse"], bare):
        print(f"  {name:<28} {o[0]:>4}/{o[1]:<4} {r[0] / r[1]:>12.2f} {b[0] / b[1]:>17.2f}")
    for label, vals in (("ours", results["trafilatura"]), ("resiliparse", results["resiliparse"]), ("bare", bare)):
        print(f"  macro {label}: {sum(f / n for f, n in vals) / len(vals):.3f}")
    setup_worker({"extractor": "trafilatura", "math": True, "math_fallback": True, "output_format": "txt",
                  "include_comments": True})
    ours = extract_quality.score(lambda raw, url: extract_page(decode_html(raw, None)[0], url)["text"])
    base = extract_quality.score(lambda raw, url: trafilatura.extract(decode_html(raw, None)[0], url=url))
    print("\n== trafilatura_eval_300: with/without snippets")
    for label, s in (("ours", ours), ("bare", base)):
        print(f"  {label:<5} precision {s['precision']:.3f} recall {s['recall']:.3f} F1 {s['f1']:.3f}")


if __name__ == "__main__":
    main()
