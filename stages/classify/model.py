"""What a trained quality classifier is on disk, and how a text is shown to it (one definition for training and
for the stage, so the two read a document alike).

A classifier folder holds ``model.bin`` (fastText supervised), ``classifier.json`` (each label's numeric value,
the text normalisation, where the labels came from, the validation figures) and ``README.md`` (its card).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Characters of a document the classifier reads (its beginning): enough to judge, bounded per row.
MAX_CHARS = 10_000
LABEL = "__label__"


def normalise(text: str, max_chars: int = MAX_CHARS) -> str:
    """One line of lower-case words: fastText reads a line; case and layout are not what a grade is about."""
    return " ".join(text[:max_chars].lower().split())


def read_meta(folder: str | Path) -> dict[str, Any]:
    """``classifier.json`` of a classifier folder; ValueError naming the file when it is not one."""
    path = Path(folder) / "classifier.json"
    try:
        meta = json.loads(path.read_text())
        values = {str(k): float(v) for k, v in meta["values"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a classifier made by `swallow classifier train` ({type(exc).__name__})") \
            from None
    if not values:
        raise ValueError(f"{path}: no labels")
    return {**meta, "values": values}


def expected_scores(labels: list[list[str]], probs: list[Any], values: dict[str, float]) -> list[float]:
    """Σ p(label) × value(label) per row (fastText's probabilities over every label, ``k=-1``)."""
    out = []
    for lab, p in zip(labels, probs):
        total = sum(float(q) for q in p) or 1.0
        out.append(sum(float(q) * values.get(name.removeprefix(LABEL), 0.0) for name, q in zip(lab, p)) / total)
    return out


def label_name(value: float) -> str:
    """How a grade is written in a label or a reason: 3, not 3.0."""
    return str(int(value)) if float(value) == int(value) else repr(float(value))


def grade_texts(model, texts: list[str], values: dict[str, float], max_chars: int = MAX_CHARS
                ) -> tuple[list[float], list[float], list[str]]:
    """(expected score, grade, most probable label) of each text: the one reading that training measures and the
    stage applies. The grade is the most probable label's value. The two other readings were worse on the
    3-grade synthetic set of tests/stages/classify, where that label was right for every held-out row: of the top
    grade's rows, the rounded expected grade (FineWeb-Edu's rule for its regression head) found 3 % and 44 % (two
    seeds), the median of the predicted grades 57 % and 100 %: both pull an unsure softmax towards the middle."""
    labels, probs = model.predict([normalise(t, max_chars) for t in texts], k=-1)
    top = [lab[0].removeprefix(LABEL) if len(lab) else "" for lab in labels]
    return expected_scores(labels, probs, values), [values.get(t, 0.0) for t in top], top
