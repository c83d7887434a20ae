"""The base of rule filters over one text column: each document is measured, then judged.

A filter declares its measurements (``measures``: column name -> Arrow type; prefixed with the stage's name when
``prefix_columns``, so two instances in one run do not collide) and writes two functions: ``measure(text)`` -> a
dict holding at least those measurements, and ``decide(measures, text)`` -> None (kept), a reason, or ``(reason,
detail)``. The base owns the rest: the per-row loop over ``column`` (any text column; nulls read as ""), the
measurement columns on kept *and* rejected rows (a new threshold needs no re-measuring), the reasons and details,
typed columns even on an empty shard, and an optional rewrite of the text (``new_text``: C4 keeps only its kept
lines). Rows whose ``language`` column (language_id's) is in ``skip_languages`` are not judged: kept as they are,
their measurements null, counted as ``unjudged_<language>`` in the stage's stats — a rule that counts words between
spaces or looks for ``.`` at line ends means nothing in Japanese, and must not silently reject it.

    class ShortLines(DocumentFilter):
        type: ClassVar[str] = "short_lines"
        measures: ClassVar = {"short_line_ratio": pa.float64()}
        max_ratio: float = 0.5

        def measure(self, text):
            lines = text.splitlines() or [""]
            return {"short_line_ratio": sum(len(x) < 30 for x in lines) / len(lines)}

        def decide(self, m, text):
            return "too_many_short_lines" if m["short_line_ratio"] > self.max_ratio else None
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa

from pipeline.core.stage import Stage
from pipeline.core.verdict import Verdict

#: Languages (as fastText's lid.176 labels them) written without spaces between words: Japanese, Chinese (and Wu,
#: Cantonese), Thai, Lao, Khmer, Burmese, Tibetan. The word- and sentence-end rules of Gopher, C4 and FineWeb do
#: not judge them by default.
NO_SPACE_LANGUAGES = ["ja", "zh", "wuu", "yue", "th", "lo", "km", "my", "bo"]


class DocumentFilter(Stage):
    """A rule filter: ``measure`` each document's text, then ``decide`` (see the module docstring)."""

    #: The text column measured (and, for a filter that rewrites, replaced).
    column: str = "text"
    #: Measurement columns and their types, in column order.
    measures: ClassVar[dict[str, pa.DataType]] = {}
    #: Name the columns ``<stage name>_<measure>``.
    prefix_columns: ClassVar[bool] = False
    #: Languages (the ``language`` column) this filter passes unjudged and counts; see the module docstring.
    skip_languages: list[str] = []

    def measure(self, text: str) -> dict[str, Any]:
        raise NotImplementedError(f"filter type {self.type!r} does not implement measure()")

    def decide(self, measures: dict[str, Any], text: str) -> str | tuple[str, str | None] | None:
        raise NotImplementedError(f"filter type {self.type!r} does not implement decide()")

    def measurement_types(self) -> dict[str, pa.DataType]:
        """The measurement columns of this configuration (a filter whose measures depend on its options
        overrides it)."""
        return dict(self.measures)

    def measure_all(self, texts: list[str], table: pa.Table) -> list[dict[str, Any]]:
        """Every row's measurements; a filter that measures a batch at once (a classifier) overrides it."""
        return [self.measure(t) for t in texts]

    def new_text(self, text: str, measures: dict[str, Any]) -> str | None:
        """A kept document's new text, or None to keep it as it is."""
        return None

    def rewrites_text(self) -> bool:
        """Whether this filter gives kept documents a new text (it overrides ``new_text``)."""
        return type(self).new_text is not DocumentFilter.new_text

    def makes(self) -> set[str]:
        return {self.column_name(k) for k in self.measurement_types()} | ({self.column} if self.rewrites_text()
                                                                          else set())

    def column_name(self, measure: str) -> str:
        return f"{self.name}_{measure}" if self.prefix_columns else measure

    def unjudged(self, table: pa.Table) -> list[str | None]:
        """Per row, the language it is not judged in (``skip_languages``), or None."""
        if not self.skip_languages or "language" not in table.column_names:
            return [None] * len(table)
        skip = set(self.skip_languages)
        return [lang if lang in skip else None for lang in table.column("language").to_pylist()]

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        raw = table.column(self.column).to_pylist()
        texts = [t or "" for t in raw]
        skipped = self.unjudged(table)
        types = self.measurement_types()
        judged = [i for i, lang in enumerate(skipped) if lang is None]
        rows: list[dict[str, Any]] = [dict.fromkeys(types)] * len(texts)
        if len(judged) == len(texts):
            rows = self.measure_all(texts, table)
        elif judged:
            for i, m in zip(judged, self.measure_all([texts[i] for i in judged], table.take(judged))):
                rows[i] = m
        reasons: list[str | None] = []
        details: list[str | None] = []
        counters: dict[str, float] = {}
        for text, m, lang in zip(texts, rows, skipped):
            if lang is not None:
                reason, detail = None, None
                counters[f"unjudged_{lang}"] = counters.get(f"unjudged_{lang}", 0) + 1
            else:
                d = self.decide(m, text)
                reason, detail = d if isinstance(d, tuple) else (d, None)
            reasons.append(reason)
            details.append(detail)
        columns: dict[str, Any] = {self.column_name(k): pa.array([m[k] for m in rows], t) for k, t in types.items()}
        if self.rewrites_text():
            new = [(self.new_text(t, m) if r is None and lang is None else None)
                   for t, m, r, lang in zip(texts, rows, reasons, skipped)]
            columns[self.column] = pa.array([n if n is not None else o for n, o in zip(new, raw)], pa.string())
        return Verdict(reasons, columns=columns, details=details if any(d is not None for d in details) else None,
                       counters=counters)
