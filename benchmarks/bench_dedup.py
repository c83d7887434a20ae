"""Near-dedup of N synthetic documents with planted near-duplicates, whole run, on this machine's 2 cores:
``swallow run`` with ``minhash_dedup`` (Ray, a fresh process) vs datasketch ``MinHashLSH`` (insert every document,
then query every document) on the same texts. Wall time, peak RSS (ours: the whole process tree — driver, Ray,
workers; datasketch: its process), recall of the planted pairs.

Documents: 60 words drawn from a 30,000-word vocabulary (Zipf-like); 5 % of them get a near-copy elsewhere in the
corpus with one word changed (true 5-gram Jaccard ≈ 0.84). Both sides: 5-word shingles, 14 bands × 8 rows = 112
permutations, seed 1, the same shingles (datasketch is fed our shingles, so its signatures equal ours).

    python benchmarks/bench_dedup.py [--docs 1000000] [--skip-datasketch] [--verify]

``--verify`` turns on ``verify_jaccard`` for ours (each candidate edge's true Jaccard: its cost).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_corpus(n: int, seed: int = 7) -> tuple[list[str], list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(30_000)])
    p = 1 / np.arange(1, 30_001) ** 0.8
    p /= p.sum()
    words = rng.choice(30_000, size=(n, 60), p=p)
    n_copies = n // 20
    src = rng.choice(n, n_copies, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), n_copies, replace=False)
    words[dst] = words[src]
    pos = rng.integers(0, 60, n_copies)
    words[dst, pos] = rng.integers(0, 30_000, n_copies)
    texts = [" ".join(vocab[row]) for row in words]
    return texts, list(zip(src.tolist(), dst.tolist()))


class TreeRSS:
    """Peak resident memory of a process and all its descendants, sampled every 0.2 s."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        import psutil

        while not self.stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def run_ours(texts, tmp: Path, verify: bool = False) -> tuple[float, float, list[dict]]:
    import yaml

    src = tmp / "docs.parquet"
    pq.write_table(pa.table({"text": texts, "url": [f"doc{i}" for i in range(len(texts))]}), src,
                   row_group_size=50_000)
    cfg = tmp / "dedup.yaml"
    cfg.write_text(yaml.safe_dump({
        "kind": "web", "source": {"type": "documents", "paths": [str(src)], "shard_bytes": 8_000_000},
        "stages": [{"type": "minhash_dedup", "bands": 14, "rows": 8, "num_perm": 112, "partitions": 8,
                    "verify_jaccard": verify}],
        "export": {"enabled": False}, "ray": {"object_store_memory": 1_000_000_000}}))
    out = tmp / "run"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("swallow")), "run", str(cfg), "--output", str(out),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with TreeRSS(proc.pid) as rss:
        _, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(err[-3000:])
    sd = out / "stages" / "01-minhash_dedup"
    rows = pa.concat_tables([pq.read_table(f, columns=["url", "minhash_cluster"])
                             for part in ("kept", "rejected") for f in (sd / part).glob("*.parquet")])
    return wall, rss.peak / 2**30, rows.to_pylist()


def run_datasketch(texts) -> tuple[float, float, set[tuple[int, int]]]:
    """In a child process (its own peak RSS): MinHash.bulk, insert all, query all."""
    code = f"""
import sys, time, resource, pickle
sys.path.insert(0, {str(ROOT)!r})
from datasketch import MinHash, MinHashLSH
from stages.dedup.minhash import MinhashDedup
texts = pickle.load(sys.stdin.buffer)
stage = MinhashDedup(bands=14, rows=8, num_perm=112)
t0 = time.perf_counter()
lsh = MinHashLSH(num_perm=112, params=(14, 8))
sigs = MinHash.generator((stage.shingles(t) for t in texts), num_perm=112, seed=1)
ms = []
for i, m in enumerate(sigs):
    lsh.insert(i, m)
    ms.append(m)
pairs = set()
for i, m in enumerate(ms):
    for j in lsh.query(m):
        if j != i:
            pairs.add((min(i, j), max(i, j)))
wall = time.perf_counter() - t0
pickle.dump((wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, pairs), sys.stdout.buffer)
"""
    import pickle

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(texts), capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.decode()[-3000:])
    wall, rss, pairs = pickle.loads(proc.stdout)
    return time.perf_counter() - t0, rss, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--skip-datasketch", action="store_true")
    ap.add_argument("--verify", action="store_true", help="ours with verify_jaccard: true")
    a = ap.parse_args()
    texts, planted = make_corpus(a.docs)
    print(f"{a.docs:,} documents, {len(planted):,} planted near-duplicate pairs, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        wall, rss, rows = run_ours(texts, Path(tmp), a.verify)
    cluster = {int(r["url"][3:]): r["minhash_cluster"] for r in rows}
    ours_recall = sum(cluster[s] == cluster[d] for s, d in planted) / len(planted)
    name = "ours (verify)" if a.verify else "ours"
    print(f"{name}: {wall:8.1f} s   peak RSS {rss:6.2f} GiB (process tree)   planted pairs found "
          f"{ours_recall:.4f}")
    if not a.skip_datasketch:
        dwall, drss, pairs = run_datasketch(texts)
        d_recall = sum((min(s, d), max(s, d)) in pairs for s, d in planted) / len(planted)
        print(f"datasketch: {dwall:8.1f} s   peak RSS {drss:6.2f} GiB (one process)    planted pairs found "
              f"{d_recall:.4f}")
        print(f"ours vs datasketch: {dwall / wall:.2f}x faster, {rss / drss:.2f}x the peak memory")


if __name__ == "__main__":
    main()
