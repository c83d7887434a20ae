"""How mathematical a document is: ``math_score`` in [0, 1], an OpenWebMath-style signal; keep above a threshold.

Evidence, counted on the extracted text (formulas arrive there as ``$…$`` from the extract stage):

* ``math_tex_spans``: delimited spans that read as TeX — a ``\\command`` or a sub/superscript — and not as code:
  no ``;``, double quote, ``->``, ``==``, ``&&``, ``||``, ``${`` or ``$(`` inside. PHP/shell ``$var``, template
  ``${x}`` and prices ("$60 million … $5") are not formulas;
* ``math_latex_commands``: LaTeX math commands in the text (``\\frac``, ``\\sum``, ``\\alpha``, …);
* ``math_symbols``: non-ASCII characters of Unicode's math-symbol category (≤ ≠ ∑ ∫ √ ± …);
* ``math_formulas`` (from the extract stage, when present): formulas found in the page's HTML markup.

``evidence = 2·tex_spans + latex_commands + 0.5·symbols + (5 if the HTML had math markup)``, taken per thousand
characters (``density = evidence / (1 + chars/1000)``), and ``math_score = 1 − exp(−density / 4)``: 0 without
evidence, 0.5 at ≈ 2.8 pieces of evidence per thousand characters. Documents below ``min_score`` are rejected as
``not_math``. Optionally a fastText classifier (``classifier``: model path, ``classifier_label``) scores the text
too (``math_classifier_score``) and decides instead.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.document_filter import DocumentFilter
from stages.text.units import COMMANDS, is_math_symbol, tex_spans


def measure(text: str, markup: int | None) -> dict[str, Any]:
    spans = tex_spans(text)
    commands = len(COMMANDS.findall(text))
    symbols = sum(1 for ch in text if ord(ch) > 127 and is_math_symbol(ch))
    evidence = 2 * spans + commands + 0.5 * symbols + (5 if markup else 0)
    density = evidence / (1 + len(text) / 1000)
    return {"math_tex_spans": spans, "math_latex_commands": commands, "math_symbols": symbols,
            "math_score": 1 - math.exp(-density / 4)}


class MathScore(DocumentFilter):
    """Score how mathematical each document is; keep those at or above ``min_score``."""

    type: ClassVar[str] = "math_score"
    thresholds: ClassVar[dict[str, tuple[str, ...]]] = {"math_score": ("min_score",)}
    measures: ClassVar = {"math_tex_spans": pa.int64(), "math_latex_commands": pa.int64(), "math_symbols": pa.int64(),
                          "math_score": pa.float64()}
    #: Lowest math_score kept (not_math below).
    min_score: float = Field(0.5, ge=0, le=1)
    #: Optional fastText classifier (path); its probability of ``classifier_label`` decides instead.
    classifier: str | None = None
    classifier_label: str = "__label__math"
    batch_size: int = Field(512, ge=1)
    _clf: Any = PrivateAttr(None)

    def preflight(self) -> list[str]:
        import os

        problems = super().preflight()
        if self.classifier and not os.path.isfile(os.path.expanduser(self.classifier)):
            problems.append(f"stage {self.name!r}: classifier {self.classifier!r}: no such file")
        return problems

    def setup(self) -> None:
        if self.classifier:
            import os

            if not os.path.isfile(self.classifier):
                raise FileNotFoundError(f"math_score: classifier {self.classifier} not found")
            import fasttext

            self._clf = fasttext.load_model(self.classifier)

    def measurement_types(self) -> dict:
        return {**self.measures, **({"math_classifier_score": pa.float64()} if self.classifier else {})}

    def measure_all(self, texts: list[str], table: pa.Table) -> list[dict]:
        markup = table.column("math_formulas").to_pylist() if "math_formulas" in table.column_names \
            else [None] * len(texts)
        rows = [measure(t, m) for t, m in zip(texts, markup)]
        if self._clf is not None and rows:
            labels, probs = self._clf.predict([" ".join(t.split())[:10_000] for t in texts], k=-1)
            for r, lab, p in zip(rows, labels, probs):
                r["math_classifier_score"] = float(dict(zip(lab, p)).get(self.classifier_label, 0.0))
        return rows

    def decide(self, m: dict, text: str) -> str | None:
        score = m["math_classifier_score"] if self._clf is not None else m["math_score"]
        return None if score >= self.min_score else "not_math"
