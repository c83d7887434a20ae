"""The Japanese pre-filter before extraction (issue 21): how much extraction it spares on a mixed crawl, and which
Japanese pages it loses, measured against language ID after full extraction, in one run.

full:       extract (trafilatura, its worker process) + language_id on every HTML page
prefilter:  language_prefilter (``<html lang>``/Content-Language, else the ``<title>`` through fastText) first, then
            extract + language_id on the pages it passes

A page is Japanese when language ID after full extraction labels it ``ja`` (any score). Two samples, both read by
our WARC source (the reading is not timed, the same for both sides): every WARC file in ../shared/data/warc (the
29 EUC-JP pages of the ClueWeb file among the 177 HTML responses), and the loose HTML pages of ../shared/data/html
(115; trafilatura's evaluation set is a tarball) packed into one WARC (the 43 Japanese ones among them). Sides
alternate; one core each (the extraction worker inherits it).

    python benchmarks/bench_ja_prefilter.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
LID = str(SHARED / "fasttext" / "lid.176.ftz")


def read(paths: list[str]) -> pa.Table:
    from stages.ingest.warc import WarcSource

    src = WarcSource(paths=paths)
    rows = []
    for spec in src.plan():
        for t in src.read(spec):
            if not isinstance(t, dict):
                rows += [{"id": r["id"], "html": r["html"], "url": r["url"], "text": None} for r in t.to_pylist()
                         if r["reason"] is None and r["html"]]
    return pa.Table.from_pylist(rows)


def extracted(table: pa.Table, ext, size: int = 64):
    """Per batch of ``size`` pages: (the pages extraction kept, with its columns; the ids it rejected)."""
    for i in range(0, len(table), size):
        batch = table.slice(i, size)
        v = ext.process(batch)
        cols = {n: batch.column(n) for n in batch.column_names if n not in v.columns}
        batch = pa.table({**cols, **v.columns})
        yield (batch.filter(pa.array([r is None for r in v.reasons])),
               [k for k, r in zip(batch.column("id").to_pylist(), v.reasons) if r is not None])


def extract_and_identify(table: pa.Table, ext, lid) -> dict[str, str | None]:
    """id -> the language ID label after extraction (None where extraction gave nothing)."""
    out: dict[str, str | None] = {}
    for kept, rejected in extracted(table, ext):
        langs = lid.process(kept).columns["language"].to_pylist() if len(kept) else []
        out.update(zip(kept.column("id").to_pylist(), langs))
        out.update((k, None) for k in rejected)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    from pipeline.tiny import html_warc
    from stages.extract.html import Extract
    from stages.extract.langid import LanguageId
    from stages.extract.language_prefilter import LanguagePrefilter

    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp())
    samples = {"warc (7 files)": read([str(SHARED / "warc")]),
               "html (loose pages) as a WARC": read([str(html_warc(SHARED / "html", tmp / "html500.warc.gz"))])}
    ext, lid = Extract(name="extract", math=False), LanguageId(name="lid", model=LID, languages=[], min_score=0)
    pre = LanguagePrefilter(name="pre", model=LID)
    for s in (ext, lid, pre):
        s.setup()
    ext._box.call("<html><body><p>warm</p></body></html>", None, timeout_s=60)  # the worker's start, not timed
    print("one core; machine:", os.uname().nodename, os.cpu_count(), "cores")
    print("| sample | pages | Japanese (ID after extraction) | passed by the prefilter | Japanese lost | "
          "full s | prefilter s (prefilter alone) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, table in samples.items():
        full_t, pre_t, alone_t = [], [], []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            langs = extract_and_identify(table, ext, lid)
            full_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            v = pre.process(table)
            alone_t.append(time.perf_counter() - t0)
            passed = table.filter(pa.array([r is None for r in v.reasons]))
            extract_and_identify(passed, ext, lid)
            pre_t.append(time.perf_counter() - t0)
        ja = {k for k, lang in langs.items() if lang == "ja"}
        kept = set(passed.column("id").to_pylist())
        lost = sorted(ja - kept)
        full, fast = statistics.median(full_t), statistics.median(pre_t)
        print(f"| {name} | {len(table):,} | {len(ja)} | {len(kept)} | {len(lost)} | {full:.1f} | {fast:.2f} "
              f"({statistics.median(alone_t):.2f}) | {full / fast:.1f}× |")
        ids = table.column("id").to_pylist()
        for k in lost:
            i = ids.index(k)
            print(f"    lost: {table.column('url')[i].as_py()} — {v.details[i]}")
        for k in sorted(kept - ja):
            i = ids.index(k)
            print(f"    passed but not Japanese after extraction ({langs.get(k)}): {table.column('url')[i].as_py()} — "
                  f"declared {v.columns['declared_language'][i].as_py()}, title "
                  f"{v.columns['title_language'][i].as_py()}")
    ext.teardown()


if __name__ == "__main__":
    main()
