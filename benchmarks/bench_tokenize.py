"""Tokenization throughput: ``swallow tokenize`` end to end vs the bare tokenizer (ceiling) and vs a Megatron
``preprocess_data.py``-style baseline, on the same real texts, in one run.

* ceiling: ``tokenizers`` ``encode_batch_fast`` over all texts in memory (Rust threads on every core), nothing
  read or written;
* ours: the pipeline's tokenize stage, Parquet in -> Megatron ``.bin/.idx`` out through Ray (workers' start,
  reading, encoding, EOD, writing; the stage's wall clock);
* baseline: what Megatron-LM's ``tools/preprocess_data.py`` does: a ``multiprocessing.Pool`` with one
  ``encode`` call per document (``imap``, chunksize 25), the parent writing with megatron-core's
  ``IndexedDatasetBuilder`` (``add_document``) — the texts read from the same Parquet.

    python benchmarks/bench_tokenize.py [--tokenizer gpt2|llama3] [--repeat 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

_TOK = None


def _init(spec):
    global _TOK
    from stages.write import load_tokenizer

    _TOK = load_tokenizer(spec)


def _encode_one(text):
    ids = _TOK.encode(text, add_special_tokens=False).ids
    return ids


def baseline(spec: str, parquet: Path, out_prefix: str, eod: int, workers: int) -> int:
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from stages.write import index_dtype, load_tokenizer

    texts = pq.read_table(parquet, columns=["text"]).column("text").to_pylist()
    dtype = index_dtype(load_tokenizer(spec))
    builder = IndexedDatasetBuilder(out_prefix + ".bin", dtype=dtype)
    tokens = 0
    with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(spec,)) as pool:
        for ids in pool.imap(_encode_one, texts, chunksize=25):
            if not ids:
                continue
            ids.append(eod)
            tokens += len(ids)
            builder.add_document(torch.tensor(ids, dtype=torch.int64), [len(ids)])
    builder.finalize(out_prefix + ".idx")
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="gpt2", choices=["gpt2", "llama3"])
    ap.add_argument("--repeat", type=int, default=2, help="copies of the corpus texts (more work per run)")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--stage-cpus", type=float, help="num_cpus of each tokenize worker (default: the stage's)")
    a = ap.parse_args()
    spec = str(SHARED / "tokenizers" / a.tokenizer / "tokenizer.json.gz")
    from stages.write import default_eod, load_tokenizer

    tok = load_tokenizer(spec)
    eod = default_eod(tok)
    texts = [t for t in pq.read_table(SHARED / "python" / "python_corpus.parquet", columns=["content"])
             .column("content").to_pylist() if t.strip()] * a.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts):,} real documents, {mb:.1f} MB, tokenizer {a.tokenizer}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs")

    t0 = time.perf_counter()
    n_ceiling = 0
    for i in range(0, len(texts), 1024):
        n_ceiling += sum(len(e.ids) + 1 for e in tok.encode_batch_fast(texts[i:i + 1024], add_special_tokens=False))
    ceiling_s = time.perf_counter() - t0

    import ray

    from pipeline.config import load_config
    from pipeline.ledger import collect_stats
    from pipeline.runner import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        n = len(texts)
        src = Path(tmp) / "docs.parquet"
        pq.write_table(pa.table({"id": [f"d{i}" for i in range(n)], "text": texts, "source_file": ["b"] * n,
                                 "source_offset": list(range(n)), "repo": [None] * n, "path": [None] * n,
                                 "license": [None] * n, "blob_id": [None] * n, "language": ["python"] * n}),
                       src, row_group_size=2048)
        ray.init(num_cpus=a.workers, include_dashboard=False, object_store_memory=500_000_000,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, configure_logging=False)
        raw = {"kind": "code", "source": {"type": "records", "paths": [str(src)], "shard_bytes": 16_000_000},
               "stages": [{"type": "tokenize", "tokenizer": spec,
                           **({"num_cpus": a.stage_cpus} if a.stage_cpus else {})}], "export": {"enabled": False}}
        run_pipeline(load_config(None, raw=raw), Path(tmp) / "run", progress=False)
        st = collect_stats(Path(tmp) / "run")["stages"][1]
        ours_s, n_ours = st["elapsed_s"], int(st["counters"]["tokens"])
        ray.shutdown()

        t0 = time.perf_counter()
        n_base = baseline(spec, src, str(Path(tmp) / "megatron"), eod, a.workers)
        base_s = time.perf_counter() - t0
    assert n_ours == n_ceiling == n_base, (n_ours, n_ceiling, n_base)
    print(f"ceiling  (bare encode_batch_fast):       {ceiling_s:7.1f} s  {n_ceiling / ceiling_s / 1e6:6.2f} M tok/s")
    print(f"ours     (swallow tokenize, end to end): {ours_s:7.1f} s  {n_ours / ours_s / 1e6:6.2f} M tok/s")
    print(f"baseline (preprocess_data.py-style):     {base_s:7.1f} s  {n_base / base_s / 1e6:6.2f} M tok/s")
    print(f"ours / ceiling: {ceiling_s / ours_s:.2f}   ours / baseline: {base_s / ours_s:.2f}x   "
          f"({n_ours:,} tokens each)")


if __name__ == "__main__":
    main()
