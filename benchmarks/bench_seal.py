"""What sealing costs: a run whose markers carry the SHA-256 of every file they finish, beside the same run with the
hashing taken out, in the same process, alternating; then ``swallow verify`` (which re-hashes every sealed file).

The run: the real Python corpus (``../shared/data/python/python_corpus.parquet``) or a prefix of it, repeated
``--copies`` times, through syntax_filter -> exact_dedup -> minhash_dedup -> tokenize (GPT-2) on the inline
executor (one process: no Ray start-up in either figure), written fresh each time.

    python benchmarks/bench_seal.py [--files 2000 6771] [--copies 1 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


class NoHash:
    """hashlib.sha256's stand-in that does nothing: the run without sealing's cost."""

    def __init__(self, data=b""):
        pass

    def update(self, data):
        pass

    def hexdigest(self):
        return "0" * 64


def run_once(cfg_raw: dict, out: Path, sealed: bool) -> tuple[float, float]:
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store import shards

    shards.hashlib.sha256 = hashlib.sha256 if sealed else NoHash  # (the only hash the writers and seals use)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    run_pipeline(load_config(None, raw=cfg_raw), out, progress=False, executor="inline")
    run_s = time.perf_counter() - t0
    shards.hashlib.sha256 = hashlib.sha256
    t0 = time.perf_counter()
    problems = verify(out) if sealed else []
    verify_s = time.perf_counter() - t0
    assert not problems, problems[:3]
    return run_s, verify_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[2000, 6771])
    ap.add_argument("--copies", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    corpus = pq.read_table(SHARED / "python" / "python_corpus.parquet")
    tmp = Path(tempfile.mkdtemp(prefix="bench-seal-"))
    print(f"{'files':>6} {'copies':>6} {'MB written':>10} {'sealed s':>9} {'unsealed s':>10} {'ratio':>6} "
          f"{'verify s':>8}")
    for n in a.files:
        for copies in a.copies:
            src = tmp / f"in-{n}-{copies}.parquet"
            part = corpus.slice(0, n)
            table = pa.concat_tables([part.set_column(part.column_names.index("blob_id"), "blob_id",
                                                      pa.array([f"{b}-{c}" for b in part["blob_id"].to_pylist()]))
                                      for c in range(copies)])
            pq.write_table(table, src)
            raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 4_000_000},
                   "stages": [{"type": "syntax_filter"}, {"type": "exact_dedup", "partitions": 4},
                              {"type": "minhash_dedup", "shingle": "code", "threshold": 0.7, "partitions": 4},
                              {"type": "tokenize", "tokenizer": str(SHARED / "tokenizers" / "gpt2" /
                                                                    "tokenizer.json.gz")}],
                   "export": {"enabled": False}}
            sealed, unsealed, verify_s = [], [], []
            for _ in range(a.rounds):  # alternating, so drift on a shared machine falls on both
                s, v = run_once(raw, tmp / "run", True)
                sealed.append(s)
                verify_s.append(v)
                unsealed.append(run_once(raw, tmp / "run", False)[0])
            written = sum(f.stat().st_size for f in (tmp / "run").rglob("*") if f.is_file()) / 1e6
            print(f"{n:>6} {copies:>6} {written:>10.1f} {min(sealed):>9.2f} {min(unsealed):>10.2f} "
                  f"{min(sealed) / min(unsealed):>6.3f} {min(verify_s):>8.2f}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
