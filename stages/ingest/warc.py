"""WARC files in: Common Crawl's and any crawler's (WARC/1.0, 1.1 and the old 0.17/0.18), gzip or plain, local
or remote (``https://``, ``s3://``, anything fsspec opens), or a Common Crawl ``warc.paths.gz`` listing.

Rows are ``response`` records (their HTML, decoded), WET ``conversion`` records (their text) and ``revisit``
records; every record header is counted in the shard's stats by type (``records_<type>``), so the other types
(``warcinfo``, ``request``, ``metadata``, ``resource``) are counted, not rows. Framing trusts no length
(``stages/ingest/warc_reader.py``): a record whose ``Content-Length`` does not end where the record ends is
``bad_content_length`` and reading goes on at the next real record header; bytes that are no record (junk, a
destroyed header, a gzip member that does not inflate) are one ``corrupt_record`` row per span at its offset
(``junk_spans``). A response that is not usable is a rejected row with a reason: ``non_html`` (another
content type; detail says which), ``http_status`` (not 2xx), ``revisit`` (no payload), ``truncated_record``
(``WARC-Truncated``, or the file ends inside it), ``too_large`` (more than ``max_bytes`` stored, or a
``Content-Encoding`` body that inflates past it: decoding stops there), ``undecodable`` (no charset decodes it),
``empty``, ``corrupt_record`` (its gzip member does not inflate). Provenance: ``url``, ``warc_date``,
``warc_record_id``, ``source_file``, ``source_offset`` (the record's offset in the file: its gzip member's in a
compressed file), and the id made from file and offset. Memory per record is bounded by ``max_bytes``.

Charset: the HTTP ``Content-Type`` charset, else the page's ``<meta charset>``/``http-equiv``, else detection
(``charset-normalizer``); the one used is the ``charset`` column.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pyarrow as pa
from pydantic import Field

from pipeline.core.errors import ConfigError
from pipeline.core.records import clean_row, make_id
from pipeline.core.source import Counters, Source
from stages.ingest.http_body import TooLarge, decode_content, parse_http
from stages.ingest.warc_reader import Junk, Record, iter_records

HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml+html")
#: The reference of ``meta_charset`` (which gives its first match in linear time; the pattern backtracks through
#: every unclosed ``<meta``: quadratic); kept for the equivalence test, never run on a corpus.
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_CHARSET_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:.")
_WS = b" \t\n\r\f\v"


def _charset_at(low: bytes, raw: bytes, k: int, end: int) -> bytes | None:
    """The charset token of ``charset = "token`` starting at ``k`` (just after ``charset``), within ``end``."""
    while k < end and low[k] in _WS:
        k += 1
    if k >= end or low[k] != ord("="):
        return None
    k += 1
    while k < end and low[k] in _WS:
        k += 1
    if k < end and low[k] in b"\"'":
        k += 1
    while k < end and low[k] in _WS:
        k += 1
    v = k
    while k < end and raw[k] in _CHARSET_CHARS:
        k += 1
    return raw[v:k] if k > v else None


def meta_charset(body: bytes) -> bytes | None:
    """``META_CHARSET.search(body).group(1)`` in linear time: the last ``charset=`` assignment inside the first
    ``<meta`` tag (up to its first ``>``) that has one. Tags without a ``>`` end at the text's end, so every later
    ``<meta`` lies inside the first one's span and is settled with it."""
    low = body.lower()
    pos = 0
    while True:
        i = low.find(b"<meta", pos)
        if i < 0:
            return None
        end = low.find(b">", i + 5)
        end = len(low) if end < 0 else end
        k = low.rfind(b"charset", i + 6, end)
        while k >= 0:
            value = _charset_at(low, body, k + 7, end)
            if value:
                return value
            k = low.rfind(b"charset", i + 6, k)
        pos = end
HTML_SNIFF = re.compile(rb"<(!doctype\s+html|html|head|body|div|p|table|title|meta|a|span|br)[\s>/]", re.I)
#: Record types that become rows; every other type is counted in the stats (``records_<type>``).
ROW_TYPES = ("response", "revisit", "conversion")
#: Room for a response's HTTP headers beside ``max_bytes`` of body: a record's block is read up to both.
HTTP_HEAD = 1 << 16
#: A shard's rows are handed on in tables of at most this many rows or bytes of HTML.
BATCH_ROWS, BATCH_BYTES = 512, 64 << 20
REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)

COLUMNS = {"id": pa.string(), "text": pa.string(), "html": pa.string(), "source_file": pa.string(),
           "source_offset": pa.int64(), "warc_inner_offset": pa.int64(), "url": pa.string(), "license": pa.string(), "warc_date": pa.string(),  # noqa: E501
           "warc_record_id": pa.string(), "warc_type": pa.string(), "http_status": pa.int64(),
           "content_type": pa.string(), "charset": pa.string(), "reason": pa.string(), "detail": pa.string()}


def open_input(path: str):
    """A binary, seekable file object for a local path or a URL (fsspec)."""
    if REMOTE.match(path) and not path.startswith("file://"):
        import fsspec

        return fsspec.open(path, "rb").open()
    return open(path.removeprefix("file://"), "rb")


#: Codecs Python has that no web page is written in: some raise outside UnicodeDecodeError (punycode, idna) or
#: interpret escapes; a page that names one is decoded as if it named none.
NOT_WEB_CHARSETS = {"punycode", "idna", "unicode_escape", "raw_unicode_escape", "undefined", "palmos", "mbcs",
                    "oem", "utf_7"}


def _text_codec(name: str) -> str | None:
    """Python's name of a text charset a page may be in, or None."""
    import codecs

    try:
        info = codecs.lookup(name.strip())
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name.replace("-", "_") in NOT_WEB_CHARSETS:
        return None
    return info.name


def decode_html(body: bytes, header_charset: str | None) -> tuple[str | None, str | None]:
    """(text, charset used) or (None, None): the HTTP charset, else ``<meta>``, else detection."""
    candidates = []
    if header_charset:
        candidates.append(header_charset)
    found = meta_charset(body[:8192])
    if found:
        candidates.append(found.decode("ascii", "ignore"))
    for enc in candidates:
        codec = _text_codec(enc)
        if codec is None:
            continue
        try:
            return body.decode(codec), enc.lower()
        except (UnicodeError, ValueError):
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


#: A listing line (a Common Crawl path is ~140 bytes) and the number of files one listing may name (a crawl lists
#: ~90,000 WARC files).
MAX_LISTING_LINE, MAX_LISTING_FILES = 4096, 10_000_000


class ListingError(ConfigError):
    """A paths listing that is not one (one line naming the file and what to do)."""


def read_listing(path: str, max_files: int = 0) -> list[str]:
    """The non-empty lines of a ``*.paths(.gz)`` listing, streamed (a 3 MB listing inflating to 3 GiB is read line by
    line and refused at the first line or count over the bounds, never inflated whole)."""
    import io

    limit = max_files or MAX_LISTING_FILES
    out: list[str] = []
    with open_input(path) as raw:
        f = io.BufferedReader(gzip.GzipFile(fileobj=raw)) if path.endswith(".gz") else raw
        n = 0
        try:
            while len(out) < limit:
                line = f.readline(MAX_LISTING_LINE + 1)
                if not line:
                    break
                n += 1
                if len(line) > MAX_LISTING_LINE:
                    raise ListingError(f"{path}: line {n} is over {MAX_LISTING_LINE} bytes: not a paths listing")
                text = line.decode("utf-8", "replace").strip()
                if text:
                    out.append(text)
            else:
                if not max_files and f.readline(MAX_LISTING_LINE + 1).strip():
                    raise ListingError(f"{path}: more than {MAX_LISTING_FILES:,} files listed; set max_files")
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ListingError(f"{path}: the listing cannot be read ({type(exc).__name__}: {exc})") from None
    return out


WARC_NAMES = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet.gz", ".paths", ".paths.gz")


def _looks_like_warc(f: Path) -> bool:
    if f.name.lower().endswith(WARC_NAMES):
        return True
    try:
        with f.open("rb") as fh:
            head = fh.read(1 << 16)
        if head[:2] == b"\x1f\x8b":
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 64)
        return head.startswith(b"WARC/")
    except (OSError, zlib.error, gzip.BadGzipFile):
        return False


class WarcSource(Source):
    """WARC/WET files (or a Common Crawl paths listing) -> one row per response, conversion and revisit record."""

    type: ClassVar[str] = "warc"
    sniff_order: ClassVar[int | None] = 10
    kind: ClassVar[str] = "web"
    not_measured: ClassVar[frozenset[str]] = frozenset({"source_offset", "warc_inner_offset", "http_status"})
    requires: ClassVar[tuple[str, ...]] = ("charset_normalizer",)
    extra: ClassVar[str] = "web"
    name: str = "ingest"

    @classmethod
    def sniff(cls, inputs: list[str], files: list[Path], kind: str | None) -> tuple[str, str] | None:
        """WARC/WET files (by name, or a record header within the first 64 KiB, gzip or not) or a CC listing."""
        return ("web", "WARC/WET files") if files and all(_looks_like_warc(f) for f in files) else None

    #: Prefix of the lines of a ``*.paths.gz`` listing (Common Crawl: https://data.commoncrawl.org/).
    prefix: str = "https://data.commoncrawl.org/"
    #: Read at most this many files of a listing (0: all), taken in listing order.
    max_files: int = Field(0, ge=0)
    #: Responses larger than this (bytes of body) are rejected as ``too_large``.
    max_bytes: int = Field(5_000_000, gt=0, le=1 << 32)
    #: Keep responses whose content type is not HTML (as rows with text None) instead of rejecting them.
    keep_non_html: bool = False
    license: str | None = None
    #: Target bytes of compressed input per shard (files are never split; small ones are grouped).
    shard_bytes: int = Field(512 * 2**20, ge=1, le=1 << 44)

    def makes(self) -> set[str]:
        return set(COLUMNS)

    def expand(self) -> list[str]:
        out: list[str] = []
        for p in self.paths:
            if p.endswith(".paths.gz") or p.endswith(".paths"):
                lines = read_listing(p, self.max_files)
                out += [line if REMOTE.match(line) else self.prefix.rstrip("/") + "/" + line for line in lines]
            elif REMOTE.match(p) and not p.startswith("file://"):
                out.append(p)
            else:
                out += Source.expand(self.model_copy(update={"paths": [p]}))
        return out

    def plan(self) -> list[dict[str, Any]]:
        items = []
        for path in self.inputs():
            size = 1 << 30 if REMOTE.match(path) else _size(path)
            items.append((path, max(size, 1)))
        return [{"files": g} for g in self.pack(items)]

    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table | Counters]:
        for path in spec["files"]:
            rows: list[dict] = []
            size = 0
            counts: dict[str, int] = {}
            for row in self.records(path, counts):
                rows.append(row)
                size += len(row.get("html") or row.get("text") or "")
                if len(rows) >= BATCH_ROWS or size >= BATCH_BYTES:
                    yield _table(rows)
                    rows, size = [], 0
            if rows:
                yield _table(rows)
            yield Counters(counts)

    # -- one file --------------------------------------------------------------------------------------------
    def records(self, path: str, counts: dict[str, int]) -> Iterator[dict]:
        """One row per row-type record and per span of junk; every record header counted by type
        (``records_<type>``), damaged ones also in ``damaged_records``, junk spans in ``junk_spans``."""
        try:
            f = open_input(path)
        except OSError as exc:
            yield self.row(path, 0, reason="corrupt_file", detail=f"cannot open: {exc}")
            return
        with f:
            try:
                for item in iter_records(f, self.max_bytes + HTTP_HEAD):
                    if isinstance(item, Junk):
                        counts["junk_spans"] = counts.get("junk_spans", 0) + 1  # (bytes that are no record)
                        yield self.row(path, item.offset, item.inner,
                                       reason="truncated_record" if item.truncated else "corrupt_record",
                                       detail=f"{item.detail} ({item.size} bytes)")
                        continue
                    kind = item.type
                    counts[f"records_{kind}"] = counts.get(f"records_{kind}", 0) + 1  # every header, by type
                    if item.problem:
                        counts["damaged_records"] = counts.get("damaged_records", 0) + 1
                    if kind in ROW_TYPES:
                        yield self.guarded(path, item, kind)
            except OSError as exc:  # the file itself could not be read further (a remote connection lost)
                yield self.row(path, -1, reason="corrupt_file", detail=f"{type(exc).__name__}: {exc}")

    def row(self, path: str, offset: int, inner: int = 0, **values) -> dict:
        """A row's id is a function of the file and where the record starts: its gzip member's offset and, in a
        member holding several records (a WARC gzipped as one stream), how far into the member; so unique."""
        return {"id": make_id(path, offset if not inner else f"{offset}+{inner}"), "source_file": path,
                "source_offset": offset, "warc_inner_offset": inner, "license": self.license, **values}

    def guarded(self, path: str, rec: Record, kind: str) -> dict:
        """``from_record``, with anything it did not foresee made this record's reason, never the file's end."""
        try:
            return self.from_record(path, rec, kind)
        except Exception as exc:  # noqa: BLE001 - one record's problem, named; the next record is read as usual
            return self.row(path, rec.offset, rec.inner, warc_type=kind, reason=f"error:{type(exc).__name__}",
                            detail=str(exc)[:500])

    def from_record(self, path: str, rec: Record, kind: str) -> dict:
        url = (rec.get("WARC-Target-URI") or "").strip().strip("<>") or None
        base = self.row(path, rec.offset, rec.inner, url=url, warc_date=rec.get("WARC-Date"),
                        warc_record_id=rec.get("WARC-Record-ID"), warc_type=kind)
        if rec.problem == "bad_length":
            return {**base, "reason": "bad_content_length", "detail": rec.detail}
        if rec.problem == "corrupt":
            return {**base, "reason": "corrupt_record", "detail": rec.detail}
        if rec.problem == "truncated":
            return {**base, "reason": "truncated_record", "detail": rec.detail}
        if kind == "revisit":
            return {**base, "reason": "revisit", "detail": rec.get("WARC-Profile")}
        if rec.get("WARC-Truncated"):
            return {**base, "reason": "truncated_record", "detail": f"WARC-Truncated: {rec.get('WARC-Truncated')}"}
        if kind == "conversion":
            if rec.length > self.max_bytes:
                return {**base, "reason": "too_large", "detail": f"{rec.length} bytes > max_bytes {self.max_bytes}"}
            text = rec.block.decode("utf-8", "replace")
            return {**base, "text": text, "reason": None if text.strip() else "empty"}
        http = parse_http(rec.block)
        if http is None:
            return {**base, "reason": "non_html", "detail": f"not an HTTP response ({url})"}
        status, headers, body = http
        ctype = (headers.get_content_type() if headers.get("Content-Type") else "").lower()
        base.update(http_status=status, content_type=ctype or None)
        if not 200 <= status < 300:
            return {**base, "reason": "http_status", "detail": str(status)}
        stored = len(body) + max(rec.length - len(rec.block), 0)  # (the block was read up to its cap)
        if stored > self.max_bytes:
            return {**base, "reason": "too_large", "detail": f"{stored} bytes > max_bytes {self.max_bytes}"}
        try:
            body = decode_content(body, headers.get("Content-Encoding"), self.max_bytes)
        except TooLarge as exc:
            return {**base, "reason": "too_large",
                    "detail": f"{headers.get('Content-Encoding')} body {exc} (max_bytes {self.max_bytes})"}
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


def _size(path: str) -> int:
    import os

    try:
        return os.path.getsize(path)
    except OSError:
        return 1


def _table(rows: list[dict]) -> pa.Table:
    rows = [clean_row(r) for r in rows]
    return pa.table({c: pa.array([r.get(c) for r in rows], t) for c, t in COLUMNS.items()})

