"""Outputs a trainer can read: Megatron-LM ``.bin/.idx`` per shard, bounded Parquet shards, a dataset card.

Megatron's indexed format (megatron-core ``IndexedDatasetBuilder``), which ``write_megatron`` reproduces byte
for byte for one sequence per document::

    .bin  token ids of every document back to back, in the index's dtype
    .idx  b"MMIDIDX\\x00\\x00" | <Q version 1 | <B dtype code | <Q sequence count N | <Q document count N+1
          | int32 lengths[N] | int64 byte pointers[N] | int64 document indices [0..N]

The dtype is uint16 when the tokenizer's full size (added tokens included) is below 65,500 (Megatron's
``DType.optimal_dtype`` threshold), else int32.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.records import BASE_FIELDS, KIND_FIELDS
from pipeline.shards import KEPT, atomic_path, write_atomic_bytes
from pipeline.stage import Stage, Verdict

INDEX_HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6, np.float32: 7,
               np.uint16: 8}


# ----------------------------------------------------------------------------------------------- tokenizer

def load_tokenizer(spec: str):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json``, its ``.gz``, a model directory or a Hub name."""
    from tokenizers import Tokenizer

    p = Path(spec)
    if p.is_dir():
        p = p / "tokenizer.json"
    if p.suffix == ".gz" and p.exists():
        return Tokenizer.from_str(gzip.decompress(p.read_bytes()).decode("utf-8"))
    if p.exists():
        return Tokenizer.from_file(str(p))
    return Tokenizer.from_pretrained(spec)  # needs the Hub


def index_dtype(tokenizer) -> type:
    """uint16 if every id fits (full size incl. added tokens < 65,500, as Megatron decides), else int32."""
    return np.uint16 if tokenizer.get_vocab_size(with_added_tokens=True) < 65500 else np.int32


def default_eod(tokenizer) -> int | None:
    for tok in ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "<|im_end|>"):
        tid = tokenizer.token_to_id(tok)
        if tid is not None:
            return tid
    return None


def write_megatron(prefix: str, docs: list[np.ndarray], dtype: type) -> dict[str, int]:
    """Write ``prefix.bin``/``prefix.idx`` (one sequence per document), each atomically; return sizes."""
    lengths = np.array([len(d) for d in docs], dtype=np.int32)
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(len(docs), dtype=np.int64)
    if len(docs) > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * itemsize, out=pointers[1:])
    bin_path, idx_path = Path(prefix + ".bin"), Path(prefix + ".idx")
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(bin_path)
    with open(tmp, "wb") as f:
        for chunk in range(0, len(docs), 4096):
            part = docs[chunk:chunk + 4096]
            if part:
                f.write(np.concatenate(part).astype(dtype, copy=False).tobytes())
    os.replace(tmp, bin_path)
    header = INDEX_HEADER + struct.pack("<Q", 1) + struct.pack("<B", DTYPE_CODES[dtype])
    body = struct.pack("<Q", len(docs)) + struct.pack("<Q", len(docs) + 1) + lengths.tobytes() + \
        pointers.tobytes() + np.arange(len(docs) + 1, dtype=np.int64).tobytes()
    write_atomic_bytes(idx_path, header + body)
    return {"bin_bytes": bin_path.stat().st_size, "idx_bytes": idx_path.stat().st_size}


class Tokenize(Stage):
    """Tokenize kept documents into one Megatron ``.bin/.idx`` pair per shard; empty documents are rejected.

    One worker encodes with ``num_cpus`` threads sharing one tokenizer (``tokenizers``' Rust thread pool, sized
    to ``num_cpus``): on the 2-vCPU machine, 2 processes encoding half the texts each took 1.14-1.45x as long as
    one process with 2 threads (docs/benchmarks.md). While one slice of documents is being encoded (the GIL
    released), the previous slice's ids are converted in Python, so the encoder threads do not wait for it.
    """

    type: ClassVar[str] = "tokenize"
    #: tokenizer.json (or .json.gz), a model directory, or a Hub name.
    tokenizer: str
    #: Column to tokenize.
    column: str = "text"
    #: Append the end-of-document token to every document.
    append_eod: bool = True
    #: End-of-document token id; default: the tokenizer's end-of-text token.
    eod_id: int | None = None
    #: Add the tokenizer's special tokens (e.g. a BOS) when encoding.
    add_special_tokens: bool = False
    #: Threads of one worker's tokenizer (its CPUs).
    num_cpus: float = 2.0
    #: Rows per ``process`` call: a whole shard, so encoding runs without pauses between batches.
    batch_size: int = 1_000_000
    #: Documents per encode call; the next slice is encoded while this one's ids are converted.
    encode_batch_size: int = 512

    def setup(self) -> None:
        # before the tokenizer's thread pool first starts; a worker's threads match the CPUs it holds
        os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, int(self.num_cpus))))
        self._tok = load_tokenizer(self.tokenizer)
        self._dtype = index_dtype(self._tok)
        self._eod = self.eod_id if self.eod_id is not None else default_eod(self._tok)
        if self.append_eod and self._eod is None:
            raise ValueError(f"tokenizer {self.tokenizer}: no end-of-text token found; set eod_id")

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids (index dtype, EOD appended) of ``texts``, in order; slice k+1 encodes while k converts."""
        from concurrent.futures import ThreadPoolExecutor

        step = max(1, self.encode_batch_size)
        slices = [texts[i:i + step] for i in range(0, len(texts), step)]
        extra = 1 if self.append_eod else 0
        out: list[np.ndarray] = []
        with ThreadPoolExecutor(1) as encoder:
            def submit(k):
                return encoder.submit(self._tok.encode_batch_fast, slices[k], add_special_tokens=self.add_special_tokens)

            nxt = submit(0) if slices else None
            for k in range(len(slices)):
                encs = nxt.result()
                if k + 1 < len(slices):
                    nxt = submit(k + 1)
                for enc in encs:
                    ids = enc.ids
                    arr = np.empty(len(ids) + extra if ids else 0, dtype=self._dtype)
                    if ids:
                        arr[:len(ids)] = ids
                        if extra:
                            arr[-1] = self._eod
                    out.append(arr)
        return out

    def process(self, table: pa.Table) -> Verdict:
        if not hasattr(self, "_tok"):
            self.setup()
        texts = table.column(self.column).to_pylist()
        idx = [i for i, t in enumerate(texts) if t]
        side: list[Any] = [None] * len(texts)
        for i, ids in zip(idx, self.encode([texts[i] for i in idx])):
            if len(ids):
                side[i] = ids
        reasons = [None if s is not None else "empty_document" for s in side]
        n_tokens = [len(s) if s is not None else 0 for s in side]
        return Verdict(reasons, columns={"n_tokens": pa.array(n_tokens, pa.int64())}, side=side,
                       counters={"tokens": float(sum(n_tokens))})

    def write_side(self, side: list[Any], stage_dir: str, shard: str) -> dict[str, Any]:
        if not hasattr(self, "_tok"):
            self.setup()
        sizes = write_megatron(os.path.join(stage_dir, "megatron", shard), side, self._dtype)
        return {**sizes, "tokens": int(sum(len(s) for s in side)), "documents": len(side),
                "dtype": np.dtype(self._dtype).name}

    def shard_info(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "eod_id": self._eod if hasattr(self, "_eod") else self.eod_id,
                "index_dtype": np.dtype(self._dtype).name if hasattr(self, "_dtype") else None}


def megatron_data_paths(run_dir: Path, weighted: bool = True) -> list[str]:
    """The ``--data-path`` arguments of a run's tokenize stage: prefixes, optionally weighted by tokens."""
    from pipeline.ledger import list_stages

    out = []
    for sd in list_stages(run_dir):
        if not (sd.path / "megatron").exists():
            continue
        for shard in sd.done_shards():
            art = sd.stats(shard).get("artifacts") or {}
            if not art.get("documents"):
                continue
            prefix = str((sd.path / "megatron" / shard).resolve())
            out += [str(art["tokens"]), prefix] if weighted else [prefix]
    return out


# ----------------------------------------------------------------------------------------------- export

def final_columns(table_schema: pa.Schema, kind: str, wanted: list[str]) -> list[str]:
    base = [f.name for f in BASE_FIELDS + KIND_FIELDS[kind]]
    if not wanted:
        return table_schema.names
    return base + [c for c in wanted if c not in base and c in table_schema.names]


def export_dataset(run_dir: str | Path, cfg) -> Path:
    """Write RUN/dataset/data/train-XXXXX-of-YYYYY.parquet (bounded size) and the dataset card.

    The last stage's kept shards are packed in order into files of at most ``export.max_shard_bytes`` of Arrow
    data, written into a temporary folder that replaces ``dataset/data`` at the end (a rerun rewrites it whole).
    """
    from pipeline.ledger import collect_stats, list_stages

    run_dir = Path(run_dir)
    last = list_stages(run_dir)[-1]
    shards = last.done_shards()
    out_root = run_dir / "dataset"
    tmp = out_root / ".tmp-data"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    limit = cfg.export.max_shard_bytes
    groups: list[list[pa.Table]] = [[]]
    size = 0
    columns = None
    for shard in shards:
        table = pq.read_table(last.file(KEPT, shard))
        columns = columns or final_columns(table.schema, cfg.kind, cfg.export.columns)
        table = table.select([c for c in columns if c in table.column_names])
        per_row = table.nbytes / max(len(table), 1)
        start = 0
        while start < len(table):
            room = int((limit - size) // max(per_row, 1))
            if room < 1:
                if size:  # this file is full: start the next one
                    groups.append([])
                    size = 0
                    continue
                room = 1  # a single row larger than the limit gets a file of its own
            piece = table.slice(start, room)
            groups[-1].append(piece)
            size += piece.nbytes
            start += len(piece)
            if size >= limit:
                groups.append([])
                size = 0
    groups = [g for g in groups if g] or [[]]
    total = len(groups)
    for i, group in enumerate(groups):
        path = tmp / f"train-{i:05d}-of-{total:05d}.parquet"
        if group:
            pq.write_table(pa.concat_tables(group, promote_options="permissive"), path, compression="zstd")
        else:
            pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), path)
    final = out_root / "data"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    stats = collect_stats(run_dir)
    if (run_dir / "megatron-data-path.txt").exists():
        shutil.copy2(run_dir / "megatron-data-path.txt", out_root / "megatron-data-path.txt")
    try:
        from pipeline.plots import plot_funnel

        plot_funnel(stats, str(out_root / "funnel.png"))
    except ImportError:
        pass
    write_card(out_root, cfg, stats, run_dir)
    return out_root


# ----------------------------------------------------------------------------------------------- card

def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                         (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return label
    return "1B<n<10B"


def source_licenses(run_dir: Path) -> Counter:
    counts: Counter = Counter()
    for f in sorted((run_dir / "dataset" / "data").glob("*.parquet")):
        if "license" in pq.ParquetFile(f).schema_arrow.names:
            counts.update(str(v) for v in pq.read_table(f, columns=["license"]).column("license").to_pylist())
    return counts


def write_card(out_root: Path, cfg, stats: dict, run_dir: Path) -> Path:
    import yaml

    stages = stats["stages"]
    n_final = stages[-1]["kept"] if stages else 0
    header = {
        "license": cfg.export.license,
        "language": list(cfg.export.language),
        "pretty_name": cfg.export.pretty_name or run_dir.name,
        "size_categories": [size_category(n_final)],
        "task_categories": ["text-generation"],
        "tags": ["pretraining", "swallow-curator", cfg.kind],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    }
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
             f"# {header['pretty_name']}", ""]
    if cfg.description:
        lines += [cfg.description, ""]
    lines += ["Built with swallow-curator. Every input record is either in this dataset or was rejected with a "
              "reason by one stage; `swallow verify` checked the run's ledger.", "",
              "![funnel](funnel.png)", "", "## Pipeline", "",
              "| # | stage | in | kept | rejected | tokens |", "|---|---|---:|---:|---:|---:|"]
    for i, st in enumerate(stages):
        tokens = st["counters"].get("tokens", st["counters"].get("output_tokens", ""))
        lines.append(f"| {i} | {st['stage']} | {st['in']:,} | {st['kept']:,} | {st['rejected']:,} | "
                     f"{int(tokens):,} |" if tokens != "" else
                     f"| {i} | {st['stage']} | {st['in']:,} | {st['kept']:,} | {st['rejected']:,} | |")
    lines += ["", "## Rejection reasons", "", "| stage | reason | records |", "|---|---|---:|"]
    for st in stages:
        for reason, n in st["reasons"].items():
            lines.append(f"| {st['stage']} | `{reason}` | {n:,} |")
    rewrites = [(s, st) for s, st in zip(cfg.stages, stages[1:]) if s.type == "rewrite"]
    if rewrites:
        lines += ["", "## Rewriting models and prompts", "", "| stage | model | prompt | prompt sha256 |",
                  "|---|---|---|---|"]
        for s, st in rewrites:
            info = st.get("info", {})
            lines.append(f"| {s.name} | `{s.model}` | `{s.prompt}` | `{info.get('prompt_sha256', '')[:16]}` |")
    lines += ["", "## Sources", "", "| input | |", "|---|---|"]
    for p in cfg.source.paths:
        lines.append(f"| `{p}` | {cfg.source.type} |")
    lic = source_licenses(run_dir)
    if lic:
        lines += ["", "| license of source records | records |", "|---|---:|"]
        for name, n in lic.most_common():
            lines.append(f"| {name} | {n:,} |")
    lines += ["", "## Files", "", "- `data/train-*.parquet`: the records (text and provenance columns).",
              "- `megatron-data-path.txt`: Megatron-LM `--data-path` (tokens-weighted prefixes), if tokenized.", ""]
    card = out_root / "README.md"
    write_atomic_bytes(card, "\n".join(lines).encode())
    (out_root / "stats.json").write_text(json.dumps(stats, indent=1))
    return card

