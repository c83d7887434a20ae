"""E-mail and IP addresses found in linear time, with datatrove's PII formatter's answers.

datatrove's ``PIIFormatter`` finds e-mail addresses with an RFC-5322-style pattern whose nested quantifiers
backtrack: ``x@`` followed by 16 KB of ``a-`` took 4.4 s, a run of dotted words 1.4 s (quadratic, measured here).
``email_spans`` gives that pattern's matches (the test compares them on real documents and fuzzed strings) in one
pass: an ``@`` ends a local part, which is walked back over its characters once; the domain after it is read label by
label once, and the longest valid domain is taken, as the pattern's greedy quantifiers do. IPv4 addresses use
datatrove's pattern itself: each attempt reads at most 15 characters, so a scan is linear. IPv6 addresses (which
datatrove does not look for) are runs of hex digits, colons and dots that ``ipaddress`` reads as IPv6.
"""

from __future__ import annotations

import ipaddress
import re

#: The characters of an e-mail's local part (datatrove's pattern: RFC 5322's atext).
_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_LABEL = _ALNUM | {"-"}
#: datatrove's IPv4 pattern (linear: bounded attempts) and the bracketed address literal of its e-mail pattern.
IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)")
_BRACKET = re.compile(r"\[(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|"
                      r"[A-Za-z0-9-]*[A-Za-z0-9]:)]")
#: The longest bracketed literal looked at (its last part is unbounded in the pattern; no real address is near it).
_BRACKET_MAX = 256


def _word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _boundary(text: str, i: int) -> bool:
    """``\\b`` at ``i`` (Python's Unicode word characters)."""
    before = i > 0 and _word(text[i - 1])
    after = i < len(text) and _word(text[i])
    return before != after


def _domain_end(text: str, p: int) -> int:
    """End of the longest ``(label\\.)+label`` at ``p`` (labels: alphanumeric at both ends, hyphens inside), or -1."""
    n = len(text)
    segments = []  # (start, end) of each dot-separated piece of the run of label characters and dots
    i = p
    while True:
        j = i
        while j < n and text[j] in _LABEL:
            j += 1
        segments.append((i, j))
        if j < n and text[j] == ".":
            i = j + 1
            continue
        break
    # the leading pieces that are whole labels followed by a dot
    full = 0
    for a, b in segments[:-1]:
        if b > a and text[a] in _ALNUM and text[b - 1] in _ALNUM:
            full += 1
        else:
            break
    for k in range(full, 0, -1):  # most labels first, as the greedy group does
        a, b = segments[k]
        if a < b and text[a] in _ALNUM:
            end = b
            while text[end - 1] not in _ALNUM:
                end -= 1
            return end
    return -1


def email_spans(text: str) -> list[tuple[int, int]]:
    """The spans datatrove's e-mail pattern matches (``re.finditer``), in order, in linear time."""
    spans: list[tuple[int, int]] = []
    floor = 0  # a match starts at or after the previous one's end
    q = text.find("@")
    while q != -1:
        s = q
        if q > floor and text[q - 1] in _LOCAL:
            # walk the local part back: local characters, and dots with a local character on each side
            s = q - 1
            while s > floor:
                c = text[s - 1]
                if c in _LOCAL or (c == "." and s - 2 >= floor and text[s - 2] in _LOCAL):
                    s -= 1
                else:
                    break
            start = next((x for x in range(s, q) if text[x] != "." and _boundary(text, x)), None)
            if start is not None:
                end = _domain_end(text, q + 1)
                if end == -1 and q + 1 < len(text) and text[q + 1] == "[":
                    m = _BRACKET.match(text, q + 1, min(len(text), q + 1 + _BRACKET_MAX))
                    end = m.end() if m else -1
                if end != -1:
                    spans.append((start, end))
                    floor = end
                    q = text.find("@", end)
                    continue
        q = text.find("@", q + 1)
    return spans


def is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def ipv4_spans(text: str, public_only: bool = True) -> list[tuple[int, int]]:
    """datatrove's IPv4 matches that are (public) addresses."""
    return [m.span() for m in IPV4.finditer(text) if not public_only or is_public(m.group(0))]


_HEX_COLON = frozenset("0123456789abcdefABCDEF:.")


def ipv6_spans(text: str, public_only: bool = True) -> list[tuple[int, int]]:
    """Runs of hex digits, colons and dots with at least two colons that read as an IPv6 address (public ones)."""
    out, i, n = [], 0, len(text)
    while True:
        i = text.find(":", i)
        if i == -1:
            return out
        a = i
        while a > 0 and text[a - 1] in _HEX_COLON:
            a -= 1
        b = i
        while b < n and text[b] in _HEX_COLON:
            b += 1
        run = text[a:b].strip(".")
        start = a + (len(text[a:b]) - len(text[a:b].lstrip(".")))
        if run.count(":") >= 2 and len(run) <= 45:
            try:
                addr = ipaddress.IPv6Address(run)
                if not public_only or addr.is_global:
                    out.append((start, start + len(run)))
            except ValueError:
                pass
        i = b + 1
