"""Language identification with fastText (``lid.176``): ``language`` and ``language_score`` columns.

The text's line breaks are replaced by spaces (fastText predicts one line) and, for long documents, only the
first ``max_chars`` characters are read (the language of a page is decided long before its end; 0: all). Rows
whose top language is not in ``languages`` are rejected as ``other_language`` and those below ``min_score`` as
``low_language_score``; both keep their columns, so a new threshold needs no re-run. With ``mask_math``,
formulas are taken out before predicting (LaTeX reads as no language).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import NotSetUp
from pipeline.core.stage import Stage, Verdict
from stages.text.units import FORMULA


def model_problems(stage: str, model: str) -> list[str]:
    """Preflight: the fastText model path is a file (one line naming the key otherwise)."""
    from pipeline.core.component import missing_path

    if os.path.isfile(os.path.expanduser(model)):
        return []
    return missing_path(stage, "model", model, "file") or \
        [f"stage {stage!r}: model {model!r} is not a file (a fastText lid.176.bin/.ftz path)"]


def load_model(stage_type: str, model: str):
    """The fastText model, loaded once per worker."""
    if not os.path.isfile(model):
        raise FileNotFoundError(f"{stage_type}: model file {model} not found (set stages.<name>.model to a "
                                "fastText lid.176.bin/.ftz path)")
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # its load warning goes to stderr on every worker
    return fasttext.load_model(model)


def top_language(model, texts: list[str]) -> tuple[list[str | None], list[float]]:
    """fastText's top label (without ``__label__``) and its probability for each one-line text."""
    labels, probs = model.predict(texts, k=1)
    return ([lab[0].replace("__label__", "") if lab else None for lab in labels],
            [float(p[0]) if len(p) else 0.0 for p in probs])


class LanguageId(Stage):
    """fastText language identification; keep-list and minimum score."""

    type: ClassVar[str] = "language_id"
    thresholds: ClassVar[dict[str, tuple[str, ...]]] = {"language_score": ("min_score",)}
    requires: ClassVar[tuple[str, ...]] = ("fasttext",)
    extra: ClassVar[str] = "web"
    #: Path of a fastText language-ID model (lid.176.bin or lid.176.ftz).
    model: str
    #: Languages kept (ISO codes as the model labels them, e.g. en, ja); empty: keep every language.
    languages: list[str] = ["en"]
    #: Minimum probability of the top language.
    min_score: float = Field(0.65, ge=0, le=1)
    #: Characters read per document (0: all).
    max_chars: int = Field(10_000, ge=0)
    #: Drop formulas before predicting.
    mask_math: bool = True
    column: str = "text"
    batch_size: int = Field(1024, ge=1)
    _model: Any = PrivateAttr(None)

    def preflight(self) -> list[str]:
        return super().preflight() + model_problems(self.name, self.model)

    def setup(self) -> None:
        self._model = load_model(self.type, self.model)

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if self._model is None:
            raise NotSetUp("language_id: process() before setup()")
        texts = table.column(self.column).to_pylist()
        prepared = []
        for t in texts:
            t = t or ""
            if self.mask_math:
                t = FORMULA.sub(" ", t)
            if self.max_chars:
                t = t[: self.max_chars]
            prepared.append(" ".join(t.split()))
        langs, scores = top_language(self._model, prepared)
        reasons, details = [], []
        for text, lang, score in zip(prepared, langs, scores):
            if not text:
                reasons.append("empty")
                details.append(None)
            elif self.languages and lang not in self.languages:
                reasons.append("other_language")
                details.append(f"{lang} ({score:.2f})")
            elif score < self.min_score:
                reasons.append("low_language_score")
                details.append(f"{lang} {score:.2f} < {self.min_score}")
            else:
                reasons.append(None)
                details.append(None)
        return Verdict(reasons, columns={"language": pa.array(langs, pa.string()),
                                         "language_score": pa.array(scores, pa.float64())}, details=details)

    def makes(self) -> set[str]:
        return {"language", "language_score"}

    def shard_info(self) -> dict[str, Any]:
        return {"language_model": os.path.basename(self.model)}
