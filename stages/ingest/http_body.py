"""An HTTP response inside a WARC record: status, headers and body, the body's Content-Encoding undone in bounded
pieces, so that no body can inflate past a limit (a 510 KB gzip body that inflates to 500 MB costs at most the limit
and one piece, never 500 MB).

Crawlers often store the body already decoded while keeping the ``Content-Encoding`` header, so a body is only
decoded when it looks encoded (gzip magic; deflate/brotli/zstd that decode without error); otherwise it is kept as
stored. Several codings (``gzip, br``) are undone last first.
"""

from __future__ import annotations

import http.client
import io
import re
import zlib

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: Output produced per decoding step.
PIECE = 1 << 20


class TooLarge(ValueError):
    """A body inflates past the limit."""


class _Block:
    def __init__(self, data: bytes):
        self.data = data

    def makefile(self, mode):
        return io.BytesIO(self.data)


def parse_http(block: bytes):
    """(status, headers, body) of an HTTP response block with the stdlib's parser; None if it is not one. The body
    is what follows the headers (de-chunked when still chunked as sent: that can only shrink it); crawlers often
    store it decoded, so the headers' Content-Length is not trusted."""
    resp = http.client.HTTPResponse(_Block(block))
    try:
        resp.begin()
    except (http.client.HTTPException, ValueError, OSError, UnicodeError):
        return None
    raw = block[resp.fp.tell():]
    body = raw
    if resp.chunked and re.match(rb"[0-9a-fA-F]+[ \t;]*[^\n]*\r?\n", raw):  # still chunked as sent
        try:
            body = resp.read()
        except (http.client.HTTPException, ValueError, OSError):
            body = raw
    return resp.status, resp.headers, body


def _zlib(body: bytes, wbits: int, limit: int) -> bytes:
    """Inflate ``body`` (gzip, zlib or raw deflate by ``wbits``; several gzip members in a row too) to at most
    ``limit`` bytes, else TooLarge. Never holds more than ``limit`` + one piece."""
    out = bytearray()
    data = body
    while data:
        d = zlib.decompressobj(wbits)
        while data:
            piece = d.decompress(data, PIECE)
            out += piece
            if len(out) > limit:
                raise TooLarge(f"inflates past {limit} bytes")
            data = d.unconsumed_tail
            if d.eof:
                data = d.unused_data
                break
            if not piece and not data:
                break
        if not d.eof or wbits != 16 + zlib.MAX_WBITS or data[:2] != GZIP_MAGIC:
            break
    return bytes(out)


def _brotli(body: bytes, limit: int) -> bytes:
    import brotli

    d = brotli.Decompressor()
    out = bytearray(d.process(body, output_buffer_limit=PIECE))
    while not d.is_finished() and not d.can_accept_more_data():
        if len(out) > limit:
            raise TooLarge(f"inflates past {limit} bytes")
        piece = d.process(b"", output_buffer_limit=PIECE)
        if not piece:
            break
        out += piece
    if len(out) > limit:
        raise TooLarge(f"inflates past {limit} bytes")
    return bytes(out)


def _zstd(body: bytes, limit: int) -> bytes:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
    out = bytearray()
    while True:
        piece = reader.read(PIECE)
        if not piece:
            return bytes(out)
        out += piece
        if len(out) > limit:
            raise TooLarge(f"inflates past {limit} bytes")


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` when the body is still encoded; TooLarge when it inflates past ``limit`` bytes.
    A body that does not decode (stored decoded, or an unknown coding) is returned as stored."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):
        try:
            if coding in ("gzip", "x-gzip"):
                if body[:2] != GZIP_MAGIC:
                    continue
                body = _zlib(body, 16 + zlib.MAX_WBITS, limit)
            elif coding == "deflate":
                try:
                    body = _zlib(body, zlib.MAX_WBITS, limit)
                except zlib.error:
                    body = _zlib(body, -zlib.MAX_WBITS, limit)
            elif coding == "br":
                body = _brotli(body, limit)
            elif coding == "zstd":
                if body[:4] != ZSTD_MAGIC:
                    continue
                body = _zstd(body, limit)
        except TooLarge:
            raise
        except Exception:  # noqa: BLE001 - stored decoded, damaged or a missing codec: keep the body as stored
            return body
    return body
