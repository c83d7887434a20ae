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


def synthetic_records() -> list[bytes]:
    """A small WARC written by warcio (no shared data: the fast tier): warcinfo, then request/response pairs whose
    HTML pages differ in size, charset and language, and a metadata record at the end."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    def one(make) -> bytes:
        buf = io.BytesIO()
        writer = WARCWriter(buf, gzip=False)
        writer.write_record(make(writer))
        return buf.getvalue()

    out = [one(lambda w: w.create_warcinfo_record("synthetic.warc", {"software": "tests"}))]
    pages = [("en", "utf-8", "<p>An English paragraph about rivers and the sea.</p>" * 40),
             ("ja", "euc-jp", "<p>日本語の段落です。川と海について書かれています。</p>" * 30),
             ("de", "iso-8859-1", "<p>Ein Absatz über Flüsse und das Meer, größer als gedacht.</p>" * 25),
             ("en", "utf-8", "<p>Short.</p>"),
             ("fr", "utf-8", "<p>Un paragraphe sur les rivières et la mer, écrit en français.</p>" * 60),
             ("en", "utf-8", "<table>" + "<tr><td>cell</td></tr>" * 300 + "</table>")]
    for i, (lang, charset, body) in enumerate(pages):
        url = f"http://example.org/{lang}/{i}.html"
        html = f'<html lang="{lang}"><head><meta charset="{charset}"><title>p{i}</title></head><body>{body}' \
               f'</body></html>'.encode(charset)
        out.append(one(lambda w, url=url: w.create_warc_record(url, "request", payload=io.BytesIO(
            f"GET /{i}.html HTTP/1.1\r\nHost: example.org\r\n\r\n".encode()))))
        http = StatusAndHeaders("200 OK", [("Content-Type", f"text/html; charset={charset}"),
                                           ("Content-Length", str(len(html)))], protocol="HTTP/1.1")
        out.append(one(lambda w, url=url, html=html, http=http: w.create_warc_record(
            url, "response", payload=io.BytesIO(html), http_headers=http)))
    out.append(one(lambda w: w.create_warc_record("http://example.org/meta", "metadata",
                                                  payload=io.BytesIO(b"fetchTimeMs: 12\r\n"))))
    return out


def records_of(name: str) -> list[bytes]:
    """The raw records (header, block, trailer) of a real per-record-gzip WARC file, one per member;
    ``synthetic``: ``synthetic_records()``."""
    if name == "synthetic":
        return synthetic_records()
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
