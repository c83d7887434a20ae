"""Lint filter, end to end: ``swallow lint_filter`` (a fresh process: Ray start, ingest, the stage, shutdown) vs
one ``python -m pylint`` process per file with the same options (what the original SwallowCode scripts do), on
the same real files, both with as many files in flight as CPUs. Checks that both give the same scores.

Two samples from ``../shared/data/python/python_corpus.parquet``: the first 300 files that compile (< 40 KB),
and 150 files drawn at random (fixed seed) from the other files that compile, so that no sample was chosen by
looking at its speed. Short runs show the fixed costs (Ray start, each worker's warm-up) that long runs hide.

The machine is a noisy shared VM: with ``--rounds N`` both sides run N times, interleaved, and the speedup is
taken from each side's best (minimum) time, as ``timeit`` does; medians are printed too.

    python benchmarks/bench_lint.py [--samples first300,random150] [--rounds 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "data" / "python" / "python_corpus.parquet"


def compiles(src: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(src, "<x>", "exec")
        return True
    except Exception:  # noqa: BLE001
        return False


def samples() -> dict[str, list[dict]]:
    rows = pq.read_table(CORPUS).to_pylist()
    good = [r for r in rows if r["content"].strip() and compiles(r["content"]) and len(r["content"]) < 40_000]
    first = good[:300]
    rest = good[300:]
    return {"first300": first, "random150": random.Random(20261123).sample(rest, 150)}


def cli_score(args) -> float:
    """The baseline: one ``python -m pylint`` per file, in an empty folder of its own, in the same lint environment
    as the stage (the standard library and pylint's own packages, an explicit empty rcfile): same scores."""
    from stages.filters.lint.isolation import cli_command, lint_env
    from stages.filters.lint.score import SWALLOWCODE_DISABLE, module_name, pylint_args

    name, text, tmp, rcfile, pylib = args
    d = Path(tmp) / name
    d.mkdir()
    p = d / f"{module_name(text)}.py"
    p.write_text(text, encoding="utf-8")
    out = subprocess.run([*cli_command(pylib), *pylint_args(SWALLOWCODE_DISABLE, rcfile), str(p)],
                         capture_output=True, text=True, cwd=d, env=lint_env(str(d))).stdout
    m = re.search(r"rated at (-?[\d.]+)/10", out)
    return float(m.group(1)) if m else 0.0


def run_ours(src: Path, out: Path, workers: int) -> tuple[float, dict[str, float]]:
    """The whole command a user types, timed from process start to exit."""
    swallow = Path(sys.executable).with_name("swallow")
    t0 = time.perf_counter()
    proc = subprocess.run([str(swallow), "lint_filter", "--input", str(src), "--output", str(out), "--no-progress",
                           "--ray-cpus", str(workers), "--set", "source.shard_bytes=40000"],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"swallow lint_filter failed:\n{proc.stderr[-3000:]}")
    stage = out / "stages" / "01-lint_filter"
    table = pa.concat_tables([pq.read_table(f, columns=["blob_id", "pylint_score"])
                              for part in ("kept", "rejected") for f in (stage / part).glob("*.parquet")])
    return elapsed, dict(zip(table.column("blob_id").to_pylist(), table.column("pylint_score").to_pylist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", default="first300,random150")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=1, help="times each side runs, interleaved; best time counts")
    a = ap.parse_args()
    all_samples = samples()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {a.workers} files in flight "
          f"each side, Python {sys.version.split()[0]}")
    summary = []
    for name in a.samples.split(","):
        picked = all_samples[name]
        print(f"\n== {name}: {len(picked)} real files, {sum(len(r['content']) for r in picked) / 1e6:.2f} MB")
        ours_t, base_t, agree = [], [], []
        for rnd in range(a.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                rows = [dict(r, blob_id=f"{name}-{i}", path=f"f{i}.py") for i, r in enumerate(picked)]
                src = tmp / "input.parquet"
                pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=16)
                elapsed, ours = run_ours(src, tmp / "run", a.workers)
                ours_t.append(elapsed)
                rcfile = tmp / "empty-pylintrc"
                rcfile.write_text("")
                from stages.filters.lint.isolation import pylint_library

                pylib = pylint_library(str(tmp / "pylib"))
                base_dir = tmp / "baseline"
                base_dir.mkdir()
                t0 = time.perf_counter()
                with ThreadPoolExecutor(a.workers) as pool:
                    base = list(pool.map(cli_score, [(r["blob_id"], r["content"], base_dir, rcfile, pylib)
                                                     for r in rows]))
                base_t.append(time.perf_counter() - t0)
                diff = [(r["blob_id"], r["repo"] + "/" + picked[i]["path"], ours.get(r["blob_id"]), b)
                        for i, (r, b) in enumerate(zip(rows, base)) if (ours.get(r["blob_id"]) or 0.0) != b]
                agree.append(len(rows) - len(diff))
                print(f"round {rnd + 1}: ours {ours_t[-1]:6.1f} s   baseline {base_t[-1]:6.1f} s   "
                      f"ratio {base_t[-1] / ours_t[-1]:5.2f}x   identical scores {agree[-1]}/{len(rows)}", flush=True)
                for d in diff:
                    print(f"  differs: {d[0]} {d[1]} ours {d[2]} cli {d[3]}")
                shutil.rmtree(base_dir, ignore_errors=True)
        best = min(base_t) / min(ours_t)
        med = statistics.median(base_t) / statistics.median(ours_t)
        summary.append((name, len(picked), min(ours_t), min(base_t), best, med, min(agree)))
    print("\nsample       files   ours (s)   baseline (s)   speedup best (median)   identical")
    for name, n, o, b, best, med, ag in summary:
        print(f"{name:<12} {n:>5} {o:>10.1f} {b:>14.1f} {best:>12.2f}x ({med:.2f}x) {ag:>8}/{n}")


if __name__ == "__main__":
    main()
