"""MinHash signatures per second on one core, shingling included: ours vs datasketch's fastest path
(``MinHash.bulk``) vs rensa, on the same real documents, in one run; checks ours equal datasketch's.

Samples (each document cut to ~2 KB, as in the issue's reference figures): prose = the main text of the pages in
../shared/data/html (extracted with trafilatura), code = files of ../shared/data/python/python_corpus.parquet.
128 permutations, 5-word shingles of lowercased text (code: 5-token shingles), seed 1. Every side starts from the
raw text: tokenising and shingling are timed. rensa's signatures are not datasketch's (another hash), so only
its speed is compared. Ours is the C kernel (SHA-NI where the CPU has it) unless SWALLOW_MINHASH_KERNEL=numba or
python picks a fallback; the kernel in use is printed. The first call of each side (imports, numba's compile if
numba runs, datasketch's permutation setup) is timed apart as its start-up.

    python benchmarks/bench_minhash.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prose_docs() -> list[str]:
    import trafilatura

    from stages.ingest.warc import decode_html
    from tests.conftest import html_pages

    out = []
    for _, raw in html_pages():
        text = trafilatura.extract(decode_html(raw, None)[0] or "") or ""
        if len(text) >= 2000:
            out.append(text[:2000])
    return out


def code_docs() -> list[str]:
    import pyarrow.parquet as pq

    from tests.conftest import CORPUS

    return [t[:2000] for t in pq.read_table(CORPUS, columns=["content"]).column("content").to_pylist()
            if len(t) >= 2000][:3000]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--num-perm", type=int, default=128)
    a = ap.parse_args()
    os.sched_setaffinity(0, {0})
    t0 = time.perf_counter()
    from stages.dedup.minhash import MinhashDedup
    from stages.dedup.minhash_kernels import kernel

    MinhashDedup(shingle="words", num_perm=a.num_perm, seed=1, bands=1, rows=1).signatures(["a b c d e f"])
    start = {"ours": time.perf_counter() - t0}
    t0 = time.perf_counter()
    from datasketch import MinHash

    MinHash.bulk([[b"a b c d e"]], num_perm=a.num_perm, seed=1)
    start["datasketch bulk"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from rensa import RMinHash

    RMinHash(num_perm=a.num_perm, seed=1).update(["a"])
    start["rensa"] = time.perf_counter() - t0

    samples = {"prose (2 KB)": ("words", prose_docs()), "code (2 KB)": ("code", code_docs())}
    print(f"one core, {a.num_perm} permutations, 5-shingles, our kernel: {kernel()}; "
          + ", ".join(f"{k}: {len(v[1])} documents" for k, v in samples.items()))
    print("start-up (import + first signature): " + ", ".join(f"{k} {v:.2f} s" for k, v in start.items()))
    for name, (kind, docs) in samples.items():
        stage = MinhashDedup(shingle=kind, num_perm=a.num_perm, seed=1, bands=1, rows=1)
        stage.signatures(docs[:2])  # warm (numba's compile, if numba runs, is in the start-up above)
        times = {"ours": [], "datasketch bulk": [], "rensa": []}
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            ours, _ = stage.signatures(docs)
            times["ours"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref = MinHash.bulk([stage.shingles(t) for t in docs], num_perm=a.num_perm, seed=1)
            times["datasketch bulk"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for t in docs:
                m = RMinHash(num_perm=a.num_perm, seed=1)
                m.update([s.decode() for s in stage.shingles(t)])
                m.digest()
            times["rensa"].append(time.perf_counter() - t0)
        same = sum(np.array_equal(r.hashvalues, o) for r, o in zip(ref, ours))
        best = {k: min(v) for k, v in times.items()}
        print(f"\n== {name}: {len(docs)} documents, best of {a.rounds} (median), identical to datasketch: "
              f"{same}/{len(docs)}")
        for k, v in times.items():
            print(f"  {k:<16} {len(docs) / best[k]:9.0f} docs/s  ({len(docs) / statistics.median(v):9.0f} median)")
        print(f"  ours / datasketch bulk: {best['datasketch bulk'] / best['ours']:.1f}x;  ours / rensa: "
              f"{best['rensa'] / best['ours']:.1f}x")


if __name__ == "__main__":
    main()
