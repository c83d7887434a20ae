"""Lint filter throughput: our Ray stage (in-process pylint in long-lived workers) vs the baseline of one
``pylint`` subprocess per file with the same options (what the original SwallowCode scripts do), on the same
real files, both with as many parallel workers as CPUs. Checks that both give the same scores.

The machine is a noisy shared VM: with ``--rounds N`` both sides run N times, interleaved, and the speedup is
taken from each side's best (minimum) time, as ``timeit`` does; medians are printed too.

    python benchmarks/bench_lint.py [--files 300] [--workers 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
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


def baseline_one(args):
    from stages.code import SWALLOWCODE_DISABLE, pylint_args

    rid, text, tmp = args
    d = Path(tmp) / rid
    d.mkdir()
    p = d / f"m_{rid}.py"
    p.write_text(text, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "pylint", *pylint_args(SWALLOWCODE_DISABLE), str(p)],
                         capture_output=True, text=True, cwd=d, env={**os.environ, "PYLINTHOME": str(d)}).stdout
    m = re.search(r"rated at (-?[\d.]+)/10", out)
    return float(m.group(1)) if m else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=1, help="times each side runs, interleaved; best time counts")
    a = ap.parse_args()
    rows = pq.read_table(CORPUS).to_pylist()
    picked = [r for r in rows if r["content"].strip() and compiles(r["content"]) and len(r["content"]) < 40_000]
    picked = picked[: a.files]
    n_bytes = sum(len(r["content"]) for r in picked)
    print(f"{len(picked)} real files, {n_bytes / 1e6:.2f} MB, {a.workers} workers, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")

    import statistics

    import ray

    from pipeline.config import load_config
    from pipeline.ledger import collect_stats
    from pipeline.runner import run_pipeline

    ids = [f"b{i}" for i in range(len(picked))]
    ours_times, base_times, agree = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "records.parquet"
        table = pa.table({"id": ids, "text": [r["content"] for r in picked], "source_file": ["bench"] * len(ids),
                          "source_offset": list(range(len(ids))), "repo": [r["repo"] for r in picked],
                          "path": [r["path"] for r in picked], "license": [r["license"] for r in picked],
                          "blob_id": [r["blob_id"] for r in picked], "language": ["python"] * len(ids)})
        # ~40 shards so the pool has work to balance
        pq.write_table(table, src, row_group_size=max(1, len(ids) // 40))
        raw = {"kind": "code", "source": {"type": "records", "paths": [str(src)], "shard_bytes": 1},
               "stages": [{"type": "lint_filter", "batch_size": 16, "concurrency": a.workers}],
               "export": {"enabled": False}}
        for r in range(a.rounds):
            ray.init(num_cpus=a.workers, include_dashboard=False, object_store_memory=300_000_000,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, configure_logging=False)
            run_dir = Path(tmp) / f"run{r}"
            run_pipeline(load_config(None, raw=raw), run_dir, progress=False)
            # the lint stage's wall clock: its actors' start, the lint processes' start and every shard
            ours_times.append(collect_stats(run_dir)["stages"][1]["elapsed_s"])
            ray.shutdown()  # the baseline runs without Ray in the background
            out = pa.concat_tables([pq.read_table(f) for f in (run_dir / "stages" / "01-lint_filter").glob("*/*.parquet")
                                    if f.parent.name in ("kept", "rejected")], promote_options="permissive")
            ours = dict(zip(out.column("id").to_pylist(), out.column("pylint_score").to_pylist()))
            print(f"round {r + 1}: ours {ours_times[-1]:6.1f} s", end="", flush=True)

            base_dir = Path(tmp) / f"baseline{r}"
            base_dir.mkdir()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(a.workers) as pool:
                base_scores = list(pool.map(baseline_one, [(i, p["content"], base_dir) for i, p in zip(ids, picked)]))
            base_times.append(time.perf_counter() - t0)
            same = [i for i, b in zip(ids, base_scores) if (ours.get(i) if ours.get(i) is not None else 0.0) == b]
            agree.append(len(same))
            print(f"   baseline {base_times[-1]:6.1f} s   identical scores {len(same)}/{len(ids)}", flush=True)
            for i, b, p in zip(ids, base_scores, picked):
                o = ours.get(i) if ours.get(i) is not None else 0.0
                if o != b:
                    print(f"  differs: {i} {p['repo']}/{p['path']} ours {o} cli {b}")
    ours_s, base_s = min(ours_times), min(base_times)
    print(f"ours (Ray stage, in-process pylint): {ours_s:8.1f} s  {len(ids) / ours_s:6.2f} files/s"
          f"   (median {statistics.median(ours_times):.1f} s)")
    print(f"baseline (pylint subprocess/file):  {base_s:8.1f} s  {len(ids) / base_s:6.2f} files/s"
          f"   (median {statistics.median(base_times):.1f} s)")
    print(f"speedup: {base_s / ours_s:.2f}x (medians {statistics.median(base_times) / statistics.median(ours_times):.2f}x)"
          f"   identical scores: {min(agree)}/{len(ids)} in every round")


if __name__ == "__main__":
    main()
