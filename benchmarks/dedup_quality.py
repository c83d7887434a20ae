"""Near-duplicate quality on the real Python corpus: the pairs our minhash_dedup puts in one cluster vs the pairs
whose true Jaccard similarity (code-token 5-gram shingle sets) is at least the threshold, found by brute force
(a sparse document x shingle matrix times its transpose gives every pair's intersection)."""

from __future__ import annotations

from itertools import combinations

import numpy as np


def true_pairs(ids: list[str], texts: list[str], stage, threshold: float) -> set[tuple[str, str]]:
    from scipy.sparse import csr_matrix

    vocab: dict[bytes, int] = {}
    rows, cols = [], []
    for i, t in enumerate(texts):
        for s in set(stage.shingles(t)):
            rows.append(i)
            cols.append(vocab.setdefault(s, len(vocab)))
    x = csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(texts), len(vocab)))
    sizes = np.asarray(x.sum(axis=1)).ravel()
    inter = (x @ x.T).tocoo()
    out = set()
    for i, j, n in zip(inter.row, inter.col, inter.data):
        if i < j and n / (sizes[i] + sizes[j] - n) >= threshold:
            out.add((ids[i], ids[j]) if ids[i] < ids[j] else (ids[j], ids[i]))
    return out


def cluster_pairs(rows: list[dict]) -> set[tuple[str, str]]:
    clusters: dict[str, list[str]] = {}
    for r in rows:
        clusters.setdefault(r["minhash_cluster"], []).append(r["id"])
    return {tuple(sorted(p)) for members in clusters.values() for p in combinations(sorted(members), 2)}


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return hit / max(len(found), 1), hit / max(len(truth), 1)


def decision_pairs(rows: list[dict]) -> set[tuple[str, str]]:
    """What the stage asserts: each rejected row is a near-duplicate of its survivor."""
    return {tuple(sorted((r["id"], r["duplicate_of"]))) for r in rows if r.get("duplicate_of")}


def main() -> None:
    """Print the figures of docs/benchmarks.md: the stage on the real corpus with and without verification."""
    import argparse
    import tempfile
    import time
    from pathlib import Path

    import pyarrow.parquet as pq

    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.store.shards import KEPT, REJECTED
    from stages.dedup.minhash import MinhashDedup

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/python/"
                                            "python_corpus.parquet"))
    ap.add_argument("--threshold", type=float, default=0.7)
    args = ap.parse_args()
    truth = None
    for verify in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            raw = {"kind": "code", "source": {"type": "code", "paths": [args.corpus]},
                   "stages": [{"type": "minhash_dedup", "shingle": "code", "threshold": args.threshold,
                               "num_perm": 128, "verify_jaccard": verify}], "export": {"enabled": False}}
            t0 = time.perf_counter()
            run_pipeline(load_config(None, raw=raw), Path(tmp) / "run", progress=False, executor="inline")
            wall = time.perf_counter() - t0
            sd = Path(tmp) / "run" / "stages" / "01-minhash_dedup"
            rows = [r for p in (KEPT, REJECTED) for f in sorted((sd / p).glob("*.parquet"))
                    for r in pq.read_table(f).to_pylist()]
        if truth is None:
            stage = MinhashDedup(shingle="code", threshold=args.threshold, num_perm=128)
            truth = true_pairs([r["id"] for r in rows], [r["text"] for r in rows], stage, args.threshold)
            print(f"{len(rows)} documents; {len(truth)} pairs at true Jaccard >= {args.threshold} (brute force)")
        cp, cr = precision_recall(cluster_pairs(rows), truth)
        dp, _ = precision_recall(decision_pairs(rows), truth)
        rejected = sum(1 for r in rows if r.get("duplicate_of"))
        print(f"verify_jaccard={verify!s:5}  cluster pairs P {cp:.3f} R {cr:.3f}   asserted pairs (rejected row, "
              f"survivor) P {dp:.3f}   rejected {rejected}   wall {wall:.1f} s (inline, ingest included)")


if __name__ == "__main__":
    main()
