"""Tokenization throughput: ``swallow tokenize`` end to end vs the bare tokenizer (ceiling) and vs Megatron-LM's
``tools/preprocess_data.py`` (the baseline), on the same real texts, in one run.

* ceiling: ``tokenizers`` ``encode_batch_fast`` over all texts in memory (Rust threads on every core), nothing
  read or written;
* ours: the pipeline's tokenize stage, Parquet in -> Megatron ``.bin/.idx`` out through Ray (workers' start,
  reading, encoding, EOD, writing; the stage's wall clock);
* baseline (``preprocess_data``): what ``tools/preprocess_data.py`` of Megatron-LM runs for
  ``--tokenizer-type HuggingFaceTokenizer --append-eod --workers N``, with megatron-core's own parts: its
  ``build_tokenizer`` (megatron-core's ``HuggingFaceTokenizer`` over a model folder holding the same
  ``tokenizer.json``), a JSON-lines input read line by line, ``multiprocessing.Pool.imap(encode, lines, 32)``
  where ``encode`` is the script's (``json.loads``, ``tokenizer.tokenize``, EOD) and the parent writing with
  ``IndexedDatasetBuilder.add_document``. (The script itself is not shipped in the megatron-core wheel; its
  ``Encoder.encode`` and writer loop are reproduced here, every library call is megatron-core's.)
* also shown, not a goal: the same pool but calling the bare ``tokenizers.Tokenizer.encode`` per document
  (what the script would cost with the tokenizer overhead of megatron-core's wrapper removed).

The machine is a noisy shared VM, so every side runs ``--rounds`` times, interleaved (ceiling, ours, baseline,
ceiling, ...), and the ratios are taken from each side's best (minimum) time, as ``timeit`` does; the medians
are printed too. All sides must produce the same number of tokens (checked).

``--also-stage-cpus 1`` adds ours with one CPU (one tokenizer thread) per worker as a further side: the
stage's default is one worker holding 2 CPUs whose 2 threads share one tokenizer.

    python benchmarks/bench_tokenize.py [--tokenizer gpt2|llama3] [--repeat 2] [--rounds 3] [--also-stage-cpus 1]
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


# The script forks its pool from a process without Ray; forking ours (which has Ray's threads) is unsafe, so the
# pool's workers fork from a server started before Ray, with the script's imports already loaded (as after a fork).
POOL_CONTEXT = mp.get_context("forkserver")
POOL_CONTEXT.set_forkserver_preload(["__main__", "json", "tokenizers", "megatron.core.datasets.indexed_dataset",
                                     "megatron.core.tokenizers.text.utils.build_tokenizer"])


class Encoder:
    """``tools/preprocess_data.py``'s ``Encoder`` for one json key, no sentence splitting, ``--append-eod``."""

    tokenizer = None

    def __init__(self, model_dir: str, bare_json: str | None = None, eod: int | None = None):
        self.model_dir, self.bare_json, self.eod = model_dir, bare_json, eod

    def initializer(self):
        if self.bare_json:  # the variant with the bare tokenizers.Tokenizer
            from tokenizers import Tokenizer

            Encoder.tokenizer = Tokenizer.from_file(self.bare_json)
            return
        from megatron.core.tokenizers.text.utils.build_tokenizer import build_tokenizer

        Encoder.tokenizer = build_tokenizer(megatron_args(self.model_dir))

    def encode(self, json_line):
        data = json.loads(json_line)
        text = data["text"]
        if self.bare_json:
            ids = Encoder.tokenizer.encode(text, add_special_tokens=False).ids
            eod = self.eod
        else:
            ids = Encoder.tokenizer.tokenize(text)
            eod = Encoder.tokenizer.eod
        doc_ids = list(ids)
        sentence_lens = [len(ids)] if ids else []
        if doc_ids:
            doc_ids.append(eod)
            sentence_lens[-1] += 1
        return doc_ids, sentence_lens, len(json_line)


def megatron_args(model_dir: str) -> argparse.Namespace:
    """The arguments preprocess_data.py's parser gives ``build_tokenizer`` for a HuggingFaceTokenizer (defaults)."""
    return argparse.Namespace(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=model_dir, vocab_file=None,
                              merge_file=None, tokenizer_special_tokens=None, tokenizer_hf_use_fast=False,
                              trust_remote_code=False, tokenizer_hf_include_special_tokens=False,
                              tokenizer_metadata=None)


def preprocess_data(jsonl: Path, out_prefix: str, workers: int, model_dir: str, dtype,
                    bare_json: str | None = None, eod: int | None = None) -> int:
    """``Partition.process_json_file`` of preprocess_data.py (one partition): pool.imap(encode, fin, 32)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    encoder = Encoder(model_dir, bare_json, eod)
    tokens = 0
    with open(jsonl, encoding="utf-8") as fin, POOL_CONTEXT.Pool(workers, initializer=encoder.initializer) as pool:
        builder = IndexedDatasetBuilder(out_prefix + ".bin", dtype=dtype)
        for doc, sentence_lens, _ in pool.imap(encoder.encode, fin, 32):
            if doc:
                builder.add_document(doc, sentence_lens)
                tokens += len(doc)
        builder.finalize(out_prefix + ".idx")
    return tokens


def model_folder(tokenizer_json: Path, eos: str, into: Path) -> Path:
    """A Hugging Face model folder (tokenizer.json + tokenizer_config.json) as Megatron users point it at."""
    into.mkdir(parents=True, exist_ok=True)
    (into / "tokenizer.json").write_bytes(gzip.decompress(tokenizer_json.read_bytes()))
    (into / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos}))
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="gpt2", choices=["gpt2", "llama3"])
    ap.add_argument("--repeat", type=int, default=2, help="copies of the corpus texts (more work per run)")
    ap.add_argument("--rounds", type=int, default=3, help="times each side runs, interleaved; best time counts")
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--stage-cpus", type=float, help="num_cpus of each tokenize worker (default: the stage's)")
    ap.add_argument("--also-stage-cpus", type=float, nargs="*", default=[],
                    help="also run ours with these num_cpus per worker (extra sides, not goals)")
    ap.add_argument("--no-bare-baseline", action="store_true", help="skip the pool with the bare tokenizer")
    a = ap.parse_args()
    spec = SHARED / "tokenizers" / a.tokenizer / "tokenizer.json.gz"
    from stages.write import default_eod, index_dtype, load_tokenizer

    tok = load_tokenizer(str(spec))
    eod = default_eod(tok)
    dtype = index_dtype(tok)
    texts = [t for t in pq.read_table(SHARED / "python" / "python_corpus.parquet", columns=["content"])
             .column("content").to_pylist() if t.strip()] * a.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts):,} real documents, {mb:.1f} MB, tokenizer {a.tokenizer}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {a.rounds} interleaved rounds")

    from multiprocessing import forkserver

    forkserver.ensure_running()  # before Ray starts its threads in this process
    import ray

    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.store.ledger import collect_stats

    times: dict[str, list[float]] = {}
    tokens: dict[str, set[int]] = {}

    def record(name: str, seconds: float, n: int) -> None:
        times.setdefault(name, []).append(seconds)
        tokens.setdefault(name, set()).add(n)
        print(f"  {name:<10} {seconds:7.1f} s  {n / seconds / 1e6:5.2f} M tok/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = len(texts)
        src = tmp / "docs.parquet"
        none = pa.array([None] * n, pa.string())
        pq.write_table(pa.table({"id": [f"d{i}" for i in range(n)], "text": texts, "source_file": ["b"] * n,
                                 "source_offset": list(range(n)), "repo": none, "path": none, "license": none,
                                 "blob_id": none, "language": ["python"] * n}), src, row_group_size=2048)
        jsonl = tmp / "docs.jsonl"  # preprocess_data.py's input format
        with open(jsonl, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
        folder = model_folder(spec, tok.id_to_token(eod), tmp / "model")
        bare_json = str(folder / "tokenizer.json")
        ray.init(num_cpus=a.workers, include_dashboard=False, object_store_memory=500_000_000,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, configure_logging=False)

        def pipeline_cfg(cpus):
            return load_config(None, raw={
                "kind": "code", "source": {"type": "records", "paths": [str(src)], "shard_bytes": 16_000_000},
                "stages": [{"type": "tokenize", "tokenizer": str(spec), **({"num_cpus": cpus} if cpus else {})}],
                "export": {"enabled": False}})

        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds}", flush=True)
            t0 = time.perf_counter()
            n_ceiling = 0
            for i in range(0, len(texts), 1024):
                n_ceiling += sum(len(e.ids) + 1 for e in tok.encode_batch_fast(texts[i:i + 1024],
                                                                               add_special_tokens=False))
            record("ceiling", time.perf_counter() - t0, n_ceiling)

            for cpus in [a.stage_cpus] + a.also_stage_cpus:
                run_dir = tmp / f"run{r}-{cpus}"
                run_pipeline(pipeline_cfg(cpus), run_dir, progress=False)
                st = collect_stats(run_dir)["stages"][1]
                record("ours" if cpus == a.stage_cpus else f"ours{cpus:g}cpu", st["elapsed_s"],
                       int(st["counters"]["tokens"]))
                for ingest in (run_dir / "stages").glob("00-*"):  # disk: only the outputs are compared
                    shutil.rmtree(ingest)

            t0 = time.perf_counter()
            n_base = preprocess_data(jsonl, str(tmp / f"megatron{r}"), a.workers, str(folder), dtype)
            record("baseline", time.perf_counter() - t0, n_base)

            if not a.no_bare_baseline:
                t0 = time.perf_counter()
                n_bare = preprocess_data(jsonl, str(tmp / f"bare{r}"), a.workers, str(folder), dtype,
                                         bare_json=bare_json, eod=eod)
                record("bare-pool", time.perf_counter() - t0, n_bare)
            # compare the outputs once: the baseline's files and ours must hold the same documents
            if r == 0:
                same_files(tmp / f"run0-{a.stage_cpus}", tmp / "megatron0")
        ray.shutdown()
    counts = set().union(*tokens.values())
    assert len(counts) == 1, tokens
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    n_tok = counts.pop()
    print(f"\n{n_tok:,} tokens each side; best of {a.rounds} (median):")
    for k in times:
        print(f"  {k:<10} {best[k]:7.1f} s ({med[k]:6.1f})  {n_tok / best[k] / 1e6:5.2f} M tok/s")
    print(f"ours / ceiling:  {best['ceiling'] / best['ours']:.2f}  (medians {med['ceiling'] / med['ours']:.2f})")
    print(f"ours / baseline: {best['baseline'] / best['ours']:.2f}x (medians {med['baseline'] / med['ours']:.2f}x)")
    if "bare-pool" in best:
        print(f"ours / bare-pool: {best['bare-pool'] / best['ours']:.2f}x (not a goal)")


def same_files(run_dir: Path, megatron_prefix: Path) -> None:
    """Ours (one .bin/.idx per shard) and preprocess_data's single pair hold the same token sequence."""
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ours = []
    for idx in sorted((run_dir / "stages").glob("*/megatron/*.idx")):
        ds = IndexedDataset(str(idx.with_suffix("")))
        ours += [np.array(ds[i]) for i in range(len(ds))]  # copies: views die with ds
    ds = IndexedDataset(str(megatron_prefix))
    theirs = [np.array(ds[i]) for i in range(len(ds))]
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    assert all(np.array_equal(x, y) for x, y in zip(ours, theirs)), "token sequences differ"
    print(f"  outputs: {len(ours):,} documents, identical token sequences (ours in shard order)")


if __name__ == "__main__":
    main()
