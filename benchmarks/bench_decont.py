"""Decontamination throughput beside the syntax filter on the same rows (issue 22: ≥ 0.8 of its speed), one core.

decontaminate: HumanEval (164 items) as code token 13-grams plus the near-copy MinHash check (256 permutations,
               5-token shingles) on every row, index built in ``setup`` (timed: a worker pays it once)
syntax:        ``syntax_filter`` (CPython's ``compile``)
Samples: the real Python corpus (6,771 files), its first 500 files (fixed costs show), and 3 copies of the corpus.
Alternating rounds; prints rows/s and the ratio per sample.

    python benchmarks/bench_decont.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "data" / "python" / "python_corpus.parquet"


def timed(make, table: pa.Table, batch: int = 512) -> float:
    t0 = time.perf_counter()
    stage = make()
    stage.setup()
    for i in range(0, len(table), batch):
        stage.process(table.slice(i, batch))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    from stages.decont.stage import Decontaminate
    from stages.filters.syntax import SyntaxFilter

    os.sched_setaffinity(0, {0})
    texts = pq.read_table(CORPUS).column("content").to_pylist()
    samples = {"corpus 500": texts[:500], "corpus 6,771": texts, "corpus x3": texts * 3}
    sides = {"decontaminate": lambda: Decontaminate(name="d", benchmarks=[{"recipe": "humaneval"}], tokens="code",
                                                    near_copy=True),
             "syntax_filter": lambda: SyntaxFilter(name="s")}
    print(f"one core of {os.cpu_count()}; {os.uname().nodename}")
    print("| sample | rows | MB | decontaminate rows/s | syntax_filter rows/s | ratio (median) | min / max ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rows in samples.items():
        table = pa.table({"id": [str(i) for i in range(len(rows))], "text": rows,
                          "language": ["python"] * len(rows)})
        times: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(a.rounds):
            for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                times[k].append(timed(sides[k], table))
        ratios = [s / d for d, s in zip(times["decontaminate"], times["syntax_filter"])]
        d, s = statistics.median(times["decontaminate"]), statistics.median(times["syntax_filter"])
        mb = sum(len(t) for t in rows) / 1e6
        print(f"| {name} | {len(rows):,} | {mb:.1f} | {len(rows) / d:,.0f} | {len(rows) / s:,.0f} | "
              f"{statistics.median(ratios):.2f} | {min(ratios):.2f} / {max(ratios):.2f} |")


if __name__ == "__main__":
    main()
