"""The pipelines the reliability tests fault: the code path (real Python corpus with planted copies) and the web path
(real WARC files), each with the stages whose workers the campaign kills."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.conftest import LID, SHARED, WARC

GPT2 = SHARED / "tokenizers" / "gpt2" / "tokenizer.json.gz"
#: every task may be retried this often: the campaign's kills must not exhaust them (a clean run never retries)
RETRIES = 40


def code_config(tmp: Path, corpus_rows: list[dict], n: int = 90, shard_bytes: int = 30_000) -> Path:
    rows = [r for r in corpus_rows if 200 < len(r["content"]) < 4000][:n]
    rows += [dict(r, blob_id=f"exact-{i}") for i, r in enumerate(rows[:8])]  # exact copies
    rows += [dict(r, blob_id=f"near-{i}", content=r["content"] + "\n# edited\n") for i, r in enumerate(rows[8:16])]
    src = tmp / "code.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=16)
    stages = [{"type": "syntax_filter"}, {"type": "lint_filter", "batch_size": 4, "timeout_s": 120},
              {"type": "exact_dedup", "partitions": 3},
              {"type": "minhash_dedup", "shingle": "code", "threshold": 0.7, "num_perm": 64, "partitions": 3},
              {"type": "tokenize", "tokenizer": str(GPT2)}]
    for s in stages:
        s["max_retries"] = RETRIES
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": shard_bytes},
           "stages": stages, "export": {"enabled": False},
           "ray": {"num_cpus": 2, "object_store_memory": 200_000_000}}
    return write(tmp / "code.yaml", raw)


WARC_FILES = ["dolma_sample-0000.warc.gz", "dolma_sample-0001.warc.gz", "cc-main-2024-22_whirlwind.warc.gz",
              "clueweb09-ja_quirk.warc.gz", "pywb_iana.org.warc.gz"]


def web_config(tmp: Path) -> Path:
    stages = [{"type": "extract", "timeout_s": 60}, {"type": "language_id", "model": str(LID), "min_score": 0.0},
              {"type": "gopher_quality"}, {"type": "minhash_dedup", "partitions": 3}]
    for s in stages:
        s["max_retries"] = RETRIES
    raw = {"kind": "web", "source": {"type": "warc", "paths": [str(WARC / f) for f in WARC_FILES], "shard_bytes": 1},
           "stages": stages, "export": {"enabled": False},
           "ray": {"num_cpus": 2, "object_store_memory": 200_000_000}}
    return write(tmp / "web.yaml", raw)


def write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path
