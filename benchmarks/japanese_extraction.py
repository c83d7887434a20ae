"""How well extraction finds the main content of Japanese pages (issue 21), measured on every real Japanese page in
``../shared/data``:

- **full text** (4 pages: Readability.js's expected article for 2, newspaper4k's expected text for 2): precision
  and recall of character bigrams (a multiset: Japanese has no spaces, so words are not a unit), whitespace removed;
- **start of the text** (30 pages: Mercury parser's ``first13`` for 29, ExtractContent's expected start for 1): the
  share of pages whose extraction contains that start (whitespace removed), or a piece of it (its expected starts
  often open with a caption or a metadata line from the site's own rule), and how many characters come before it
  (navigation kept above the article);
- **snippets** (1 page, trafilatura's evaluation entry): ``with`` found / ``without`` not found;
- **same site** (29 EUC-JP pages of one shop in the ClueWeb WARC, no ground truth): the share of pages whose text is
  identical to another page's — one sidebar extracted for every product was 29 of 29.

Run: ``python -m benchmarks.japanese_extraction`` (prints the table for bare trafilatura and for the stage's
extraction with its options; ``--english`` adds trafilatura's English evaluation set, 300 pages).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
JA = DATA / "html" / "japanese"
SPACE = re.compile(r"\s+")


def squeeze(text: str) -> str:
    return SPACE.sub("", text or "")


def bigrams(text: str) -> collections.Counter:
    t = squeeze(text)
    return collections.Counter(t[i:i + 2] for i in range(len(t) - 1))


def html_text(html: str) -> str:
    import lxml.html

    return lxml.html.fromstring(html).text_content()


def truth_pages() -> list[dict]:
    """Every page of ``html/japanese`` with its ground truth: kind ``full``, ``start``, ``snippets`` or ``none``."""
    out = []
    for line in (JA / "index.jsonl").read_text().splitlines():
        entry = json.loads(line)
        page = {"file": entry["file"], "url": entry.get("url") or None,
                "html": (JA / entry["file"]).read_bytes().decode("utf-8", "replace"), "kind": "none"}
        gt = entry.get("groundtruth") or ""
        group = entry["file"].split("/")[0]
        if group == "mozilla_readability":
            expected = gt.split(" + ")[0]
            page.update(kind="full", truth=html_text((JA / expected).read_text()))
        elif group == "newspaper4k":
            page.update(kind="full", truth=(JA / gt.split(" + ")[0]).read_text())
        elif group == "postlight_parser":
            page.update(kind="start", truth=json.loads((JA / gt).read_text())["expected"]["first13"])
        elif group == "extractcontent3":
            page.update(kind="start", truth=json.loads((JA / gt).read_text())["expected"]["text_startswith"])
        elif group == "trafilatura":
            (entry_value,) = json.loads((JA / gt).read_text()).values()
            page.update(kind="snippets", truth=entry_value)
        out.append(page)
    return out


def clueweb_pages() -> list[dict]:
    """The HTML pages of the ClueWeb WARC, read (and decoded from EUC-JP) by our WARC source."""
    from stages.ingest.warc import WarcSource

    src = WarcSource(paths=[str(DATA / "warc" / "clueweb09-ja_quirk.warc.gz")])
    rows = []
    for spec in src.plan():
        for t in src.read(spec):
            if not isinstance(t, dict):
                rows += [{"url": r["url"], "html": r["html"]} for r in t.to_pylist() if r.get("html")]
    return rows


def score(extract: Callable[[str, str | None], str], pages: list[dict], clueweb: list[dict]) -> dict:
    overlap = got = want = 0
    starts = found = pieces = 0
    lead: list[int] = []
    tp = fp = fn = tn = 0
    for page in pages:
        text = extract(page["html"], page["url"]) or ""
        if page["kind"] == "full":
            a, b = bigrams(text), bigrams(page["truth"])
            overlap += sum((a & b).values())
            got += sum(a.values())
            want += sum(b.values())
        elif page["kind"] == "start":
            starts += 1
            flat = squeeze(text)
            at = flat.find(squeeze(page["truth"]))
            if at >= 0:
                found += 1
                lead.append(at)
            # Mercury's expected starts often open with a caption or a metadata line its site rules add: a page also
            # counts where any whitespace-separated piece of ≥ 10 characters of the expected start is there
            if any(len(piece) >= 10 and piece in flat for piece in page["truth"].split()):
                pieces += 1
        elif page["kind"] == "snippets":
            for s in page["truth"].get("with", []):
                tp, fn = (tp + 1, fn) if squeeze(s) in squeeze(text) else (tp, fn + 1)
            for s in page["truth"].get("without", []):
                fp, tn = (fp + 1, tn) if squeeze(s) in squeeze(text) else (fp, tn + 1)
    texts = [squeeze(extract(p["html"], p["url"])) for p in clueweb]
    counts = collections.Counter(texts)
    same = sum(1 for t in texts if counts[t] > 1)
    lead.sort()
    return {"full_precision": overlap / max(got, 1), "full_recall": overlap / max(want, 1),
            "start_found": found, "start_pages": starts, "start_piece_found": pieces,
            "lead_median": lead[len(lead) // 2] if lead else None,
            "snippets_with": tp, "snippets_with_of": tp + fn, "snippets_without_leaked": fp,
            "clueweb_identical": same, "clueweb_pages": len(texts), "clueweb_distinct": len(counts),
            "clueweb_empty": sum(1 for t in texts if not t)}


def stage_extractor(**options) -> Callable[[str, str | None], str]:
    """The extract stage's per-page function (run in this process, not its child), with the stage's options."""
    from stages.extract import page as H
    from stages.extract.html import Extract

    defaults = Extract(name="extract")
    opts = {"extractor": defaults.extractor, "math": defaults.math, "math_fallback": defaults.math_fallback,
            "output_format": defaults.output_format, "include_comments": defaults.include_comments,
            "prose_fallback": defaults.prose_fallback}
    opts.update(options)

    def run(html: str, url: str | None) -> str:
        H.setup_worker(opts)
        return H.extract_page(html, url)["text"] or ""

    return run


def bare_trafilatura(html: str, url: str | None) -> str:
    import trafilatura

    return trafilatura.extract(html, url=url, include_tables=True, deduplicate=False) or ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--english", action="store_true", help="also score trafilatura's English evaluation set")
    args = ap.parse_args()
    pages, clueweb = truth_pages(), clueweb_pages()
    runs = {"bare trafilatura": bare_trafilatura,
            "stage, prose_fallback off": stage_extractor(prose_fallback=False),
            "stage (defaults)": stage_extractor()}
    print(f"{len(pages)} pages of html/japanese ({sum(p['kind'] == 'full' for p in pages)} full text, "
          f"{sum(p['kind'] == 'start' for p in pages)} start, {sum(p['kind'] == 'snippets' for p in pages)} snippets),"
          f" {len(clueweb)} ClueWeb pages")
    print("| extraction | full P | full R | start found | a piece of it found | chars before start (median) | snippets with / without |"  # noqa: E501
          " ClueWeb identical | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, fn in runs.items():
        t0 = time.perf_counter()
        s = score(fn, pages, clueweb)
        print(f"| {name} | {s['full_precision']:.3f} | {s['full_recall']:.3f} | {s['start_found']}/{s['start_pages']}"
              f" | {s['start_piece_found']}/{s['start_pages']} | {s['lead_median']} | {s['snippets_with']}/{s['snippets_with_of']} / {s['snippets_without_leaked']}"  # noqa: E501
              f" | {s['clueweb_identical']}/{s['clueweb_pages']} ({s['clueweb_distinct']} distinct) "
              f"| {time.perf_counter() - t0:.1f} |")
    if args.english:
        from benchmarks.extract_quality import score as english

        for name, fn in runs.items():
            s = english(lambda raw, url, fn=fn: fn(raw.decode("utf-8", "replace"), url))
            print(f"English, {name}: precision {s['precision']:.3f} recall {s['recall']:.3f} F1 {s['f1']:.3f}")


if __name__ == "__main__":
    main()
