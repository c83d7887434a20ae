"""Megatron-LM's indexed dataset format (``.bin/.idx``), written without megatron-core or torch.

Megatron's indexed format (megatron-core ``IndexedDatasetBuilder``), which ``write_megatron`` reproduces byte
for byte for one sequence per document::

    .bin  token ids of every document back to back, in the index's dtype
    .idx  b"MMIDIDX\\x00\\x00" | <Q version 1 | <B dtype code | <Q sequence count N | <Q document count N+1
          | int32 lengths[N] | int64 byte pointers[N] | int64 document indices [0..N]

The dtype is uint16 when the tokenizer's full size (added tokens included) is below 65,500 (Megatron's
``DType.optimal_dtype`` threshold), else int32.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from pipeline.store.shards import atomic_path, write_atomic_bytes

INDEX_HEADER = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6, np.float32: 7,
               np.uint16: 8}


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


def read_index(idx_path: Path) -> tuple[type, np.ndarray, np.ndarray]:
    """(dtype, lengths, byte pointers) of a ``.idx`` file; ValueError when it is not a well-formed index."""
    data = Path(idx_path).read_bytes()
    head = len(INDEX_HEADER) + 8 + 1 + 16
    if len(data) < head or not data.startswith(INDEX_HEADER):
        raise ValueError("not a Megatron index (bad header)")
    version, code = struct.unpack_from("<QB", data, len(INDEX_HEADER))
    n_seq, n_doc = struct.unpack_from("<QQ", data, len(INDEX_HEADER) + 9)
    dtype = {v: k for k, v in DTYPE_CODES.items()}.get(code)
    if version != 1 or dtype is None or n_doc != n_seq + 1:
        raise ValueError(f"unsupported index (version {version}, dtype code {code}, {n_seq} sequences, "
                         f"{n_doc} document indices)")
    want = head + n_seq * 4 + n_seq * 8 + n_doc * 8
    if len(data) != want:
        raise ValueError(f"index is {len(data)} bytes, {want} expected for {n_seq} sequences")
    lengths = np.frombuffer(data, np.int32, n_seq, head)
    pointers = np.frombuffer(data, np.int64, n_seq, head + n_seq * 4)
    return dtype, lengths, pointers


def verify_megatron(stage_dir) -> list[str]:
    """Every finished shard's ``.bin/.idx``: present, well formed, consistent with each other, with the stats and
    with the kept rows (their ``n_tokens``, in order). Catches truncated, deleted or swapped files."""
    import pyarrow.parquet as pq

    problems = []
    for shard in stage_dir.done_shards():
        where = f"{stage_dir.path.name}/{shard}"
        art = stage_dir.stats(shard).get("artifacts") or {}
        prefix = stage_dir.artifact("megatron", shard)
        bin_path, idx_path = Path(f"{prefix}.bin"), Path(f"{prefix}.idx")
        if not bin_path.exists() or not idx_path.exists():
            problems.append(f"{where}: Megatron file missing ({bin_path.name} or {idx_path.name})")
            continue
        try:
            dtype, lengths, pointers = read_index(idx_path)
        except ValueError as exc:
            problems.append(f"{where}: {idx_path.name}: {exc}")
            continue
        itemsize = np.dtype(dtype).itemsize
        tokens = int(lengths.sum())
        if bin_path.stat().st_size != tokens * itemsize:
            problems.append(f"{where}: {bin_path.name} is {bin_path.stat().st_size} bytes, the index describes "
                            f"{tokens} tokens of {itemsize} bytes")
        expected_ptr = np.concatenate([[0], np.cumsum(lengths[:-1].astype(np.int64) * itemsize)]) \
            if len(lengths) else lengths.astype(np.int64)
        if not np.array_equal(pointers, expected_ptr):
            problems.append(f"{where}: {idx_path.name}: byte pointers do not follow the lengths")
        if art.get("tokens") != tokens or art.get("documents") != len(lengths):
            problems.append(f"{where}: stats say {art.get('documents')} documents / {art.get('tokens')} tokens, "
                            f"the index {len(lengths)} / {tokens}")
        kept = pq.read_table(stage_dir.file("kept", shard), columns=["n_tokens"]).column("n_tokens")
        if kept.to_pylist() != lengths.tolist():
            problems.append(f"{where}: kept rows' n_tokens differ from the index's lengths")
    return problems
