"""WARC framing that a page cannot forge, and no record lost to a harmless variant; warcio is the oracle.

A record whose ``Content-Length`` is consistent (its block ends at a trailer and the next record's header, or at the
file's end) wins over anything inside its block: a page holding a blank line and a WARC header is one page, and no
record is made of its text. Ids are unique by construction (the gzip member's offset and the record's offset
inside it), so a file gzipped as ONE stream reads like any other. The trailer variants warcio reads (one CRLF,
three, LF-only files), a lower-case version line and headers over 64 KB are records, not junk. And seeded damage
of the real files (byte flips, cut spans, inserted junk, truncation): every record warcio reads before the damage,
we read too, whole, with unique ids.
"""

from __future__ import annotations

import gzip
import io
import random

import pytest

from stages.ingest.warc import WarcSource
from stages.ingest.warc_reader import Junk, Record, iter_records
from tests.hostile.warc_files import pack, records_of

FORGED = (b"\r\n\r\nWARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://evil.example/forged\r\n"
          b"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-00000000f00d>\r\nContent-Type: application/http; "
          b"msgtype=response\r\nContent-Length: 70\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
          b"<html><body>forged</body></html>\r\n\r\n")


def warc_with_forging_page() -> list[bytes]:
    """warcinfo, a page whose HTML holds a forged record (written by warcio: its digests and lengths true), and
    the synthetic records after it."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from tests.hostile.warc_files import synthetic_records

    html = b"<html><body><pre>an article quoting a WARC file:" + FORGED + b"</pre></body></html>"
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False)
    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                       ("Content-Length", str(len(html)))], protocol="HTTP/1.1")
    w.write_record(w.create_warc_record("http://example.org/article", "response", payload=io.BytesIO(html),
                                        http_headers=http))
    records = synthetic_records()
    return [records[0], buf.getvalue(), *records[1:]]


def ours(data: bytes) -> list:
    return list(iter_records(io.BytesIO(data), 1 << 20))


def warcio_records(data: bytes) -> tuple[list[tuple[int, str | None]], int | None]:
    """(offset, WARC-Record-ID) of each record warcio reads whole, and the offset where it raised (None: it read
    to the end)."""
    from warcio.archiveiterator import ArchiveIterator

    out = []
    try:
        it = ArchiveIterator(io.BytesIO(data), check_digests=False)
        for rec in it:
            rec.content_stream().read()
            out.append((it.get_record_offset(), rec.rec_headers.get_header("WARC-Record-ID")))
    except Exception:  # noqa: BLE001 - the oracle stops at damage; what it read before counts
        return out, out[-1][0] if out else 0
    return out, None


def rows(path) -> list[dict]:
    src = WarcSource(paths=[str(path)])
    out = []
    for spec in src.plan():
        for t in src.read(spec):
            if not isinstance(t, dict):
                out += t.to_pylist()
    return out


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_page_cannot_forge_a_record(tmp_path, compressed):
    records = warc_with_forging_page()
    data = pack(records, compressed)
    got = ours(data)
    whole = [(x.offset, x.get("warc-record-id")) for x in got if isinstance(x, Record) and not x.problem]
    assert [x for x in got if isinstance(x, Junk) or x.problem] == []
    assert whole == warcio_records(data)[0]
    assert not any(b"evil.example" in (x.get("warc-target-uri") or "").encode() for x in got if isinstance(x, Record))
    page = next(x for x in got if isinstance(x, Record) and x.get("warc-target-uri") == "http://example.org/article")
    assert FORGED in page.block  # the page, whole
    path = tmp_path / "forged.warc"
    path.write_bytes(data)
    out = rows(path)
    assert len({r["id"] for r in out}) == len(out) and all(r["url"] != "http://evil.example/forged" for r in out)


def test_a_warc_gzipped_as_one_stream_reads_like_the_plain_file(tmp_path):
    from tests.hostile.warc_files import synthetic_records

    plain, one = tmp_path / "plain.warc", tmp_path / "one.warc.gz"
    plain.write_bytes(b"".join(synthetic_records()))
    one.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = rows(plain), rows(one)
    assert len({r["id"] for r in b}) == len(b) == len(a)
    assert [(r["warc_record_id"], r["reason"], r["html"]) for r in a] == \
        [(r["warc_record_id"], r["reason"], r["html"]) for r in b]
    assert {r["source_offset"] for r in b} == {0} and len({r["warc_inner_offset"] for r in b}) == len(b)


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_member_with_a_wrong_crc_is_one_row(tmp_path, size):
    """The member's bytes inflate, then its CRC fails: one ``corrupt_record`` row for it (the record inside or the
    span), never a row and a junk row for the same offset; its neighbours are read as before."""
    from tests.hostile.warc_files import block_of, synthetic_records, with_block

    records = synthetic_records()
    v = 2
    if size == "large":  # a block of several MB: inflated in many pieces, the CRC failing after the record's bytes
        records[v] = with_block(records[v], block_of(records[v]) + b"<p>" + b"x" * 3_000_000 + b"</p>")
    members = [gzip.compress(r) for r in records]
    broken = bytearray(members[v])
    broken[-8] ^= 0xFF  # the CRC-32 field of the gzip trailer
    members[v] = bytes(broken)
    path = tmp_path / "crc.warc.gz"
    path.write_bytes(b"".join(members))
    out = rows(path)
    clean = tmp_path / "clean.warc.gz"
    clean.write_bytes(b"".join(gzip.compress(r) for r in records))
    want = rows(clean)
    assert len({r["id"] for r in out}) == len(out) == len(want)
    changed = [(a, b) for a, b in zip(want, out) if (a["source_offset"], a["reason"]) != (b["source_offset"],
                                                                                         b["reason"])]
    assert len(changed) == 1 and changed[0][1]["reason"] == "corrupt_record"


def variants(records: list[bytes]) -> dict[str, bytes]:
    def relined(raw: bytes, trailer: bytes, lf: bool) -> bytes:
        end = raw.index(b"\r\n\r\n") + 4
        head, block = raw[:end], raw[end:-4]
        if lf:
            head = head.replace(b"\r\n", b"\n")
        return head + block + trailer

    return {"three_crlf": b"".join(relined(r, b"\r\n\r\n\r\n", False) for r in records),
            "one_crlf": b"".join(relined(r, b"\r\n", False) for r in records),
            "lf_only": b"".join(relined(r, b"\n\n", True) for r in records),
            "lowercase_version": b"".join(r.replace(b"WARC/1.0", b"warc/1.0", 1) for r in records),
            "nul_in_header": b"".join(r.replace(b"\r\n\r\n", b"\r\nX-Note: a\x00b\r\n\r\n", 1) for r in records),
            "header_over_64k": b"".join(r.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 70_000 + b"\r\n\r\n", 1)
                                        for r in records)}


@pytest.mark.parametrize("variant", ["three_crlf", "one_crlf", "lf_only", "lowercase_version", "nul_in_header",
                                     "header_over_64k"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_harmless_variants_lose_no_record(variant, compressed):
    from tests.hostile.warc_files import synthetic_records

    records = synthetic_records()  # (new record ids at every call)
    data = variants(records)[variant]
    if compressed:
        data = gzip.compress(data)  # (one stream: warcio reads only its first record of such a file)
    got = ours(data)
    assert [x for x in got if isinstance(x, Junk) or x.problem] == [], variant
    ids = [x.get("warc-record-id") for x in got]
    plain_ids = [x.get("warc-record-id") for x in ours(b"".join(records))]
    assert ids == plain_ids, variant
    if not compressed:
        assert [(x.offset, x.get("warc-record-id")) for x in got] == warcio_records(data)[0], variant


def damaged_copies(data: bytes, n: int, seed: int):
    rng = random.Random(seed)
    for _ in range(n):
        at = rng.randrange(len(data))
        kind = rng.choice(["flip", "cut", "insert", "truncate", "duplicate"])
        if kind == "flip":
            yield kind, at, data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
        elif kind == "cut":
            yield kind, at, data[:at] + data[at + rng.randint(1, 400):]
        elif kind == "insert":
            junk = rng.choice([b"\r\n", b"WARC/1.0\r\n", b"\x1f\x8b\x08", bytes(rng.randbytes(50))])
            yield kind, at, data[:at] + junk \
                + data[at:]
        elif kind == "truncate":
            yield kind, at, data[:at]
        else:
            span = data[at:at + rng.randint(1, 2000)]
            yield kind, at, data[:at] + span + span + data[at + len(span):]


@pytest.mark.shared_data
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("name", ["dolma_sample-0000.warc.gz", "pywb_iana.org.warc.gz", "clueweb09-ja_quirk.warc.gz"])
def test_differential_fuzz_against_warcio(name, compressed):
    """Seeded damage of the real files (90 copies each, 540 in all): no crash, unique (offset, inner offset) for
    every row, and every record
    that warcio reads whole and that ends before the damage, we read whole at the same offset."""
    records = records_of(name)
    data = pack(records, compressed)
    ends, pos = [], 0
    for r in records:
        size = len(gzip.compress(r, 6)) if compressed else len(r)
        ends.append((pos, pos + size))
        pos += size
    for kind, at, damaged in damaged_copies(data, 90, sum(map(ord, name)) + compressed):
        got = ours(damaged)
        keys = [(x.offset, x.inner) for x in got]
        assert len(set(keys)) == len(keys), (kind, at)
        mine = {(x.offset, x.get("warc-record-id")) for x in got if isinstance(x, Record) and not x.problem}
        theirs, _ = warcio_records(damaged)
        before = {start for start, end in ends if end <= at}
        lost = [t for t in theirs if t[0] in before and t not in mine]
        assert not lost, (kind, at, lost[:3])
        if kind == "flip" and not compressed:  # the framing is intact: whatever warcio reads, we read
            assert not [t for t in theirs if t not in mine and not _flipped_header(records, at, t[0])], (kind, at)


def _flipped_header(records: list[bytes], at: int, offset: int) -> bool:
    """Whether the flip at ``at`` landed in the header of the record at ``offset`` (then a field may read
    differently, its id say)."""
    pos = 0
    for r in records:
        if pos == offset:
            return pos <= at < pos + r.index(b"\r\n\r\n") + 4
        pos += len(r)
    return False
