"""The ``quality_classifier`` stage: a classifier made by ``swallow classifier train`` grades every row.

Columns: ``quality_score`` (the expected grade, Σ p(label) x value(label) over fastText's probabilities),
``quality_grade`` (the most probable label's value: the tier; stages/classify/model.py says why not the rounded
score) and ``quality_label`` (that label). With ``min_grade``, a row whose grade is below it is rejected as
``low_quality_<grade>``: one reason per rejected tier, so the report counts each tier (FineMath-3+ is
``min_grade: 3``; SwallowCode-v2's middle tier is a ``where:`` on ``quality_grade``). Language-aware: ``model`` is
one folder, or a mapping from language (the ``language`` column of ``language_id``) to a folder; a row of a
language with no model is ``no_classifier``. Each worker reads its models once; a row's verdict depends on its text
(its first ``max_chars`` characters) and the model alone.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import NotSetUp, missing_path
from pipeline.core.stage import Stage, Verdict
from pipeline.store.shards import file_seal
from stages.classify.model import grade_texts, label_name, read_meta


class QualityClassifier(Stage):
    """Grade rows with a classifier from `swallow classifier train` (quality_score, quality_grade, quality_label);
    reject grades below ``min_grade`` as low_quality_<grade>; one model, or one per language."""

    type: ClassVar[str] = "quality_classifier"
    thresholds: ClassVar[dict[str, tuple[str, ...]]] = {"quality_score": ("min_grade",),
                                                        "quality_grade": ("min_grade",)}
    requires: ClassVar[tuple[str, ...]] = ("fasttext",)
    extra: ClassVar[str] = "web"
    #: A classifier folder (``swallow classifier train --out``), or ``{language: folder}`` for one per language.
    model: str | dict[str, str]
    #: Reject rows whose grade (the most probable label's value) is below this; None: grade only (columns, no rule).
    min_grade: float | None = None
    #: The text column graded.
    column: str = "text"
    #: The language column read when ``model`` is a mapping.
    language_column: str = "language"
    #: Rows per fastText call (throughput only: verdicts do not depend on it).
    batch_size: int = Field(4096, ge=1)
    _models: dict[str, Any] = PrivateAttr(default_factory=dict)
    _meta: dict[str, dict] = PrivateAttr(default_factory=dict)
    _digests: dict[str, str] = PrivateAttr(default_factory=dict)

    def reads(self) -> set[str]:
        # with a model per language the language column must exist (checked when the config loads)
        return super().reads() | ({self.language_column} if isinstance(self.model, dict) else set())

    def folders(self) -> dict[str, str]:
        return dict(self.model) if isinstance(self.model, dict) else {"": self.model}

    def preflight(self) -> list[str]:
        problems = super().preflight()
        for lang, folder in self.folders().items():
            key = f"model.{lang}" if lang else "model"
            miss = missing_path(self.name, key, folder, "folder")
            if miss:
                problems += miss
                continue
            try:
                read_meta(os.path.expanduser(folder))
            except ValueError as exc:
                problems.append(f"stage {self.name!r}: {key}: {exc}")
            if not os.path.isfile(os.path.join(os.path.expanduser(folder), "model.bin")):
                problems.append(f"stage {self.name!r}: {key} {folder!r} has no model.bin (make it with "
                                "`swallow classifier train RUN --out FOLDER`)")
        return problems

    def setup(self) -> None:
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None
        for lang, folder in self.folders().items():
            folder = os.path.expanduser(folder)
            self._meta[lang] = read_meta(folder)
            self._models[lang] = fasttext.load_model(os.path.join(folder, "model.bin"))
            self._digests[lang] = file_seal(os.path.join(folder, "model.bin"))["sha256"]

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if not self._models:
            raise NotSetUp("quality_classifier: process() before setup()")
        texts = table.column(self.column).to_pylist()
        if "" in self._models:
            langs = [""] * len(texts)
        elif self.language_column in table.column_names:
            langs = [lang or "" for lang in table.column(self.language_column).to_pylist()]
        else:
            langs = [None] * len(texts)
        score: list[float | None] = [None] * len(texts)
        grades: list[float | None] = [None] * len(texts)
        label: list[str | None] = [None] * len(texts)
        groups: dict[str, list[int]] = {}
        for k, (text, lang) in enumerate(zip(texts, langs)):
            if text and lang in self._models:
                groups.setdefault(lang, []).append(k)
        for lang, rows in groups.items():
            values = self._meta[lang]["values"]
            max_chars = int(self._meta[lang].get("normalise", {}).get("max_chars", 10_000))
            for start in range(0, len(rows), self.batch_size):
                part = rows[start:start + self.batch_size]
                got = grade_texts(self._models[lang], [texts[k] for k in part], values, max_chars)
                for k, s, g, lab in zip(part, *got):
                    score[k], grades[k], label[k] = round(s, 6), g, lab or None
        reasons, details = [], []
        for text, lang, s, g in zip(texts, langs, score, grades):
            if not text:
                reasons.append("empty")
                details.append(None)
            elif s is None:
                reasons.append("no_classifier")
                details.append(f"no model for language {lang!r}" if lang is not None else
                               f"no column {self.language_column!r} to choose a model by")
            elif self.min_grade is not None and g < self.min_grade:
                reasons.append(f"low_quality_{label_name(g)}")
                details.append(f"grade {label_name(g)} < {self.min_grade:g} (score {s:.2f})")
            else:
                reasons.append(None)
                details.append(None)
        return Verdict(reasons, details=details, columns={
            "quality_score": pa.array(score, pa.float64()), "quality_grade": pa.array(grades, pa.float64()),
            "quality_label": pa.array(label, pa.string())})

    def makes(self) -> set[str]:
        return {"quality_score", "quality_grade", "quality_label"}

    def shard_info(self) -> dict[str, Any]:
        # which bytes graded the shard: a folder retrained in place is another classifier
        return {"classifier": {lang: {"folder": os.path.basename(os.path.normpath(f)),
                                      "model_sha256": self._digests.get(lang)} for lang, f in self.folders().items()}}
