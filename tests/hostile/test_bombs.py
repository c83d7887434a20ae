"""Decompression never outruns ``max_bytes``: bombs in every coding a WARC can hold are ``too_large``, and the process
reading them never holds much more than the limit (peak RSS measured in a process of its own, beside a control
that reads a small ordinary WARC: at most 2 x max_bytes + a constant more).

* an HTTP body with ``Content-Encoding`` gzip / deflate / br / zstd / ``gzip, gzip`` / chunked-and-gzip, each
  inflating to 300 MB from well under a megabyte, in a WARC of a few hundred KB;
* a gzip member holding one 1 GiB record (the record itself is the bomb).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import uuid
import zlib

import pytest

from tests.conftest import ROOT

MAX_BYTES = 5_000_000
#: what reading can cost beyond the limit: the record block (limit + HTTP head), the inflated body (limit), one
#: piece of inflation, the Arrow row
SLACK_MB = 64


def zeros_compressed(n: int, wbits: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    piece = b"\0" * (1 << 20)
    out = [c.compress(piece) for _ in range(n >> 20)]
    return b"".join(out) + c.flush()


def brotli_bomb(n: int) -> bytes:
    import brotli

    c = brotli.Compressor(quality=5)
    piece = b"\0" * (1 << 20)
    return b"".join(c.process(piece) for _ in range(n >> 20)) + c.finish()


def zstd_bomb(n: int) -> bytes:
    import zstandard

    c = zstandard.ZstdCompressor(level=3).compressobj()
    piece = b"\0" * (1 << 20)
    return b"".join(c.compress(piece) for _ in range(n >> 20)) + c.flush()


def chunked(body: bytes) -> bytes:
    out, step = [], 1 << 16
    for i in range(0, len(body), step):
        part = body[i:i + step]
        out.append(b"%x\r\n" % len(part) + part + b"\r\n")
    return b"".join(out) + b"0\r\n\r\n"


def response(http_head: bytes, body: bytes) -> bytes:
    block = http_head + b"\r\n\r\n" + body
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://bomb.example/\r\n"
            f"WARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(block)}\r\n\r\n").encode()
    return head + block + b"\r\n\r\n"


def ordinary() -> bytes:
    return response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html", b"<html><body><p>" + b"hello " * 200 + b"</p>")


BIG = 300 << 20


def bomb(kind: str) -> bytes:
    html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
    if kind == "gzip":
        return gzip.compress(response(html + b"Content-Encoding: gzip", zeros_compressed(BIG, 31)))
    if kind == "deflate":
        return gzip.compress(response(html + b"Content-Encoding: deflate", zeros_compressed(BIG, 15)))
    if kind == "raw_deflate":
        return gzip.compress(response(html + b"Content-Encoding: deflate", zeros_compressed(BIG, -15)))
    if kind == "br":
        return gzip.compress(response(html + b"Content-Encoding: br", brotli_bomb(BIG)))
    if kind == "zstd":
        return gzip.compress(response(html + b"Content-Encoding: zstd", zstd_bomb(BIG)))
    if kind == "gzip_gzip":  # the outer layer is small, the inner one is the bomb
        inner = zeros_compressed(BIG * 3, 31)
        return gzip.compress(response(html + b"Content-Encoding: gzip, gzip", gzip.compress(inner)))
    if kind == "chunked_gzip":
        return gzip.compress(response(html + b"Transfer-Encoding: chunked\r\nContent-Encoding: gzip",
                                      chunked(zeros_compressed(BIG, 31))))
    if kind == "gib_member":  # one gzip member whose record is 1 GiB: the WARC member itself is the bomb
        block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
        n = 1 << 30
        head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://bomb.example/\r\n"
                f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\nContent-Length: {len(block) + n}\r\n\r\n").encode()
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        piece = b"a" * (1 << 20)
        return c.compress(head + block) + b"".join(c.compress(piece) for _ in range(n >> 20)) + \
            c.compress(b"\r\n\r\n") + c.flush()
    raise ValueError(kind)


READ = """
import json, resource, sys
from stages.ingest.warc import WarcSource
src = WarcSource(paths=[sys.argv[1]], max_bytes=int(sys.argv[2]))
rows = [r for spec in src.plan() for t in src.read(spec) if not isinstance(t, dict) for r in t.to_pylist()]
print(json.dumps({"reasons": [r["reason"] for r in rows], "details": [r["detail"] for r in rows],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def read_in_own_process(path) -> dict:
    out = subprocess.run([sys.executable, "-c", READ, str(path), str(MAX_BYTES)], capture_output=True, text=True,
                         cwd=ROOT, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def control_rss(tmp_path_factory):
    path = tmp_path_factory.mktemp("control") / "ok.warc.gz"
    path.write_bytes(gzip.compress(ordinary()) * 3)
    got = read_in_own_process(path)
    assert got["reasons"] == [None, None, None]
    return got["rss_mb"]


@pytest.mark.parametrize("kind", ["gzip", "deflate", "raw_deflate", "br", "zstd", "gzip_gzip", "chunked_gzip",
                                  "gib_member"])
def test_a_bomb_is_too_large_and_memory_stays_bounded(tmp_path, control_rss, kind):
    path = tmp_path / f"{kind}.warc.gz"
    path.write_bytes(gzip.compress(ordinary()) + bomb(kind) + gzip.compress(ordinary()))
    assert path.stat().st_size < 2_000_000  # a small file ...
    got = read_in_own_process(path)
    assert got["reasons"] == [None, "too_large", None], got["details"]  # ... whose neighbours are read as usual
    bound = control_rss + 2 * MAX_BYTES / 2**20 + SLACK_MB
    print(f"{kind}: peak RSS {got['rss_mb']:.0f} MB, control {control_rss:.0f} MB, bound {bound:.0f} MB")
    assert got["rss_mb"] <= bound, got
