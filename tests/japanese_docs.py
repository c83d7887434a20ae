"""Japanese documents for the reference comparison of ``japanese_quality``: the text of every real Japanese page in
``../shared/data`` (43 of ``html/japanese``, 29 EUC-JP pages of the ClueWeb WARC read by our WARC source), and
documents built from each that reach every threshold from both sides (the amount of each change varies from page to
page): cut short, paragraphs repeated, hiragana turned into katakana, English lines mixed in, ellipses at line
ends, sentence ends removed, a syllable pair repeated (the top character n-grams). A page's text is its HTML's text
with lxml (scripts and styles dropped, one line per line of text, blank lines dropped), not an extractor's: the
expected values must not move when extraction gets better. Made by ``tests/make_japanese_reference.py``; read by
``tests/stages/filters/test_japanese_quality.py``.
"""

from __future__ import annotations

import json

from tests.conftest import SHARED as DATA

ENGLISH = ["The committee published its annual report on regional transport last week.",
           "Prices rose slightly in the third quarter, according to the statement.",
           "Readers can find the full schedule on the official website."]


def page_text(html: str) -> str:
    import lxml.html

    doc = lxml.html.document_fromstring(html.encode("utf-8", "surrogatepass"),
                                        parser=lxml.html.HTMLParser(encoding="utf-8"))
    for el in doc.xpath("//script|//style|//noscript|//template"):
        el.drop_tree()
    lines = (line.strip() for line in doc.text_content().splitlines())
    return "\n".join(line for line in lines if line)


def pages() -> list[tuple[str, str]]:
    """(name, text) of every real Japanese page here, in a fixed order."""
    from stages.ingest.warc import WarcSource

    out = []
    root = DATA / "html" / "japanese"
    for line in (root / "index.jsonl").read_text().splitlines():
        entry = json.loads(line)
        html = (root / entry["file"]).read_bytes().decode("utf-8", "replace")
        out.append((entry["file"], page_text(html)))
    src = WarcSource(paths=[str(DATA / "warc" / "clueweb09-ja_quirk.warc.gz")])
    for spec in src.plan():
        for t in src.read(spec):
            if isinstance(t, dict):
                continue
            for r in t.to_pylist():
                if r.get("html"):
                    out.append((f"clueweb09-ja_quirk/{r['url']}", page_text(r["html"])))
    return out


def variants(i: int, text: str) -> dict[str, str]:
    """The documents built from page ``i``'s text; the strength of each change depends on ``i``."""
    lines = text.split("\n")
    share = (i * 37 % 100) / 100  # 0.00 … 0.99, spread over the pages
    katakana = "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" and (k * 7919 % 100) < share * 100 else c
                       for k, c in enumerate(text))
    mixed = []
    for k, line in enumerate(lines):
        mixed.append(line)
        mixed += ENGLISH[: (i + k) % 4]
    ellipsis = "\n".join(line.rstrip("。") + "…" if (k * 61 % 100) < share * 100 else line
                         for k, line in enumerate(lines))
    run_on = "\n".join(line.replace("。", "、") if (k * 31 % 100) < share * 100 else line
                       for k, line in enumerate(lines))
    return {"page": text, "cut": text[: 150 + (i * 53 % 500)], "repeated": "\n".join(lines * (1 + i % 3)),
            "katakana": katakana, "english": "\n".join(mixed), "ellipsis": ellipsis, "run_on": run_on,
            "stutter": text[:800] + "\n" + "あい" * int(share * 400)}


def documents() -> list[tuple[str, str]]:
    """(name, text): every page and its variants, ``<page>#<variant>``."""
    return [(f"{name}#{kind}", doc) for i, (name, text) in enumerate(pages())
            for kind, doc in variants(i, text).items()]
