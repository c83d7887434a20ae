"""WARC record framing that trusts no length and holds no more than it was asked for.

A WARC file is a sequence of records, each a header block (``WARC/1.0``, ``Name: value`` lines, a blank line)
and ``Content-Length`` bytes of block, followed by ``\\r\\n\\r\\n``; it is plain or gzip (usually one member per
record, sometimes one stream for all). Crawlers and hostile files lie in every part of that, so this reader
checks each record against what follows it instead of believing its header:

* A record is whole when its block is followed by the end of the stream or by its trailer and the next record's
  header, and, in a gzip file, no other record's header begins at a gzip member start inside its block. A record
  that fails is a ``Record`` with ``problem="bad_length"`` (its ``Content-Length`` ran past the next record or
  stopped inside its own content), and reading resumes at the first *valid* record header after its own header:
  never inside the next record, never skipping it.
* Bytes that are not a record (junk between records, a destroyed header, a gzip member that does not inflate)
  are one ``Junk`` per span, at the span's offset.
* A gzip member that fails to inflate (flipped bytes, a zeroed tail) ends its segment: the record it was in is
  ``problem="corrupt"``; reading resumes at the next gzip member that inflates to a record header.
* A stream that ends inside a record's block makes it ``problem="truncated"``, unless a valid record header lies
  inside what was read (then the length lied: ``bad_length``, and the records after it are read).

Memory: inflation is done in pieces of at most ``CHUNK`` bytes and a record's block is kept up to ``cap`` bytes
(``Record.block``; ``Record.length`` is what it declared): a gzip member that inflates to a terabyte costs the
time to inflate it, never the memory. A record's ``offset`` is where its header starts in the file: the gzip
member's offset in a compressed file (what Common Crawl's index gives), the byte offset in a plain one.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

GZIP_MAGIC = b"\x1f\x8b\x08"
#: Bytes read from the file, and inflated, per step.
CHUNK = 1 << 20
#: A record header block larger than this is not a header (warcio has no limit; 1 MiB holds every real header and
#: keeps a hostile one bounded). Headers are read in growing windows (``HEADER_STEPS``), so a record costs what its
#: header needs, not this.
MAX_HEADER = 1 << 20
HEADER_STEPS = (1 << 14, 1 << 17, MAX_HEADER + 64)
#: The version line, in any case (``warc/1.0`` is read by warcio too).
VERSION = re.compile(rb"[Ww][Aa][Rr][Cc]/\d{1,4}\.\d{1,4}\r?\n")
#: A record's trailer and the start of the next record's header (searched in lowercased bytes).
TRAILER = b"\r\n\r\nwarc/"
#: What may follow a block before the next record header: the standard two CRLFs, and the variants warcio reads
#: too (one CRLF, three, LF-only files).
TRAILERS = frozenset({b"\r\n\r\n", b"\r\n", b"\r\n\r\n\r\n", b"\n\n", b"\n"})
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: ``parse_header``'s answer when the window ended before the header's blank line (read more and ask again).
INCOMPLETE = "incomplete"


@dataclass
class Record:
    offset: int
    version: str
    #: Header fields, names lower-cased (the first occurrence of a repeated name).
    headers: dict[str, str]
    #: Declared ``Content-Length``.
    length: int
    #: The block's first ``min(length, cap)`` bytes (fewer when the stream ended inside it).
    block: bytes
    #: None (whole), "bad_length", "truncated" or "corrupt"
    problem: str | None = None
    detail: str | None = None
    #: Where the header starts inside its gzip member's inflated bytes (0 in a file of one member per record and
    #: in a plain file; a file gzipped as ONE stream has every record in member 0): with ``offset``, unique.
    inner: int = 0

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "").strip().lower() or "unknown"

    def get(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Junk:
    """Bytes that are not a record: one span, at its offset in the file. ``truncated``: the file ends inside them
    (a record whose header was cut)."""

    offset: int
    size: int
    detail: str
    truncated: bool = False
    inner: int = 0


def header_end(data: bytes, pos: int, end: int) -> int:
    """Index just after the blank line ending a header that starts at ``pos`` (a bare-LF blank line or a CRLF
    one, whichever comes first), or -1 when none lies before ``end``."""
    crlf = data.find(b"\n\r\n", pos, end)
    lf = data.find(b"\n\n", pos, end if crlf == -1 else crlf + 1)
    if lf != -1:
        return lf + 2
    return crlf + 3 if crlf != -1 else -1


def parse_header(data: bytes, pos: int = 0, stop: int | None = None):
    """(version, fields, header length) of a WARC header block at ``data[pos:]``; None unless it is one: a version
    line, ``Name: value`` lines (continuations folded), a blank line, a numeric ``Content-Length`` and a
    ``WARC-Type``, all within ``MAX_HEADER`` bytes; ``INCOMPLETE`` when the data ends before the blank line.
    ``stop``: where the header's blank line was already found (``header_end``). Lines are read one at a time and
    the first that is no field ends the reading, so a candidate costs what it holds up to its first bad line."""
    m = VERSION.match(data, pos)
    if m is None:
        return None
    limit = min(len(data), pos + MAX_HEADER)
    if stop is None:
        stop = header_end(data, m.end() - 1, limit)
    incomplete = stop == -1
    if incomplete:  # validate the complete lines read so far: a bad one settles it now
        if len(data) >= pos + MAX_HEADER:
            return None
        stop = data.rfind(b"\n", m.end(), limit) + 1 or m.end()
    fields: dict[str, str] = {}
    last = None
    i = m.end()
    while i < stop:
        j = data.find(b"\n", i, stop)
        j = stop if j == -1 else j
        line = data[i:j].decode("utf-8", "replace").rstrip("\r")
        i = j + 1
        if not line:
            continue
        if line[0] in " \t":
            if last is None:
                return None
            fields[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or TOKEN.fullmatch(name) is None:
            return None
        last = name.lower()
        fields.setdefault(last, value.strip())
    if incomplete:
        return INCOMPLETE
    length = fields.get("content-length", "")
    if not (length.isascii() and length.isdigit()) or len(length) > 18 or not fields.get("warc-type"):
        return None
    version = data[pos + 5:m.end()].strip().decode("ascii")
    return version, fields, stop - pos


# ------------------------------------------------------------------------------------------------ byte sources

@dataclass
class Damage:
    """Why a segment of the stream ended: ``end`` (the file's clean end), ``truncated`` (the file ends inside a gzip
    member), ``corrupt`` (a member that does not inflate) or ``junk`` (bytes between members that are none)."""

    kind: str
    detail: str
    #: file offset of the damage (the broken member, or the first junk byte)
    at: int


END = "end"


class PlainSource:
    """An uncompressed file: logical offset = file offset; it only ends."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.damage: Damage | None = None

    def read(self, n: int) -> bytes:
        out = self.f.read(n)
        if not out:
            self.damage = Damage(END, "end of file", self.f.tell())
        return out

    def seek(self, pos: int) -> None:
        self.f.seek(pos)
        self.damage = None

    def origin(self, pos: int) -> int:
        return pos

    def inner(self, pos: int) -> int:
        return 0

    def members_in(self, start: int, stop: int) -> list[int]:
        return []

    def mid_member(self, pos: int) -> bool:
        return False

    def resume(self) -> int | None:
        return None


class GzipSource:
    """The inflated bytes of a gzip file as one logical stream, read forward in bounded pieces.

    Every gzip member start is remembered (logical and file offset), so the stream can go back (``seek``) and tell
    where a logical offset came from (``origin``). A member that does not inflate, or bytes between members that are
    no member, end the current segment: ``read`` returns ``b""`` with ``damage`` set until ``resume`` goes on at the
    next member that inflates to a WARC record header (the logical offset runs on across the gap)."""

    def __init__(self, f: BinaryIO, leading_junk: bool = False):
        self.f = f
        self.starts: list[int] = []  # logical offsets of member starts, increasing
        self.files: list[int] = []  # their file offsets
        self._begin(0, 0)
        if leading_junk:
            self.damage = Damage("junk", "the file does not start with a gzip member", 0)

    def _begin(self, foff: int, lpos: int, keep: bool = False) -> None:
        """Start inflating a member at file offset ``foff`` (``keep``: it starts where the read bytes in hand are,
        right after the member before it)."""
        if not keep:
            self.f.seek(foff)
            self.inbuf, self.ipos = b"", 0  # file bytes read, and the index of the first not yet inflated
        self.in_off = foff  # the file offset of inbuf[ipos]
        self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        #: input handed to zlib per call: small first, doubled while a member needs more. zlib copies what a call
        #: leaves unused, so a member of a few bytes must not be handed the rest of the file (thousands of tiny
        #: members were quadratic: 4,006 in a 92 KB file took 29 s)
        self.feed = 1024
        self.member = foff
        self.lpos = lpos
        self.damage = None
        i = bisect.bisect_left(self.starts, lpos)
        if i < len(self.starts) and self.starts[i] == lpos:
            self.files[i] = foff
        else:
            self.starts.insert(i, lpos)
            self.files.insert(i, foff)

    def _available(self) -> int:
        return len(self.inbuf) - self.ipos

    def _refill(self, need: int) -> None:
        if self._available() >= need:
            return
        pieces, have = [self.inbuf[self.ipos:]], self._available()
        while have < need:
            more = self.f.read(CHUNK)
            if not more:
                break
            pieces.append(more)
            have += len(more)
        self.inbuf, self.ipos = b"".join(pieces), 0

    def read(self, n: int) -> bytes:
        while self.damage is None:
            if self.d.eof:
                self._next_member()
                continue
            if not self._available():
                self._refill(1)
                if not self._available():
                    self.damage = Damage("truncated", f"the file ends inside the gzip member at {self.member}",
                                         self.member)
                    return b""
            feed = min(self._available(), self.feed)
            try:
                out = self.d.decompress(memoryview(self.inbuf)[self.ipos:self.ipos + feed], n)
            except zlib.error as exc:
                self.damage = Damage("corrupt", f"the gzip member at {self.member} does not inflate: {exc}",
                                     self.member)
                return b""
            rest = len(self.d.unused_data) if self.d.eof else len(self.d.unconsumed_tail)
            self.ipos += feed - rest
            self.in_off += feed - rest
            if not self.d.eof and rest == 0:
                self.feed = min(self.feed * 2, CHUNK)
            if out:
                self.lpos += len(out)
                return out
        return b""

    def _next_member(self) -> None:
        """The member ended: a next member, the file's end (trailing NUL/blank padding included), or junk."""
        self._refill(3)
        if self.inbuf[self.ipos:self.ipos + 3] == GZIP_MAGIC:
            self._begin(self.in_off, self.lpos, keep=True)
            return
        self._refill(CHUNK + 1)
        rest = self.inbuf[self.ipos:]
        if len(rest) <= CHUNK and not rest.strip(b"\x00\r\n\t "):
            self.damage = Damage(END, "end of file", self.in_off)
            return
        self.damage = Damage("junk", f"bytes at {self.in_off} are not a gzip member", self.in_off)

    def seek(self, pos: int) -> None:
        i = max(bisect.bisect_right(self.starts, pos) - 1, 0)
        self._begin(self.files[i], self.starts[i])
        while self.lpos < pos and self.damage is None:
            self.read(min(CHUNK, pos - self.lpos))

    def origin(self, pos: int) -> int:
        return self.files[max(bisect.bisect_right(self.starts, pos) - 1, 0)]

    def inner(self, pos: int) -> int:
        """How far ``pos`` lies into its gzip member's inflated bytes."""
        return pos - self.starts[max(bisect.bisect_right(self.starts, pos) - 1, 0)]

    def members_in(self, start: int, stop: int) -> list[int]:
        """Logical offsets of the member starts seen so far in [start, stop)."""
        return self.starts[bisect.bisect_left(self.starts, start):bisect.bisect_left(self.starts, stop)]

    def mid_member(self, pos: int) -> bool:
        """Whether ``pos`` lies inside a member (not at one's start; members seen so far)."""
        i = bisect.bisect_left(self.starts, pos)
        return not (i < len(self.starts) and self.starts[i] == pos)

    def resume(self) -> int | None:
        """After damage: go on at the next member that inflates to a record header; its file offset, or None."""
        if self.damage is None or self.damage.kind in (END, "truncated"):
            return None
        found = next_member(self.f, self.damage.at + 1)
        if found is None:
            self.damage = Damage(END, "end of file", self.damage.at)
            return None
        self._begin(found, self.lpos)
        return found


def starts_record(f: BinaryIO, pos: int) -> bool:
    """Whether a gzip member starting at ``pos`` inflates to a WARC record header."""
    f.seek(pos)
    head = f.read(1 << 16)
    try:
        out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, MAX_HEADER + 64)
    except zlib.error:
        return False
    return parse_header(out) not in (None, INCOMPLETE)


def next_member(f: BinaryIO, after: int, before: int | None = None) -> int | None:
    """File offset of the first gzip member in [after, before) that inflates to a record header."""
    pos = after
    while before is None or pos < before:
        f.seek(pos)
        block = f.read(CHUNK + 2)
        i = block.find(GZIP_MAGIC)
        while i != -1 and i < CHUNK and (before is None or pos + i < before):
            if starts_record(f, pos + i):
                return pos + i
            i = block.find(GZIP_MAGIC, i + 1)
        if len(block) < CHUNK + 2:
            return None
        pos += CHUNK
    return None


def open_stream(f: BinaryIO):
    """A GzipSource when the file starts with a gzip member (or with junk and then one, before any plain record
    header in the first MB), else a PlainSource."""
    head = f.read(CHUNK)
    if head[:3] == GZIP_MAGIC:
        return GzipSource(f)
    plain = head.lower().find(b"warc/")
    if head and plain != 0 and next_member(f, 0, plain if plain != -1 else CHUNK) is not None:
        return GzipSource(f, leading_junk=True)
    f.seek(0)
    return PlainSource(f)


# ------------------------------------------------------------------------------------------------ buffered view

class Reader:
    """A forward window over the current segment of a source: ``peek``/``take``/``skip``/``seek`` by logical
    offset; memory bounded by what the caller asks for."""

    def __init__(self, src):
        self.src = src
        self.buf = b""
        self.pos = 0  # logical offset of buf[0]
        self.ended = False  # the current segment has no more bytes
        #: (logical offset, parse_header result) of the record header that the last check found there
        self.parsed: tuple[int, tuple] | None = None

    def _fill(self, n: int) -> int:
        # pieces gathered in a list and joined once: a gzip member's worth can be one byte (a file of thousands of
        # tiny members), and appending each to the window would copy the window each time
        have, pieces = len(self.buf), [self.buf]
        while have < n and not self.ended:
            more = self.src.read(max(CHUNK, n - have))
            if not more:
                self.ended = True
                break
            pieces.append(more)
            have += len(more)
        if len(pieces) > 1:
            self.buf = b"".join(pieces)
        return len(self.buf)

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self.buf[:n]

    def take(self, n: int) -> bytes:
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        self.pos += len(out)
        return out

    def skip(self, n: int) -> int:
        """Skip up to ``n`` bytes (reading through them in pieces); how many were skipped."""
        done = 0
        while done < n:
            if not self.buf and not self._fill(1):
                break
            k = min(n - done, len(self.buf))
            self.buf = self.buf[k:]
            self.pos += k
            done += k
        return done

    def skip_scan(self, n: int, pattern: bytes, carry: bytes = b"", hasher=None) -> list[int]:
        """``skip(n)``, returning the logical offsets of each ``pattern`` (lowercase) met on the way in the bytes
        lowercased (``carry``: the bytes just before, lowercased, so a pattern split across the boundary is found
        too). At most 64 offsets. ``hasher`` is fed the bytes skipped."""
        found: list[int] = []
        done = 0
        while done < n:
            if not self.buf and not self._fill(1):
                break
            k = min(n - done, len(self.buf))
            if hasher is not None:
                hasher.update(self.buf[:k])
            piece = carry + self.buf[:k].lower()
            base = self.pos - len(carry)
            i = piece.find(pattern)
            while i != -1 and len(found) < 64:
                found.append(base + i)
                i = piece.find(pattern, i + 1)
            carry = piece[-(len(pattern) - 1):]
            self.buf = self.buf[k:]
            self.pos += k
            done += k
        return found

    def seek(self, pos: int) -> None:
        if self.pos <= pos <= self.pos + len(self.buf):
            self.buf = self.buf[pos - self.pos:]
            self.pos = pos
            return
        self.src.seek(pos)
        self.buf, self.pos, self.ended = b"", pos, False

    def next_segment(self) -> int | None:
        """After the segment ended on damage: go on at the next readable member (its file offset), or None."""
        found = self.src.resume()
        if found is not None:
            self.buf, self.ended, self.pos, self.parsed = b"", False, self.src.lpos, None
        return found

    def find_header(self, start: int, at_start: bool) -> int | None:
        """Logical offset of the first valid record header at or after ``start`` in this segment (after a line
        end, at a gzip member start, or at ``start`` itself when ``at_start``), with the window moved there; None,
        with the window at the segment's end, when there is none. Scans in bounded windows; the blank line that
        ends a candidate is searched once for all the candidates before it, and a candidate's lines are read only
        up to its first bad one, so a window of a thousand version lines costs a pass over it, not a thousand."""
        self.seek(start)
        first = True
        span = CHUNK + MAX_HEADER + 64
        while True:
            self._fill(span)
            if not self.buf:
                return None
            limit = len(self.buf) if self.ended else len(self.buf) - MAX_HEADER - 64  # whole headers in the window
            low = self.buf.lower()
            cands = [0] if first and at_start else []
            i = low.find(b"\nwarc/", 0, limit + 5)
            while i != -1 and i + 1 < limit:
                cands.append(i + 1)
                i = low.find(b"\nwarc/", i + 1, limit + 5)
            lo = self.pos + (0 if first and at_start else 1)
            cands += [m - self.pos for m in self.src.members_in(lo, self.pos + limit)]
            # the next bare-LF and CRLF blank lines after the candidate, each searched forward only
            nxt = {b"\n\n": -2, b"\n\r\n": -2}
            for c in sorted(set(cands)):
                if low[c:c + 5] != b"warc/":
                    continue
                for pattern, at in nxt.items():
                    if at != -1 and at < c:
                        nxt[pattern] = self.buf.find(pattern, c)
                lf, crlf = nxt[b"\n\n"], nxt[b"\n\r\n"]
                blank = lf + 2 if lf != -1 and (crlf == -1 or lf <= crlf) else (crlf + 3 if crlf != -1 else -1)
                end = blank if blank != -1 and blank - c <= MAX_HEADER else -1
                if end == -1 and not self.ended:
                    continue  # no blank line within a header's reach: not a header
                parsed = parse_header(self.buf, c, end if end != -1 else None)
                if parsed is not None and parsed != INCOMPLETE:
                    self.seek(self.pos + c)
                    return self.pos
            if self.ended:
                self.skip(len(self.buf))
                return None
            self.skip(limit - 1)  # keep the last byte: a line end before a header in the next window
            first = False

    def header(self, at: int = 0):
        """The record header ``at`` bytes into the window, read in growing windows (``HEADER_STEPS``): (the bytes
        looked at, the parsed header or None)."""
        for size in HEADER_STEPS:
            head = self.peek(at + size)
            parsed = parse_header(head, at)
            if parsed != INCOMPLETE or len(head) < at + size:
                return head, (None if parsed == INCOMPLETE else parsed)
        return head, None


# ------------------------------------------------------------------------------------------------ records

def expected_digest(fields: dict[str, str]):
    """(hash name, digest bytes) of a ``WARC-Block-Digest`` this reader can check (sha1/sha256/md5, base32 or
    hex), or None."""
    value = fields.get("warc-block-digest", "")
    algo, sep, encoded = value.partition(":")
    algo = algo.strip().lower().replace("-", "")
    size = {"sha1": 20, "sha256": 32, "md5": 16}.get(algo)
    if not sep or size is None:
        return None
    encoded = encoded.strip()
    try:
        if len(encoded) == 2 * size:
            digest = bytes.fromhex(encoded)
        else:
            digest = base64.b32decode(encoded.upper() + "=" * (-len(encoded) % 8))
    except (ValueError, binascii.Error):
        return None
    return (algo, digest) if len(digest) == size else None


def iter_records(f: BinaryIO, cap: int) -> Iterator[Record | Junk]:
    """Every record and every junk span of a WARC file, in order (see the module docstring)."""
    src = open_stream(f)
    r = Reader(src)
    reported: set[tuple[int, int]] = set()  # (file offset, inner offset) already given a Junk or a damaged Record
    while True:
        start = r.pos
        if r.parsed and r.parsed[0] == start:
            head, parsed = r.peek(64), r.parsed[1]
        else:
            head, parsed = r.header()
        r.parsed = None
        if not head:
            dmg = src.damage
            if dmg is None or dmg.kind in (END, "truncated"):
                return
            found = r.next_segment()
            if (dmg.at, 0) not in reported:
                reported.add((dmg.at, 0))
                yield Junk(dmg.at, (found if found is not None else dmg.at) - dmg.at, dmg.detail)
            if found is None:
                return
            continue
        blank = len(head) - len(head.lstrip(b"\r\n"))
        if blank and head[blank:blank + 5].lower() == b"warc/":  # extra line ends between records
            r.skip(blank)
            continue
        if parsed is None:
            found = r.find_header(start + 1, at_start=False)
            end = found if found is not None else r.pos
            at, inner = src.origin(start), src.inner(start)
            detail = "bytes that are not a WARC record"
            dmg = src.damage if found is None else None
            if dmg is not None and dmg.kind != END:
                detail += f", then {dmg.detail}"
                reported.add((dmg.at, 0))
            cut = found is None and head[:5].lower() == b"warc/" and (dmg is None or dmg.kind in (END, "truncated"))
            if cut:
                detail = f"the file ends inside a record header ({end - start} bytes of it)"
            reported.add((at, inner))
            yield Junk(at, end - start, detail, truncated=cut, inner=inner)
            continue
        version, fields, hlen = parsed
        length = int(fields["content-length"])
        rec = Record(src.origin(start), version, fields, length, b"", inner=src.inner(start))
        want = expected_digest(fields)
        hasher = hashlib.new(want[0]) if want else None
        r.skip(hlen)
        block_start = r.pos
        rec.block = r.take(min(length, cap))
        if hasher is not None:
            hasher.update(rec.block)
        inside = _after_trailers(rec.block, block_start)  # where a next record would begin, were the length a lie
        if len(rec.block) == cap < length:
            inside += [i + 4 for i in r.skip_scan(length - cap, TRAILER, rec.block[-(len(TRAILER) - 1):].lower(),
                                                  hasher)]
        got = r.pos - block_start
        if got < length:  # the segment ended inside the block: a lie, or a damaged or cut file
            found = r.find_header(block_start, at_start=True)
            if found is not None:
                rec.problem = "bad_length"
                rec.detail = (f"Content-Length {length} runs past the next record header "
                              f"({found - block_start} bytes into the block)")
                rec.block = rec.block[:found - block_start]
            elif src.damage is not None and src.damage.kind in ("corrupt", "junk"):
                rec.problem, rec.detail = "corrupt", src.damage.detail
                reported.add((src.damage.at, 0))
            else:
                rec.problem, rec.detail = "truncated", f"the file ends after {got} of its {length} bytes"
            reported.add((rec.offset, rec.inner))
            yield rec
            continue
        r.peek(16 + HEADER_STEPS[0])  # (inflates what follows: the member starts up to there become known)
        if src.damage is not None and src.damage.kind == "corrupt" and src.damage.at == rec.offset \
                and rec.inner == 0:
            # its own gzip member failed its check (a wrong CRC) once the block was read: the record is damaged
            rec.problem, rec.detail = "corrupt", src.damage.detail
            reported.add((rec.offset, 0))
            yield rec
            continue
        verified = hasher is not None and hasher.digest() == want[1]
        # a record header at a gzip member start inside the block: the length swallowed records (no page can put a
        # member start there), unless the block's digest proves the length
        swallowed = None if verified else \
            _member_header(r, rec.block, block_start, src.members_in(block_start + 1, block_start + length + 4))
        if swallowed is None and want and not verified:
            # the digest does not fit the declared block: does it fit the block up to a record trailer inside?
            # Then that is where the record ends and the length swallowed what follows (no page can forge that)
            swallowed = _digest_boundary(r, rec.block, block_start, inside, want)
        after = _after_block(r, src)
        if swallowed is None and (after != "bad" or verified):
            # a consistent length wins over anything inside its block (a page may hold text that looks like a
            # record); a verified one even over what follows it (that is junk of its own)
            yield rec
            continue
        # the declared length does not end where the record ends: go on where the next record really begins
        found = swallowed if swallowed is not None else \
            (_header_at(r, inside) or r.find_header(block_start, at_start=True))
        where = "no record after it" if found is None else f"the next record header {found - block_start} bytes in"
        rec.problem = "bad_length"
        rec.detail = f"Content-Length {length} does not end at a record boundary ({where})"
        if found is not None:
            rec.block = rec.block[:found - block_start]
            r.seek(found)
        reported.add((rec.offset, rec.inner))
        yield rec


def _after_block(r: Reader, src) -> str:
    """What follows a block: ``ok`` (a trailer, ``TRAILERS``, then a record header; or the segment's end after
    line ends only), ``junk`` (the trailer, then bytes that are no record, outside the record's gzip member: the
    junk's own business) or ``bad`` (the declared length did not end the record)."""
    tail = r.peek(16)
    k = len(tail) - len(tail.lstrip(b"\r\n"))
    if k == len(tail) and r.ended:
        r.skip(k)
        return "ok"
    run = tail[:k]
    if run in TRAILERS:
        _, nxt = r.header(k)
        if nxt is not None:
            r.skip(k)
            r.parsed = (r.pos, nxt)  # (the loop's next header: parsed once)
            return "ok"
    if run[:4] == b"\r\n\r\n" and not src.mid_member(r.pos + 4):
        r.skip(4)
        return "junk"
    return "bad"


def _after_trailers(block: bytes, start: int) -> list[int]:
    """Logical offsets just after each record trailer (``\r\n\r\n``) followed by ``WARC/`` in a block at
    ``start``: where a swallowed record would begin (at most 64)."""
    out = []
    low = block.lower()
    i = low.find(TRAILER)
    while i != -1 and len(out) < 64:
        out.append(start + i + 4)
        i = low.find(TRAILER, i + 1)
    return out


def _digest_boundary(r: Reader, block: bytes, start: int, inside: list[int], want) -> int | None:
    """The first offset in ``inside`` (just after a trailer in the block) where the block before the trailer has
    the record's declared digest and a valid header begins, or None."""
    algo, digest = want
    for c in inside:
        k = c - 4 - start
        if 0 < k <= len(block) and hashlib.new(algo, block[:k]).digest() == digest and _header_at(r, [c]) is not None:
            return c
    return None


def _member_header(r: Reader, block: bytes, start: int, members: list[int]) -> int | None:
    """The first gzip member start in ``members`` where a valid record header begins. Read from the block in hand
    where it lies there (most member starts are no ``WARC/``: one comparison each), else from the stream."""
    for m in members:
        k = m - start
        if 0 <= k < len(block):
            if block[k:k + 5].lower() != b"warc/":
                continue
            if k + MAX_HEADER + 64 <= len(block):
                parsed = parse_header(block, k)
                if parsed is not None and parsed != INCOMPLETE:
                    return m
                continue
        if _header_at(r, [m]) is not None:
            return m
    return None


def _header_at(r: Reader, offsets: list[int]) -> int | None:
    """The first of ``offsets`` where a valid record header begins (the window is left where it was)."""
    here = r.pos
    for m in offsets:
        r.seek(m)
        _, parsed = r.header()
        r.seek(here)
        if parsed is not None:
            return m
    return None
