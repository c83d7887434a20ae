"""Lint filter throughput: our Ray stage (in-process pylint in long-lived workers) vs the baseline of one
``pylint`` subprocess per file with the same options (what the original SwallowCode scripts do), on the same
real files, both with as many parallel workers as CPUs. Checks that both give the same scores.

    python benchmarks/bench_lint.py [--files 300] [--workers 2]
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
    a = ap.parse_args()
    rows = pq.read_table(CORPUS).to_pylist()
    picked = [r for r in rows if r["content"].strip() and compiles(r["content"]) and len(r["content"]) < 40_000]
    picked = picked[: a.files]
    n_bytes = sum(len(r["content"]) for r in picked)
    print(f"{len(picked)} real files, {n_bytes / 1e6:.2f} MB, {a.workers} workers, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")

    import ray

    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "records.parquet"
        ids = [f"b{i}" for i in range(len(picked))]
        table = pa.table({"id": ids, "text": [r["content"] for r in picked], "source_file": ["bench"] * len(ids),
                          "source_offset": list(range(len(ids))), "repo": [r["repo"] for r in picked],
                          "path": [r["path"] for r in picked], "license": [r["license"] for r in picked],
                          "blob_id": [r["blob_id"] for r in picked], "language": ["python"] * len(ids)})
        pq.write_table(table, src, row_group_size=32)
        ray.init(num_cpus=a.workers, include_dashboard=False, object_store_memory=300_000_000,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, configure_logging=False)
        raw = {"kind": "code", "source": {"type": "records", "paths": [str(src)], "shard_bytes": 1},
               "stages": [{"type": "lint_filter", "batch_size": 16, "concurrency": a.workers}],
               "export": {"enabled": False}}
        cfg = load_config(None, raw=raw)
        # split the input into ~40 shards so the pool has work to balance
        pq.write_table(table, src, row_group_size=max(1, len(ids) // 40))
        run_pipeline(cfg, Path(tmp) / "run", progress=False)
        from pipeline.ledger import collect_stats

        # the lint stage's wall clock: its actors' start, the lint processes' start and every shard
        ours_s = collect_stats(Path(tmp) / "run")["stages"][1]["elapsed_s"]
        ray.shutdown()
        kept = pa.concat_tables([pq.read_table(f) for f in (Path(tmp) / "run" / "stages" / "01-lint_filter").glob("*/*.parquet")
                                 if f.parent.name in ("kept", "rejected")], promote_options="permissive")
        ours = dict(zip(kept.column("id").to_pylist(), kept.column("pylint_score").to_pylist()))

        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.workers) as pool:
            base_scores = list(pool.map(baseline_one, [(i, r["content"], tmp) for i, r in zip(ids, picked)]))
        base_s = time.perf_counter() - t0
    same = sum(1 for i, b in zip(ids, base_scores) if (ours.get(i) if ours.get(i) is not None else 0.0) == b)
    print(f"ours (Ray stage, in-process pylint): {ours_s:8.1f} s  {len(ids) / ours_s:6.2f} files/s")
    print(f"baseline (pylint subprocess/file):  {base_s:8.1f} s  {len(ids) / base_s:6.2f} files/s")
    print(f"speedup: {base_s / ours_s:.2f}x   identical scores: {same}/{len(ids)}")
    for i, b, r in zip(ids, base_scores, picked):
        o = ours.get(i) if ours.get(i) is not None else 0.0
        if o != b:
            print(f"  differs: {i} {r['repo']}/{r['path']} ours {o} cli {b}")


if __name__ == "__main__":
    main()
