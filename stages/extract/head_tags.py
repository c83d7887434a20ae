"""Tags of an HTML head read in one linear pass: no regular expression, no backtracking.

The language pre-filter needs three things from the first characters of a page: the ``<html>`` tag's ``lang``,
a ``<meta http-equiv="content-language" content=...>`` and the ``<title>``. Regular expressions with lazy
quantifiers inside a tag (``<meta\\b[^>]*?http-equiv...``) backtrack: 24 K characters of ``<meta`` cost 27 s, one
65 KB page got no verdict in 20 minutes. Here each tag is scanned once, character by character up to its end,
and the scan resumes after it, so the work is linear in the head whatever it holds.

Attributes follow HTML's tokenizer closely enough for these tags: names up to ``=``, whitespace, ``/`` or ``>``;
values quoted with ``"`` or ``'`` (a ``>`` inside quotes does not end the tag) or unquoted up to whitespace or ``>``.
"""

from __future__ import annotations

import html as htmllib

_SPACE = " \t\n\r\f"


def iter_tags(text: str, name: str, lowered: str | None = None):
    """``(attributes, end)`` for each ``<name ...>`` start tag in ``text`` (attribute names lowercased; the last
    of a repeated name wins, as browsers keep the first: callers take ``attributes`` as they need). ``end`` is the
    index after the tag's ``>`` (or the text's end for an unclosed tag, which is then the last tag)."""
    low = lowered if lowered is not None else text.lower()
    needle = "<" + name
    pos, n = 0, len(text)
    while True:
        i = low.find(needle, pos)
        if i < 0:
            return
        j = i + len(needle)
        if j < n and low[j] not in _SPACE + "/>":
            pos = j  # <htmlx>, <metadata>: another tag
            continue
        attrs, end = _attributes(text, low, j)
        yield attrs, end
        pos = end


def _attributes(text: str, low: str, j: int) -> tuple[dict[str, str], int]:
    n = len(text)
    attrs: dict[str, str] = {}
    while j < n:
        while j < n and (low[j] in _SPACE or low[j] == "/"):
            j += 1
        if j >= n:
            break
        if low[j] == ">":
            return attrs, j + 1
        k = j
        while k < n and low[k] not in _SPACE + "/>=":
            k += 1
        key = low[j:k]
        while k < n and low[k] in _SPACE:
            k += 1
        value = ""
        if k < n and low[k] == "=":
            k += 1
            while k < n and low[k] in _SPACE:
                k += 1
            if k < n and text[k] in "\"'":
                q = text[k]
                close = text.find(q, k + 1)
                close = n if close < 0 else close
                value, k = text[k + 1:close], close + 1
            else:
                v = k
                while k < n and low[k] not in _SPACE + ">":
                    k += 1
                value = text[v:k]
        if key:
            attrs.setdefault(key, value)
        if k == j:  # no progress (cannot happen: a key or '=' was consumed); guard the linear bound anyway
            k += 1
        j = k
    return attrs, n


def language_token(value: str) -> str | None:
    """The language code at the start of an attribute value: up to 20 of ``A-Za-z_-`` after spaces (at least 2),
    else None."""
    v = value.lstrip(_SPACE)
    k = 0
    while k < len(v) and k < 20 and (v[k].isascii() and (v[k].isalpha() or v[k] in "_-")):
        k += 1
    return v[:k] if k >= 2 else None


def declared_language(head: str) -> str | None:
    """``<html lang>`` / ``xml:lang`` of the first ``<html>`` tag that has one, else the first Content-Language
    meta; as written (not lowercased), None when the head declares none."""
    low = head.lower()
    for attrs, _ in iter_tags(head, "html", low):
        for key in ("lang", "xml:lang"):
            if key in attrs:
                tag = language_token(attrs[key])
                if tag:
                    return tag
    for attrs, _ in iter_tags(head, "meta", low):
        if attrs.get("http-equiv", "").strip().lower() == "content-language" and "content" in attrs:
            tag = language_token(attrs["content"])
            if tag:
                return tag
    return None


def strip_tags(text: str) -> str:
    """``text`` with every ``<...>`` replaced by a space (an unclosed ``<`` keeps what follows)."""
    out, pos = [], 0
    while True:
        i = text.find("<", pos)
        if i < 0:
            out.append(text[pos:])
            return "".join(out)
        j = text.find(">", i + 1)
        if j < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:i])
        out.append(" ")
        pos = j + 1


def title_text(head: str) -> str:
    """The first ``<title>``'s text, tags removed, entities decoded, whitespace collapsed ('' without one)."""
    low = head.lower()
    for _, end in iter_tags(head, "title", low):
        close = low.find("</title", end)
        if close < 0:
            return ""  # no later <title> can close either
        return " ".join(htmllib.unescape(strip_tags(head[end:close])).split())
    return ""
