"""Exact dedup beside datatrove's, same documents, same machine, alternating rounds (issue 25's dedup goal).

Two samples, each written as ``--files`` JSONL files (datatrove's input) and the same rows as Parquet files (ours):

* ``code``: the real Python corpus (../shared/data/python/python_corpus.parquet, 6,771 files; it holds copies
  of the same file across forks and vendored trees);
* ``prose``: ``--prose`` synthetic documents of 60 Zipf-drawn words, 5 % of them exact copies of another.

ours:      ``swallow run`` (records source, one shard per file, ``exact_dedup`` with normalisation ``none``:
           datatrove hashes the text as it is), an embedded Ray with ``--workers`` CPUs;
datatrove: its three steps as its example runs them, each a ``LocalPipelineExecutor`` with ``--workers``
           workers: JsonlReader -> ExactDedupSignature; ExactFindDedups; JsonlReader -> ExactDedupFilter ->
           JsonlWriter.

Per round and side, for the whole process tree (bench_web_peer.measure): wall, CPU, peak PSS; then the number of
documents each kept (both keep one of each group of identical texts, so the counts must be equal).
``--inline`` adds a third side, ``swallow run --executor inline`` (no Ray: the stage's phases in the command's
own process, one shard at a time), the setting for a run too small to pay Ray's start.

    python benchmarks/bench_exact_peer.py [--rounds 2] [--files 4] [--workers 2] [--prose 110000] [--inline]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_web_peer import measure, ours_command  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "python" / "python_corpus.parquet"

DATATROVE = r'''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.exact_dedup import (ExactDedupConfig, ExactDedupFilter, ExactDedupSignature,
                                                  ExactFindDedups)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter


def content(doc) -> bytes:  # datatrove's hash takes bytes (a `-> str` getter reached it unencoded)
    return doc.text.encode("utf-8", "surrogatepass")


src, work, files, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = ExactDedupConfig(content_getter=content)
for steps, tasks in (([JsonlReader(src), ExactDedupSignature(f"{work}/sigs", cfg)], files),
                     ([ExactFindDedups(f"{work}/sigs", f"{work}/dups", cfg)], 1),
                     ([JsonlReader(src), ExactDedupFilter(f"{work}/dups", cfg), JsonlWriter(f"{work}/out")], files)):
    LocalPipelineExecutor(steps, tasks=tasks, workers=min(workers, tasks),
                          logging_dir=f"{work}/logs{len(steps)}{tasks}", skip_completed=False).run()
'''


def prose_texts(n: int, seed: int = 11) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, 30_001) ** 0.8
    p /= p.sum()
    words = rng.choice(30_000, size=(n, 60), p=p)
    texts = [" ".join(f"w{w}" for w in row) for row in words]
    for i, j in zip(rng.choice(n, n // 20, replace=False), rng.choice(n, n // 20, replace=False)):
        if i != j:
            texts[i] = texts[j]
    return texts


def write_inputs(texts: list[str], folder: Path, files: int) -> tuple[Path, list[Path]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "jsonl").mkdir(parents=True)
    parquets = []
    rows = list(enumerate(texts))
    per = -(-len(rows) // files)
    for f in range(files):
        part = rows[f * per:(f + 1) * per]
        with open(folder / "jsonl" / f"part{f}.jsonl", "w") as out:
            for i, t in part:
                out.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
        n = len(part)
        table = pa.table({"id": [f"d{i}" for i, _ in part], "text": [t for _, t in part],
                          "source_file": [f"part{f}"] * n, "source_offset": [i for i, _ in part]})
        parquets.append(folder / f"part{f}.parquet")
        pq.write_table(table, parquets[-1])
    return folder / "jsonl", parquets


def our_config(parquets: list[Path], path: Path, workers: int) -> Path:
    import yaml

    raw = {"kind": "web", "source": {"type": "records", "paths": [str(p) for p in parquets], "shard_bytes": 1},
           "stages": [{"type": "exact_dedup", "normalize": "none"}], "export": {"enabled": False},
           "ray": {"num_cpus": workers}}
    path.write_text(yaml.safe_dump(raw))
    return path


def kept_ours(run: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in run.glob("stages/*exact_dedup/kept/*.parquet"))


def kept_datatrove(out: Path) -> int:
    import gzip

    return sum(sum(1 for _ in gzip.open(f, "rt")) for f in out.glob("*.jsonl.gz"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--prose", type=int, default=110_000)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--inline", action="store_true", help="also ours with --executor inline (no Ray)")
    a = ap.parse_args()
    import pyarrow.parquet as pq

    if not CORPUS.is_file():
        raise SystemExit(f"{CORPUS}: missing (the shared data's Python corpus)")
    samples = {"code": pq.read_table(CORPUS, columns=["content"]).column("content").to_pylist(),
               "prose": prose_texts(a.prose)}
    sides = ["ours", "datatrove"] + (["ours-inline"] if a.inline else [])
    swallow, env_ours = ours_command()
    tmp = Path(tempfile.mkdtemp(prefix="exactpeer-"))
    for name, texts in samples.items():
        jsonl, parquets = write_inputs(texts, tmp / name, a.files)
        config = our_config(parquets, tmp / f"{name}.yaml", a.workers)
        res: dict[str, list[dict]] = {s: [] for s in sides}
        for r in range(a.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                out = tmp / f"{name}-{side}{r}"
                if side.startswith("ours"):
                    inline = ["--executor", "inline"] if side == "ours-inline" else []
                    m = measure([swallow, "run", str(config), "--output", str(out), "--no-progress", "--no-export",
                                 *inline], env_ours, a.timeout, tmp)
                    m["kept"] = kept_ours(out) if m["rc"] == 0 else -1
                else:
                    m = measure([sys.executable, "-c", DATATROVE, str(jsonl), str(out), str(a.files), str(a.workers)],
                                dict(os.environ), a.timeout, tmp)
                    m["kept"] = kept_datatrove(out / "out") if m["rc"] == 0 else -1
                res[side].append(m)
                print(f"{name} round {r + 1} {side:<11} wall {m['wall']:6.1f} s  cpu {m['cpu']:6.1f} s  peak PSS "
                      f"{m['pss'] / 2**30:.2f} GiB  kept {m['kept']}  rc {m['rc']}", flush=True)
                if m["rc"]:
                    print(m["err"])
        med = {s: (statistics.median(m["wall"] for m in ms), statistics.median(m["cpu"] for m in ms),
                   max(m["pss"] for m in ms)) for s, ms in res.items()}
        d = med["datatrove"]
        for side in sides:
            if side == "datatrove":
                continue
            o = med[side]
            print(f"{name}: {len(texts):,} documents, {a.files} files, {a.workers} workers, {a.rounds} rounds, "
                  f"{side} | wall ours/datatrove {o[0] / d[0]:.2f} ({o[0]:.1f} / {d[0]:.1f} s) | CPU {o[1] / d[1]:.2f} "
                  f"({o[1]:.1f} / {d[1]:.1f} s) | peak PSS {o[2] / 2**30:.2f} / {d[2] / 2**30:.2f} GiB | kept "
                  f"{res[side][-1]['kept']} / {res['datatrove'][-1]['kept']}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
