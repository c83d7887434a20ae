"""General extraction quality on trafilatura's own evaluation set (``trafilatura_eval_300.tar.gz``): for every page,
the ``with`` snippets (main text) that must be found and the ``without`` snippets (boilerplate) that must not.
Precision = TP / (TP + FP), recall = TP / (TP + FN), F1 — trafilatura's evaluation method."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "data" / "html" / "general" / "trafilatura_eval_300.tar.gz"


def pages() -> list[tuple[dict, bytes]]:
    with tarfile.open(EVAL) as t:
        meta = json.load(t.extractfile("trafilatura_eval/evaldata.json"))
        files = {m.name.rsplit("/", 1)[-1]: m for m in t.getmembers() if m.name.endswith(".html")}
        return [(dict(v, url=url), t.extractfile(files[v["file"]]).read()) for url, v in meta.items()
                if v["file"] in files]


def score(extract: Callable[[bytes, str], str]) -> dict[str, float]:
    tp = fp = tn = fn = 0
    for meta, raw in pages():
        text = extract(raw, meta["url"]) or ""
        for s in meta.get("with", []):
            tp, fn = (tp + 1, fn) if s in text else (tp, fn + 1)
        for s in meta.get("without", []):
            fp, tn = (fp + 1, tn) if s in text else (fp, tn + 1)
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / max(precision + recall, 1e-9),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}
