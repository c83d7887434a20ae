"""WARC files in: Common Crawl's and any crawler's (WARC/1.0, 1.1 and the old 0.17/0.18), gzip or plain, local
or remote (``https://``, ``s3://``, anything fsspec opens), or a Common Crawl ``warc.paths.gz`` listing.

Rows are ``response`` records (their HTML, decoded), WET ``conversion`` records (their text) and ``revisit``
records; every other record type (``warcinfo``, ``request``, ``metadata``, ``resource``) is counted in the
shard's stats (``records_<type>``), not made a row. A response that is not usable is a rejected row with a
reason: ``non_html`` (another content type; detail says which), ``http_status`` (not 2xx), ``revisit`` (no
payload), ``truncated_record`` (``WARC-Truncated`` or a body shorter than its ``Content-Length``), ``too_large``,
``undecodable`` (no charset decodes it), ``empty``, ``corrupt_record`` (a gzip member or record that cannot be
read: the reader resumes at the next member). Provenance: ``url``, ``warc_date``, ``warc_record_id``,
``source_file``, ``source_offset`` (the record's byte offset in the file), and the id made from file and offset.

Charset: the HTTP ``Content-Type`` charset, else the page's ``<meta charset>``/``http-equiv``, else detection
(``charset-normalizer``); the one used is the ``charset`` column.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from typing import Any, ClassVar, Iterator

import pyarrow as pa
from pydantic import Field

from pipeline.records import make_id
from pipeline.source import Counters, Source, pack_by_bytes

HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+html")
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
HTML_SNIFF = re.compile(rb"<(!doctype\s+html|html|head|body|div|p|table|title|meta|a|span|br)[\s>/]", re.I)
GZIP_MAGIC = b"\x1f\x8b\x08"
REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)

COLUMNS = {"id": pa.string(), "text": pa.string(), "html": pa.string(), "source_file": pa.string(),
           "source_offset": pa.int64(), "url": pa.string(), "license": pa.string(), "warc_date": pa.string(),
           "warc_record_id": pa.string(), "warc_type": pa.string(), "http_status": pa.int64(),
           "content_type": pa.string(), "charset": pa.string(), "reason": pa.string(), "detail": pa.string()}


def open_input(path: str):
    """A binary, seekable file object for a local path or a URL (fsspec)."""
    if REMOTE.match(path) and not path.startswith("file://"):
        import fsspec

        return fsspec.open(path, "rb").open()
    return open(path.removeprefix("file://"), "rb")


def decode_html(body: bytes, header_charset: str | None) -> tuple[str | None, str | None]:
    """(text, charset used) or (None, None): the HTTP charset, else ``<meta>``, else detection."""
    candidates = []
    if header_charset:
        candidates.append(header_charset)
    m = META_CHARSET.search(body[:8192])
    if m:
        candidates.append(m.group(1).decode("ascii", "ignore"))
    for enc in candidates:
        try:
            return body.decode(enc), enc.lower()
        except (LookupError, UnicodeDecodeError):
            continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(body).best()
    if best is not None:
        return str(best), best.encoding
    return None, None


def _valid_member(f, pos: int) -> bool:
    """Whether a gzip member starting at ``pos`` decompresses to the start of a WARC record."""
    f.seek(pos)
    head = f.read(1 << 16)
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return d.decompress(head, 16).startswith(b"WARC/")
    except zlib.error:
        return False


def member_end(f, pos: int) -> int | None:
    """Offset just after the gzip member starting at ``pos`` (None if it does not end cleanly)."""
    f.seek(pos)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    consumed = 0
    try:
        while not d.eof:
            chunk = f.read(1 << 20)
            if not chunk:
                return None
            d.decompress(chunk)
            consumed += len(chunk) - len(d.unused_data)
            if d.eof:
                break
    except zlib.error:
        return None
    return pos + consumed


def next_record_start(f, after: int, compressed: bool = True, limit: int = 1 << 30) -> int | None:
    """Offset of the next readable record after ``after``: a gzip member that decompresses to ``WARC/``, or a line
    starting with ``WARC/`` (files can mix both, or start with junk); None at the end of the file."""
    pos = after
    chunk = 1 << 20
    while pos - after < limit:
        f.seek(pos)
        block = f.read(chunk + 8)
        if not block:
            return None
        candidates = []
        i = block.find(GZIP_MAGIC)
        while i != -1:
            if pos + i > after and _valid_member(f, pos + i):
                candidates.append(pos + i)
                break
            i = block.find(GZIP_MAGIC, i + 1)
        j = block.find(b"\nWARC/")
        while j != -1 and pos + j + 1 <= after:
            j = block.find(b"\nWARC/", j + 1)
        if j != -1:
            candidates.append(pos + j + 1)
        if candidates:
            return min(candidates)
        if len(block) < chunk + 8:
            return None
        pos += chunk
    return None


class WarcSource(Source):
    """WARC/WET files (or a Common Crawl paths listing) -> one row per response, conversion and revisit record."""

    type: ClassVar[str] = "warc"
    requires: ClassVar[tuple[str, ...]] = ("fastwarc", "charset_normalizer")
    extra: ClassVar[str] = "web"
    name: str = "ingest"
    #: Prefix of the lines of a ``*.paths.gz`` listing (Common Crawl: https://data.commoncrawl.org/).
    prefix: str = "https://data.commoncrawl.org/"
    #: Read at most this many files of a listing (0: all), taken in listing order.
    max_files: int = Field(0, ge=0)
    #: Responses larger than this (bytes of body) are rejected as ``too_large``.
    max_bytes: int = Field(5_000_000, gt=0)
    #: Keep responses whose content type is not HTML (as rows with text None) instead of rejecting them.
    keep_non_html: bool = False
    license: str | None = None
    #: Target bytes of compressed input per shard (files are never split; small ones are grouped).
    shard_bytes: int = 512 * 2**20

    def expand(self) -> list[str]:
        out: list[str] = []
        for p in self.paths:
            if p.endswith(".paths.gz") or p.endswith(".paths"):
                with open_input(p) as f:
                    data = f.read()
                text = gzip.decompress(data).decode() if p.endswith(".gz") else data.decode()
                lines = [line.strip() for line in text.splitlines() if line.strip()]
                if self.max_files:
                    lines = lines[: self.max_files]
                out += [line if REMOTE.match(line) else self.prefix.rstrip("/") + "/" + line for line in lines]
            elif REMOTE.match(p) and not p.startswith("file://"):
                out.append(p)
            else:
                out += Source.expand(self.model_copy(update={"paths": [p]}))
        return out

    def plan(self) -> list[dict[str, Any]]:
        items = []
        for path in self.expand():
            size = 1 << 30 if REMOTE.match(path) else _size(path)
            items.append((path, max(size, 1)))
        return [{"files": g} for g in pack_by_bytes(items, self.shard_bytes)]

    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table | Counters]:
        for path in spec["files"]:
            rows: list[dict] = []
            counts: dict[str, int] = {}
            for row in self.records(path, counts):
                rows.append(row)
                if len(rows) >= 512:
                    yield _table(rows)
                    rows = []
            if rows:
                yield _table(rows)
            yield Counters({f"records_{k}": v for k, v in counts.items()})

    # -- one file --------------------------------------------------------------------------------------------
    def records(self, path: str, counts: dict[str, int]) -> Iterator[dict]:
        from fastwarc.warc import ArchiveIterator

        try:
            f = open_input(path)
        except OSError as exc:
            yield self.row(path, 0, reason="corrupt_file", detail=f"cannot open: {exc}")
            return
        with f:
            head = f.read(2)
            compressed = head == GZIP_MAGIC[:2]
            start = 0
            while start is not None:
                f.seek(start)
                last = None
                try:
                    for rec in ArchiveIterator(f, parse_http=False):
                        last = rec.stream_pos
                        kind = str(rec.record_type).rsplit(".", 1)[-1].lower()
                        counts[kind] = counts.get(kind, 0) + 1
                        if kind in ("response", "revisit", "conversion"):
                            yield self.from_record(path, rec, kind)
                    return
                except (OSError, ValueError, EOFError, zlib.error) as exc:
                    # the record after the last good one cannot be read: it gets a corrupt_record row at its own
                    # offset (where the last good member ends), and reading resumes at the next readable record
                    if last is None:
                        broken = start
                    elif compressed:
                        broken = member_end(f, last) or next_record_start(f, last, compressed)
                    else:
                        broken = next_record_start(f, last, compressed)
                    if broken is None:
                        yield self.row(path, (last or start) + 1, reason="corrupt_record",
                                       detail=f"{type(exc).__name__}: {exc}; nothing readable after offset {last}")
                        return
                    counts["corrupt"] = counts.get("corrupt", 0) + 1
                    yield self.row(path, broken, reason="corrupt_record", detail=f"{type(exc).__name__}: {exc}")
                    start = next_record_start(f, broken, compressed)

    def row(self, path: str, offset: int, **values) -> dict:
        return {"id": make_id(path, offset), "source_file": path, "source_offset": offset, "license": self.license,
                **values}

    def from_record(self, path: str, rec, kind: str) -> dict:
        h = rec.headers
        url = (h.get("WARC-Target-URI") or "").strip().strip("<>") or None
        base = self.row(path, rec.stream_pos, url=url, warc_date=h.get("WARC-Date"),
                        warc_record_id=h.get("WARC-Record-ID"), warc_type=kind)
        if kind == "revisit":
            return {**base, "reason": "revisit", "detail": h.get("WARC-Profile")}
        try:
            block = rec.reader.read()
        except (OSError, ValueError, zlib.error) as exc:
            return {**base, "reason": "corrupt_record", "detail": f"{type(exc).__name__}: {exc}"}
        if h.get("WARC-Truncated"):
            return {**base, "reason": "truncated_record", "detail": f"WARC-Truncated: {h.get('WARC-Truncated')}"}
        if len(block) < rec.content_length:
            return {**base, "reason": "truncated_record",
                    "detail": f"record ends after {len(block)} of its {rec.content_length} bytes"}
        if kind == "conversion":
            text = block.decode("utf-8", "replace")
            return {**base, "text": text, "reason": None if text.strip() else "empty"}
        http = parse_http(block)
        if http is None:
            return {**base, "reason": "non_html", "detail": f"not an HTTP response ({url})"}
        status, headers, body = http
        ctype = (headers.get_content_type() if headers.get("Content-Type") else "").lower()
        base.update(http_status=status, content_type=ctype or None)
        if not 200 <= status < 300:
            return {**base, "reason": "http_status", "detail": str(status)}
        if len(body) > self.max_bytes:
            return {**base, "reason": "too_large", "detail": f"{len(body)} bytes > max_bytes {self.max_bytes}"}
        body = decode_content(body, headers.get("Content-Encoding"))
        is_html = ctype.startswith(HTML_TYPES) or (not ctype and HTML_SNIFF.search(body[:4096]) is not None)
        if not is_html and not self.keep_non_html:
            return {**base, "reason": "non_html", "detail": ctype or "no content type"}
        if not body.strip():
            return {**base, "reason": "empty"}
        if not is_html:
            return {**base, "reason": None}
        html, charset = decode_html(body, headers.get_content_charset())
        if html is None:
            return {**base, "reason": "undecodable", "detail": "no charset decodes the body"}
        return {**base, "html": html, "charset": charset, "reason": None}


class _Block:
    def __init__(self, data: bytes):
        self.data = data

    def makefile(self, mode):
        return io.BytesIO(self.data)


def parse_http(block: bytes):
    """(status, headers, body) of an HTTP response block with the stdlib's parser; None if it is not one. The body
    is what follows the headers (de-chunked when sent chunked); crawlers often store it decoded, so the headers'
    Content-Length is not trusted."""
    import http.client

    resp = http.client.HTTPResponse(_Block(block))
    try:
        resp.begin()
    except (http.client.HTTPException, ValueError, OSError):
        return None
    raw = block[resp.fp.tell():]
    body = raw
    if resp.chunked and re.match(rb"[0-9a-fA-F]+[ \t;]*[^\n]*\r?\n", raw):  # still chunked as sent
        try:
            body = resp.read()
        except (http.client.HTTPException, ValueError, OSError):
            body = raw
    return resp.status, resp.headers, body


def decode_content(body: bytes, encoding: str | None) -> bytes:
    """Undo a Content-Encoding when the body is still encoded (many crawlers store it decoded already)."""
    enc = (encoding or "").strip().lower()
    try:
        if enc in ("gzip", "x-gzip") and body[:2] == GZIP_MAGIC[:2]:
            return gzip.decompress(body)
        if enc == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
        if enc == "br":
            import brotli

            return brotli.decompress(body)
    except (OSError, EOFError, zlib.error, ImportError, Exception):  # noqa: BLE001 - keep the body as stored
        return body
    return body


def _size(path: str) -> int:
    import os

    try:
        return os.path.getsize(path)
    except OSError:
        return 1


def _table(rows: list[dict]) -> pa.Table:
    return pa.table({c: pa.array([r.get(c) for r in rows], t) for c, t in COLUMNS.items()})

