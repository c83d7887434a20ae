"""A bounded reading of a GGUF file's header before any library parses it.

transformers reads GGUF metadata through the ``gguf`` package, which makes Python objects of every array element:
an 8 MB file holding one metadata array of 8 million bytes took 2.1 GB there (32 MB: 6.5 GB), and a file cut short
ended in a traceback from deep inside. So the import walks the header once itself, in a streamed, bounded way, and
refuses a file whose header breaks a limit or runs past its end, with one line saying which key and what to do.

Format (GGUF v2/v3, little-endian): ``GGUF``, version u32, tensor count u64, key/value count u64; each key is a
string (u64 length + bytes) followed by a value type u32 and the value (arrays: element type u32, count u64, then
the elements); then one entry per tensor (name, dims, type, offset). Limits are far above every real vocabulary
(Gemma 3: 262,144 tokens; Qwen2.5: 151,936 tokens and 151,387 merges) and far below what hurts.
"""

from __future__ import annotations

import struct
from pathlib import Path

#: The most elements one metadata array may hold, and all arrays together.
MAX_ARRAY_ITEMS = 1 << 20
MAX_TOTAL_ITEMS = 1 << 22
#: The longest one string may be (a chat template is a few KB; a whole tokenizer.json fits easily).
MAX_STRING_BYTES = 16 << 20
MAX_KEYS = 1 << 16
MAX_TENSORS = 1 << 16
MAX_DIMS = 8

_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class BadGguf(ValueError):
    """The file is not a GGUF within the limits; the message names the key and the byte offset."""


class _Reader:
    def __init__(self, f, size: int):
        self.f, self.size, self.pos = f, size, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise BadGguf(f"truncated at byte {self.pos:,} while reading {what} ({n:,} bytes needed, file is "
                          f"{self.size:,} bytes)")
        data = self.f.read(n)
        if len(data) != n:
            raise BadGguf(f"truncated at byte {self.pos:,} while reading {what}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise BadGguf(f"truncated at byte {self.pos:,} while reading {what} ({n:,} bytes needed, file is "
                          f"{self.size:,} bytes)")
        self.f.seek(n, 1)
        self.pos += n

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.take(8, what))[0]

    def string(self, what: str, keep: bool = True) -> str | None:
        n = self.u64(f"the length of {what}")
        if n > MAX_STRING_BYTES:
            raise BadGguf(f"{what}: a string of {n:,} bytes (limit {MAX_STRING_BYTES:,})")
        if not keep:
            self.skip(n, what)
            return None
        return self.take(n, what).decode("utf-8", "replace")


def check_gguf_header(path: Path) -> dict:
    """Walk ``path``'s header within the limits above; returns ``{version, tensors, keys, architecture,
    header_bytes}`` or raises ``BadGguf``. Reads the header only, never the tensor data."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        r = _Reader(f, size)
        if r.take(4, "the magic") != b"GGUF":
            raise BadGguf("not a GGUF file (its first 4 bytes are not 'GGUF')")
        version = r.u32("the version")
        if version not in (2, 3):
            raise BadGguf(f"GGUF version {version} (2 and 3 are read)")
        tensors, keys = r.u64("the tensor count"), r.u64("the key count")
        if tensors > MAX_TENSORS or keys > MAX_KEYS:
            raise BadGguf(f"{tensors:,} tensors and {keys:,} metadata keys (limits {MAX_TENSORS:,} and "
                          f"{MAX_KEYS:,})")
        total_items, arch = 0, None
        for k in range(keys):
            key = r.string(f"metadata key {k}")
            vtype = r.u32(f"the type of {key!r}")
            if vtype in _SCALARS:
                r.skip(_SCALARS[vtype], key)
            elif vtype == _STRING:
                value = r.string(key, keep=key == "general.architecture")
                if value is not None:
                    arch = value
            elif vtype == _ARRAY:
                etype, count = r.u32(f"the element type of {key!r}"), r.u64(f"the length of {key!r}")
                total_items += count
                if count > MAX_ARRAY_ITEMS or total_items > MAX_TOTAL_ITEMS:
                    raise BadGguf(f"metadata {key!r}: an array of {count:,} elements ({total_items:,} in all "
                                  f"so far; limits {MAX_ARRAY_ITEMS:,} per array, {MAX_TOTAL_ITEMS:,} in all)")
                if etype in _SCALARS:
                    r.skip(count * _SCALARS[etype], key)
                elif etype == _STRING:
                    for _ in range(count):
                        r.string(key, keep=False)
                else:
                    raise BadGguf(f"metadata {key!r}: arrays of type {etype} are not read")
            else:
                raise BadGguf(f"metadata {key!r}: unknown value type {vtype}")
        for t in range(tensors):
            name = r.string(f"tensor {t}'s name")
            dims = r.u32(f"the dimension count of tensor {name!r}")
            if dims > MAX_DIMS:
                raise BadGguf(f"tensor {name!r}: {dims} dimensions (limit {MAX_DIMS})")
            r.skip(8 * dims + 4 + 8, f"tensor {name!r}'s shape, type and offset")
        return {"version": version, "tensors": tensors, "keys": keys, "architecture": arch, "header_bytes": r.pos}
