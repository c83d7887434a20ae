"""Damaged WARC files made from the real ones in ../shared/data/warc: records split out of their gzip members,
then a Content-Length that lies, a charset Python's codecs choke on, junk between records; plain or gzip."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections import Counter

from tests.conftest import WARC

LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*\r?$")


def records_of(name: str) -> list[bytes]:
    """The raw records (header, block, trailer) of a real per-record-gzip WARC file, one per member."""
    data = (WARC / name).read_bytes()
    out = []
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out.append(d.decompress(data))
        data = d.unused_data
    return out


def header_end(raw: bytes) -> int:
    return raw.index(b"\r\n\r\n") + 4


def declared(raw: bytes) -> int:
    return int(LENGTH.search(raw[:header_end(raw)]).group(1))


def with_length(raw: bytes, length: int) -> bytes:
    """The record with its WARC Content-Length set to ``length`` (its block and trailer untouched)."""
    head = raw[:header_end(raw)]
    m = LENGTH.search(head)
    return head[:m.start(1)] + str(length).encode() + head[m.end(1):] + raw[len(head):]


def with_block(raw: bytes, block: bytes) -> bytes:
    """The record with another block, its Content-Length made true."""
    head = raw[:header_end(raw)]
    return with_length(head + block + b"\r\n\r\n", len(block))


def block_of(raw: bytes) -> bytes:
    start = header_end(raw)
    return raw[start:start + declared(raw)]


def pack(records: list[bytes], compressed: bool) -> bytes:
    return b"".join(gzip.compress(r, 6) for r in records) if compressed else b"".join(records)


def warcio_types(records: list[bytes]) -> Counter:
    """warcio's own reading of each record header (independent of our reader): record types, counted."""
    from warcio.archiveiterator import ArchiveIterator

    types: Counter = Counter()
    for raw in records:
        rec = next(iter(ArchiveIterator(io.BytesIO(raw))))
        types[rec.rec_type] += 1
    return types
