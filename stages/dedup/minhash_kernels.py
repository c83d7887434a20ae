"""MinHash signatures, compiled: bit-identical to ``datasketch.MinHash`` (scheme ``affine32``, the default since
datasketch 2.0, ``hashfunc=sha1_hash32``), many times faster than ``MinHash.bulk``.

datasketch's definition, per document: every shingle (bytes) is hashed with ``sha1_hash32`` (the first 4 bytes of
its SHA-1, little-endian), mixed with MurmurHash3's 32-bit finalizer, and each permutation ``k`` maps it to
``a_k·h + b_k mod 2^32``; the signature is the minimum per permutation (``2^32 − 1`` for no shingle). The
permutations ``(a, b)`` are taken from datasketch itself (``MinHash(num_perm, seed).permutations``), so a seed means
the same thing here and there. A test compares every signature with datasketch's on real documents.

Shingles (``shingles`` says it in plain Python): the text (lowercased with ``str.lower`` for prose) as UTF-8, cut
into tokens — prose: runs of letters, digits and non-ASCII characters (ASCII punctuation, symbols and whitespace
separate them); code: identifiers/numbers and every other non-space ASCII character alone; chars (languages
written without spaces: a Japanese word 5-gram is a whole line): every character but whitespace and ASCII
punctuation, lowercased — and ``ngram`` consecutive tokens joined by single spaces (all tokens when fewer). The
compiled kernels read chars as words over the text with a space after every character (``prepare``).

Three implementations of that one definition, chosen by ``kernel()``: the C kernel (``_minhash_c.c``, built at
install; SHA-1 on the CPU's SHA extensions where it has them, the permutation loop compiled for AVX-512/AVX2), the
numba kernel below (when the C one could not be built), and ``hashlib`` + numpy (neither; slow). Both compiled ones
tokenise on the UTF-8 bytes without building Python strings (normalising in Python cost 60–95 µs per 2 KB
document, more than the hashing). Where the time goes per 2 KB prose document (~400 shingles): scalar SHA-1
~150 ns per shingle (60 µs), SHA-NI ~25 ns; tokenising ~30 µs in numba, a few in C; the 128 permutations ~4 µs.

``fast64`` is an optional cheaper hash (FNV-1a, 64-bit, folded to 32) in place of SHA-1: not datasketch-identical.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re

import numpy as np

try:  # the C kernel (built by `pip install`; optional): SHA-1 on the CPU's SHA extensions
    from stages.dedup import _minhash_c
except ImportError:  # pragma: no cover - no compiler at install time
    _minhash_c = None

try:
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba comes with the web extra
    HAVE_NUMBA = False

    def njit(*args, **kwargs):
        def wrap(fn):
            return fn
        return wrap if not (len(args) == 1 and callable(args[0])) else args[0]

M32 = np.uint32(0xFFFFFFFF)
SPACE = 32


@njit(cache=True, inline="always")
def _rotl(x, n):
    return np.uint32(((x << np.uint32(n)) | (x >> np.uint32(32 - n))) & M32)


@njit(cache=True)
def sha1_hash32(buf, start, end, w):
    """datasketch's ``sha1_hash32`` of ``buf[start:end]``: SHA-1's first 4 digest bytes, read little-endian."""
    n = end - start
    nblocks = (n + 8) // 64 + 1
    h0 = np.uint32(0x67452301)
    h1 = np.uint32(0xEFCDAB89)
    h2 = np.uint32(0x98BADCFE)
    h3 = np.uint32(0x10325476)
    h4 = np.uint32(0xC3D2E1F0)
    bitlen = np.uint64(n) * np.uint64(8)
    for blk in range(nblocks):
        base = blk * 64
        for i in range(16):
            p = base + 4 * i
            if p + 4 <= n:
                q = start + p
                w[i] = (np.uint32(buf[q]) << np.uint32(24)) | (np.uint32(buf[q + 1]) << np.uint32(16)) | \
                    (np.uint32(buf[q + 2]) << np.uint32(8)) | np.uint32(buf[q + 3])
            else:  # the message's end: its last bytes, the 0x80 terminator, zeros
                v = np.uint32(0)
                for j in range(4):
                    pj = p + j
                    if pj < n:
                        bt = np.uint32(buf[start + pj])
                    elif pj == n:
                        bt = np.uint32(0x80)
                    else:
                        bt = np.uint32(0)
                    v = np.uint32(((v << np.uint32(8)) | bt) & M32)
                w[i] = v
        if blk == nblocks - 1:  # the message length in bits, big-endian, ends the last block
            w[14] = np.uint32(bitlen >> np.uint64(32))
            w[15] = np.uint32(bitlen & np.uint64(0xFFFFFFFF))
        for i in range(16, 80):
            w[i] = _rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
        a, b, c, d, e = h0, h1, h2, h3, h4
        for i in range(0, 20):
            t = np.uint32((_rotl(a, 5) + ((b & c) | (~b & d)) + e + np.uint32(0x5A827999) + w[i]) & M32)
            e, d, c, b, a = d, c, _rotl(b, 30), a, t
        for i in range(20, 40):
            t = np.uint32((_rotl(a, 5) + (b ^ c ^ d) + e + np.uint32(0x6ED9EBA1) + w[i]) & M32)
            e, d, c, b, a = d, c, _rotl(b, 30), a, t
        for i in range(40, 60):
            t = np.uint32((_rotl(a, 5) + ((b & c) | (b & d) | (c & d)) + e + np.uint32(0x8F1BBCDC) + w[i]) & M32)
            e, d, c, b, a = d, c, _rotl(b, 30), a, t
        for i in range(60, 80):
            t = np.uint32((_rotl(a, 5) + (b ^ c ^ d) + e + np.uint32(0xCA62C1D6) + w[i]) & M32)
            e, d, c, b, a = d, c, _rotl(b, 30), a, t
        h0 = np.uint32((h0 + a) & M32)
        h1 = np.uint32((h1 + b) & M32)
        h2 = np.uint32((h2 + c) & M32)
        h3 = np.uint32((h3 + d) & M32)
        h4 = np.uint32((h4 + e) & M32)
    return ((h0 & np.uint32(0xFF)) << np.uint32(24)) | ((h0 & np.uint32(0xFF00)) << np.uint32(8)) | \
        ((h0 >> np.uint32(8)) & np.uint32(0xFF00)) | (h0 >> np.uint32(24))


@njit(cache=True)
def fnv1a32(buf, start, end, w):
    """FNV-1a 64-bit of ``buf[start:end]`` folded to 32 bits (the ``fast64`` option; not datasketch's hash)."""
    h = np.uint64(0xCBF29CE484222325)
    for i in range(start, end):
        h = np.uint64((h ^ np.uint64(buf[i])) * np.uint64(0x100000001B3))
    return np.uint32((h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF))


@njit(cache=True)
def fmix32(h):
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix of the ``affine32`` scheme)."""
    h = np.uint32(h ^ (h >> np.uint32(16)))
    h = np.uint32((h * np.uint32(0x85EBCA6B)) & M32)
    h = np.uint32(h ^ (h >> np.uint32(13)))
    h = np.uint32((h * np.uint32(0xC2B2AE35)) & M32)
    return np.uint32(h ^ (h >> np.uint32(16)))


WORDS, CODE, CHARS = 0, 1, 2


@njit(cache=True, inline="always")
def _is_word_byte(c):
    """ASCII letters and digits, and every byte of a non-ASCII character."""
    return (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) or c >= 128


@njit(cache=True)
def _tokens(buf, s0, s1, mode, tok_start, tok_end):
    """Token boundaries of ``buf[s0:s1]``. WORDS: maximal runs of word bytes (ASCII punctuation, symbols and
    whitespace separate them). CODE: runs of word bytes and ``_`` (identifiers, numbers), and every other
    non-whitespace ASCII byte alone."""
    nt = 0
    i = s0
    while i < s1:
        c = buf[i]
        if _is_word_byte(c) or (mode == CODE and c == 95):
            j = i + 1
            while j < s1 and (_is_word_byte(buf[j]) or (mode == CODE and buf[j] == 95)):
                j += 1
            tok_start[nt] = i
            tok_end[nt] = j
            nt += 1
            i = j
        else:
            if mode == CODE and not (c == 32 or (c >= 9 and c <= 13)):
                tok_start[nt] = i
                tok_end[nt] = i + 1
                nt += 1
            i += 1
    return nt


@njit(cache=True)
def _shingle_hashes(buf, s0, s1, ngram, mode, fast, tok_start, tok_end, scratch, hv, w):
    nt = _tokens(buf, s0, s1, mode, tok_start, tok_end)
    if nt == 0:
        return 0
    ng = nt - ngram + 1 if nt >= ngram else 1
    width = ngram if nt >= ngram else nt
    for g in range(ng):
        n = 0  # the shingle's bytes: its tokens joined by single spaces
        for t in range(g, g + width):
            if t > g:
                scratch[n] = SPACE
                n += 1
            for q in range(tok_start[t], tok_end[t]):
                scratch[n] = buf[q]
                n += 1
        hv[g] = fnv1a32(scratch, 0, n, w) if fast else sha1_hash32(scratch, 0, n, w)
    return ng


@njit(cache=True)
def _signatures(buf, offsets, ngram, mode, a, b, fast, max_tokens, out, want_sets, set_values, set_offsets):
    w = np.empty(80, np.uint32)
    n_perm = a.shape[0]
    tok_start = np.empty(max_tokens + 1, np.int64)
    tok_end = np.empty(max_tokens + 1, np.int64)
    hv = np.empty(max_tokens + 1, np.uint32)
    scratch = np.empty(max(64, offsets[-1] - offsets[0]) + 2 * ngram, np.uint8)
    mins = np.empty(n_perm, np.uint32)
    pos = 0
    for d in range(offsets.shape[0] - 1):
        ng = _shingle_hashes(buf, offsets[d], offsets[d + 1], ngram, mode, fast, tok_start, tok_end, scratch, hv, w)
        if want_sets:  # the raw shingle hashes, for exact Jaccard checks later
            for g in range(ng):
                set_values[pos + g] = hv[g]
            pos += ng
            set_offsets[d + 1] = pos
        for p in range(n_perm):
            mins[p] = M32
        for g in range(ng):
            h = fmix32(hv[g])
            for p in range(n_perm):
                v = np.uint32((a[p] * h + b[p]) & M32)
                if v < mins[p]:
                    mins[p] = v
        out[d, :] = mins


def prepare(texts: list[str | None], mode: int) -> list[str]:
    """What the kernel reads: words mode lowercases (Unicode, with ``str.lower``); code keeps case; chars lowercases,
    drops whitespace and puts a space between characters, so that each is a word."""
    if mode == CHARS:
        return [" ".join("".join((t or "").lower().split())) for t in texts]
    return [(t or "").lower() if mode == WORDS else (t or "") for t in texts]


def pack(texts: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """(UTF-8 buffer, offsets, a bound on tokens per document)."""
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    if encoded:
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
    buf = np.frombuffer(b"".join(encoded) or b" ", np.uint8)
    max_tokens = max((len(e) for e in encoded), default=0) + 2
    return buf, offsets, max_tokens


def kernel() -> str:
    """Which implementation ``signatures`` runs: ``c`` (with ``+sha-ni`` where the CPU has it), ``numba``,
    ``python``; ``SWALLOW_MINHASH_KERNEL=numba|python`` picks a slower one (tests compare them)."""
    want = os.environ.get("SWALLOW_MINHASH_KERNEL", "")
    if _minhash_c is not None and want in ("", "c"):
        return "c+sha-ni" if _minhash_c.has_sha_ni() else "c"
    if HAVE_NUMBA and want in ("", "c", "numba"):
        return "numba"
    return "python"


def signatures(texts: list[str | None], ngram: int, a: np.ndarray, b: np.ndarray, mode: int = WORDS,
               fast: bool = False, shingle_sets: bool = False) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """(uint32 signatures [n_docs, num_perm], each document's shingle hashes if asked)."""
    a = np.asarray(a, np.uint32)
    b = np.asarray(b, np.uint32)
    out = np.empty((len(texts), a.shape[0]), np.uint32)
    if not texts:
        return out, [] if shingle_sets else None
    texts = prepare(texts, mode)
    mode = WORDS if mode == CHARS else mode  # prepared: each character is a word
    which = kernel()
    if which == "python":
        return _signatures_python(texts, ngram, a, b, mode, fast, shingle_sets)
    buf, offsets, max_tokens = pack(texts)
    total = int(offsets[-1]) + len(texts) + 1 if shingle_sets else 1
    set_values = np.empty(total, np.uint32)
    set_offsets = np.zeros(len(texts) + 1, np.int64)
    if which.startswith("c"):
        _minhash_c.signatures(buf, offsets, ngram, mode, a, b, fast, out, set_values, set_offsets, shingle_sets)
    else:
        _signatures(buf, offsets, ngram, mode, a, b, fast, max_tokens, out, shingle_sets, set_values, set_offsets)
    sets = [set_values[set_offsets[i]:set_offsets[i + 1]] for i in range(len(texts))] if shingle_sets else None
    return out, sets


WORD_TOKEN = re.compile(rb"[A-Za-z0-9\x80-\xff]+")
CODE_TOKEN = re.compile(rb"[A-Za-z0-9_\x80-\xff]+|[^\sA-Za-z0-9_\x80-\xff]")


def shingles(text: str | None, ngram: int, mode: int = WORDS) -> list[bytes]:
    """The definition, in plain Python: the document's tokens (see ``_tokens``), ``ngram`` consecutive ones joined by
    a space, or all of them when there are fewer. What a datasketch user would feed ``MinHash.update_batch``."""
    data = prepare([text], mode)[0].encode("utf-8", "surrogatepass")
    toks = (CODE_TOKEN if mode == CODE else WORD_TOKEN).findall(data)
    if not toks:
        return []
    if len(toks) < ngram:
        return [b" ".join(toks)]
    return [b" ".join(toks[i:i + ngram]) for i in range(len(toks) - ngram + 1)]


def _signatures_python(texts, ngram, a, b, mode, fast, shingle_sets):
    if fast:
        raise RuntimeError("hash: fast64 needs the C or numba kernel")
    out = np.empty((len(texts), a.shape[0]), np.uint32)
    sets = []
    for i, t in enumerate(texts):
        hv = np.array([int.from_bytes(hashlib.sha1(s).digest()[:4], "little") for s in shingles(t, ngram, mode)],
                      np.uint32)
        sets.append(hv)
        if len(hv) == 0:
            out[i] = M32
            continue
        h = hv.copy()
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
        out[i] = (h[:, None] * a[None, :] + b[None, :]).min(axis=0)
    return out, sets if shingle_sets else None


@functools.lru_cache(maxsize=8)
def datasketch_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own (a, b) for ``num_perm`` and ``seed`` (made once per process)."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return np.asarray(a, np.uint32), np.asarray(b, np.uint32)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 [n_docs, bands]: one hash per band of ``rows`` signature values (LSH buckets)."""
    n = sig.shape[0]
    out = np.empty((n, bands), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(bands):
            h = np.full(n, np.uint64(0x9E3779B97F4A7C15) * np.uint64(j + 1), np.uint64)
            for r in range(rows):
                h = (h ^ sig[:, j * rows + r].astype(np.uint64)) * np.uint64(0x100000001B3)
                h ^= h >> np.uint64(29)
            out[:, j] = h * np.uint64(0xBF58476D1CE4E5B9) ^ (h >> np.uint64(31))
    return out
