"""The math pre-filter before extraction (issue 45): what it keeps of what the full math path keeps, and how much
extraction it spares on general crawls, in one run.

full:       extract (trafilatura + the math pre-pass, its worker process) + math_score (min_score 0.5, the math
            recipes' threshold) on every HTML page
prefilter:  math_prefilter on the raw HTML first, then extract + math_score on the pages it passes

Samples, each read by our WARC source (the reading is not timed, the same for both sides): the 38 math pages of
../shared/data/html/math packed into a WARC; general pages: every WARC file of ../shared/data/warc (177 HTML
responses), trafilatura's evaluation set (300 pages, from its tarball), Readability's test pages (130) and the
benchmark's non-math pages (31). Goals: keeps >= 0.98 of the pages the full path keeps; skips extraction for
>= 80 % of a general crawl's pages. Sides alternate; one core each (the extraction worker inherits it).

    python benchmarks/bench_math_prefilter.py [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from benchmarks.bench_ja_prefilter import extracted, read  # noqa: E402  (the same WARC reading and extraction)


def samples(tmp: Path) -> dict[str, pa.Table]:
    from pipeline.tiny import html_warc

    out = {"math pages (html/math)": read([str(html_warc(SHARED / "html" / "math", tmp / "math.warc.gz"))]),
           "WARC files (7)": read([str(SHARED / "warc")])}
    for name, tarball in (("trafilatura eval (300)", "trafilatura_eval_300.tar.gz"),
                          ("readability pages (130)", "readability_test_pages.tar.gz")):
        folder = tmp / tarball.split(".")[0]
        with tarfile.open(SHARED / "html" / "general" / tarball) as tf:
            tf.extractall(folder, filter="data")
        for p in folder.rglob("expected.html"):
            p.unlink()  # Readability's expected output: not a page of the crawl
        for p in folder.rglob("*.htm"):
            p.rename(p.with_suffix(".html"))
        out[name] = read([str(html_warc(folder, tmp / f"{folder.name}.warc.gz"))])
    out["non-math bench pages (31)"] = read([str(html_warc(SHARED / "html" / "general" / "webkit_bench_nonmath",
                                                           tmp / "nonmath.warc.gz"))])
    return out


def full_path(table: pa.Table, ext, score) -> set[str]:
    """ids the full math path keeps (extracted, then math_score >= its threshold)."""
    kept: set[str] = set()
    for ok, _ in extracted(table, ext):
        if len(ok):
            s = score.process(ok)
            kept.update(k for k, r in zip(ok.column("id").to_pylist(), s.reasons) if r is None)
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    from stages.extract.html import Extract
    from stages.extract.math_prefilter import MathPrefilter
    from stages.filters.math_score import MathScore

    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp())
    data = samples(tmp)
    ext, score, pre = Extract(name="extract", timeout_s=30), MathScore(name="math", min_score=0.5), \
        MathPrefilter(name="pre")
    for s in (ext, score, pre):
        s.setup()
    ext._box.call("<html><body><p>warm</p></body></html>", None, timeout_s=60)  # the worker's start, not timed
    print("one core; machine:", os.uname().nodename, os.cpu_count(), "cores;", time.strftime("%Y-%m-%d"))
    print("| sample | pages | kept by the full path | of them kept by the prefilter | pages the prefilter "
          "skips | full s | prefilter path s (prefilter alone) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    total = {"math": 0, "kept": 0, "general": 0, "skipped": 0}
    for name, table in data.items():
        full_t, pre_t, alone_t = [], [], []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            kept_full = full_path(table, ext, score)
            full_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            v = pre.process(table)
            alone_t.append(time.perf_counter() - t0)
            passed = table.filter(pa.array([r is None for r in v.reasons]))
            kept_pre = full_path(passed, ext, score)
            pre_t.append(time.perf_counter() - t0)
        skipped = sum(r is not None for r in v.reasons)
        total["math"] += len(kept_full)
        total["kept"] += len(kept_full & kept_pre)
        if not name.startswith("math"):
            total["general"] += len(table)
            total["skipped"] += skipped
        full, fast = statistics.median(full_t), statistics.median(pre_t)
        print(f"| {name} | {len(table):,} | {len(kept_full)} | {len(kept_full & kept_pre)} | {skipped} "
              f"({skipped / max(1, len(table)):.0%}) | {full:.1f} | {fast:.2f} ({statistics.median(alone_t):.2f}) | "
              f"{full / fast:.1f}× |")
        ids = table.column("id").to_pylist()
        for k in sorted(kept_full - kept_pre):
            i = ids.index(k)
            print(f"    lost: {table.column('url')[i].as_py()}")
    print(f"\nkept of the full path's math pages: {total['kept']}/{total['math']} "
          f"({total['kept'] / max(1, total['math']):.3f}; goal >= 0.98); general pages skipped: "
          f"{total['skipped']}/{total['general']} ({total['skipped'] / max(1, total['general']):.3f}; goal >= 0.80)")
    ext.teardown()


if __name__ == "__main__":
    main()
