"""Checks of a generation that need more than a regex: a long substring repeated back to back."""

from __future__ import annotations


def repeated_substring(text: str, min_len: int = 100, block: int | None = None, candidates: int = 8) -> int | None:
    """Period of a substring of >= ``min_len`` characters repeated back to back (``ss``), or None.

    One pass: every aligned block of ``min_len // 2`` characters is hashed; a square of period p >= min_len
    contains such a block in its first half and the same block p characters later, so for each window we look up
    the nearest earlier aligned blocks with the same content at distance >= min_len and check, with C-speed slice
    comparisons, whether the matches around them extend to a full period. Linear in the text for non-degenerate
    input (the usual case); a hit stops the scan. Equal to the regex ``(.{min_len,})\\1`` on the tests' corpora.
    """
    n = len(text)
    if n < 2 * min_len:
        return None
    b = block or max(1, min_len // 2)
    aligned: dict[str, list[int]] = {}
    # aligned blocks are indexed lazily as the scan passes them
    next_aligned = 0
    for j in range(b, n - b + 1):
        while next_aligned + b <= j and next_aligned + b <= n:
            aligned.setdefault(text[next_aligned:next_aligned + b], []).append(next_aligned)
            next_aligned += b
        positions = aligned.get(text[j:j + b])
        if not positions:
            continue
        checked = 0
        for start in reversed(positions):
            p = j - start
            if p < min_len:
                continue
            if _square_through(text, start, p):
                return p
            checked += 1
            if checked >= candidates:
                break
    return None


def _common_prefix(text: str, a: int, c: int, limit: int) -> int:
    """Length of the common prefix of text[a:] and text[c:], at most ``limit`` (binary search on slices)."""
    lo, hi = 0, min(limit, len(text) - c, len(text) - a)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text[a:a + mid] == text[c:c + mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(text: str, a: int, c: int, limit: int) -> int:
    lo, hi = 0, min(limit, a, c)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text[a - mid:a] == text[c - mid:c]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _square_through(text: str, a: int, p: int) -> bool:
    """Whether text has period p over some window of length 2p that covers position a (text[a]==text[a+p]...)."""
    fwd = _common_prefix(text, a, a + p, p)
    if fwd >= p:
        return True
    back = _common_suffix(text, a, a + p, p - fwd)
    return fwd + back >= p
