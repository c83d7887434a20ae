"""The math-recall measure of issue 10: which ground-truth formulas of a page survive in an extracted text.

Ground truth: ``../shared/data/html/math/webkit_bench/groundtruth/*.jsonl.gz`` (the benchmark's expected
extraction): every ``equation-interline`` item, every ``<ccmath-inline>`` in a paragraph, and every ``$…$`` /
``$$…$$`` span of its ``content``. A formula counts when, normalised (HTML-unescaped, whitespace and the
delimiters ``$ \\( \\) \\[ \\]`` dropped), it has at least 4 characters; it is found when it is a substring of the
extracted text normalised the same way. A page's recall is found / non-trivial formulas; pages are macro-averaged.
"""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT.parent / "shared" / "data" / "html" / "math" / "webkit_bench"


def normalise(s: str) -> str:
    s = re.sub(r"\s+", "", html.unescape(s))
    for d in ("$", "\\(", "\\)", "\\[", "\\]"):
        s = s.replace(d, "")
    return s


def ground_truth(path: Path) -> list[str]:
    d = json.loads(gzip.open(path).read())
    out: list[str] = []

    def walk(x):
        if isinstance(x, dict):
            if x.get("type") == "equation-interline":
                out.append((x.get("content") or {}).get("math_content", ""))
            rc = x.get("raw_content")
            if isinstance(rc, str):
                out.extend(html.unescape(m) for m in re.findall(r"<ccmath-inline[^>]*>(.*?)</ccmath-inline>", rc, re.S))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(d["content_list"])
    content = d.get("content") or ""
    out += re.findall(r"\$\$(.+?)\$\$", content, re.S)
    out += re.findall(r"(?<![\$\\])\$([^$\n]+?)\$(?!\$)", content)
    seen, formulas = set(), []
    for f in out:
        n = normalise(f)
        if len(n) >= 4 and n not in seen:
            seen.add(n)
            formulas.append(n)
    return formulas


def pages() -> list[tuple[str, Path, list[str]]]:
    """(name, html file, non-trivial formulas) of the pages whose ground truth holds formulas."""
    out = []
    for gt in sorted((BENCH / "groundtruth").glob("*.jsonl.gz")):
        name = gt.name[: -len(".jsonl.gz")]
        formulas = ground_truth(gt)
        if formulas:
            out.append((name, BENCH / f"{name}.html", formulas))
    return out


def recall(text: str, formulas: list[str]) -> tuple[int, int]:
    norm = normalise(text or "")
    return sum(1 for f in formulas if f in norm), len(formulas)
