"""Tokenize kept documents into Megatron-LM ``.bin/.idx`` files, one pair per shard, and the ``--data-path``."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import NotSetUp
from pipeline.core.stage import Stage, Verdict
from pipeline.store.shards import StageDir, write_atomic_bytes
from stages.tokenize.megatron import verify_megatron, write_megatron


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
    #: What a special token's text inside a document becomes: ``text`` (default: plain text, e.g. a page quoting
    #: ``<|endoftext|>`` is tokenized as the characters it shows, so no document holds an EOD in its middle) or
    #: ``control`` (the special token's id, as Megatron-LM's preprocess_data.py does: byte identity with it on such
    #: texts).
    special_tokens_in_text: Literal["text", "control"] = "text"
    #: Threads of one worker's tokenizer (its CPUs).
    num_cpus: float = 2.0
    #: Rows per ``process`` call: a whole shard, so encoding runs without pauses between batches.
    batch_size: int = 1_000_000
    #: Documents per encode call; the next slice is encoded while this one's ids are converted.
    encode_batch_size: int = Field(512, ge=1)
    _tok: Any = PrivateAttr(None)
    _dtype: Any = PrivateAttr(None)
    _eod: int | None = PrivateAttr(None)

    def preflight(self) -> list[str]:
        from pipeline.core.component import missing_path

        return super().preflight() + missing_path(self.name, "tokenizer", self.tokenizer, "tokenizer file or folder")

    def setup(self) -> None:
        # before the tokenizer's thread pool first starts; a worker's threads match the CPUs it holds
        os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, int(self.num_cpus))))
        self._tok = load_tokenizer(self.tokenizer)
        self._tok.encode_special_tokens = self.special_tokens_in_text == "text"
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
                return encoder.submit(self._tok.encode_batch_fast, slices[k], add_special_tokens=self.add_special_tokens)  # noqa: E501

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

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if self._tok is None:
            raise NotSetUp("tokenize: process() before setup()")
        texts = table.column(self.column).to_pylist()
        idx = [i for i, t in enumerate(texts) if t]
        side: list[Any] = [None] * len(texts)
        for i, ids in zip(idx, self.encode([texts[i] for i in idx])):
            if len(ids):
                side[i] = ids
        reasons = [None if s is not None else "empty_document" for s in side]
        n_tokens = [len(s) if s is not None else 0 for s in side]
        return Verdict(reasons, columns={"n_tokens": pa.array(n_tokens, pa.int64())}, artifacts=side,
                       counters={"tokens": float(sum(n_tokens))})

    def makes(self) -> set[str]:
        return {"n_tokens"}

    def write_artifacts(self, kept: list[Any], ctx) -> dict[str, Any]:
        """The shard's ``megatron/SHARD.bin/.idx`` from the kept documents' ids."""
        sizes = write_megatron(str(ctx.stage.dir.artifact("megatron", ctx.shard)), kept, self._dtype)
        return {**sizes, "tokens": int(sum(len(s) for s in kept)), "documents": len(kept),
                "dtype": np.dtype(self._dtype).name,
                "files": [f"megatron/{ctx.shard}.bin", f"megatron/{ctx.shard}.idx"]}  # (sealed in the marker)

    def finalize(self, ctx) -> dict[str, Any]:
        """``RUN/megatron-data-path.txt``: what Megatron-LM's ``--data-path`` takes (token-weighted prefixes)."""
        paths = megatron_data_paths(ctx.dir)
        if paths:
            write_atomic_bytes(Path(ctx.run_dir) / "megatron-data-path.txt", (" ".join(paths) + "\n").encode())
        return {"data_path": paths}

    def verify(self, stage_dir: StageDir) -> list[str]:
        """Each shard's ``.bin/.idx`` exist, agree with each other and with the kept rows' token counts."""
        return verify_megatron(stage_dir)

    def shard_info(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "eod_id": self._eod if self._eod is not None else self.eod_id,
                "index_dtype": np.dtype(self._dtype).name if self._dtype is not None else None}


def megatron_data_paths(sd: StageDir, weighted: bool = True) -> list[str]:
    """The ``--data-path`` arguments of a tokenize stage: prefixes, optionally weighted by tokens."""
    out = []
    for shard in sd.done_shards():
        art = sd.verified_stats(shard).get("artifacts") or {}
        if not art.get("documents"):
            continue
        prefix = str(sd.artifact("megatron", shard).resolve())
        out += [str(art["tokens"]), prefix] if weighted else [prefix]
    return out
