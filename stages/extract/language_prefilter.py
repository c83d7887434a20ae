"""A cheap language test on the raw HTML, before extraction: the ``language_prefilter`` stage.

Extraction is where a web pipeline's CPU goes (~35 ms a page with trafilatura); a Japanese corpus needs a few pages
in a hundred of a Common Crawl snapshot. Swallow Corpus therefore kept only pages that say they are Japanese or whose
title reads as Japanese before extracting anything. A page passes when

- its ``<html lang>`` / ``xml:lang`` or a ``Content-Language`` meta tag names one of ``languages`` (``ja``,
  ``ja-JP``; ``jp`` and ``japanese`` too, as old pages write it), or
- fastText (lid.176) labels its ``<title>`` (entities decoded) one of ``languages`` with probability ≥
  ``min_title_score`` — a template's ``lang="en"`` on a Japanese page does not lose it.

Everything else is rejected as ``prefilter_other_language`` (detail: what the page declared and what its title
read as). Only the first ``head_chars`` characters are searched, in one linear pass over their tags
(``head_tags.py``: no regular expression, no parse). Columns:
``declared_language`` (lowercased, as written), ``title_language``, ``title_language_score``. The full language ID
after extraction still decides; this stage only spares the extraction of pages that cannot pass it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import NotSetUp
from pipeline.core.stage import Stage, Verdict
from stages.extract.head_tags import declared_language, title_text
from stages.extract.langid import load_model, model_problems, top_language

#: How pages write a language besides its ISO code.
ALIASES = {"jp": "ja", "japanese": "ja", "english": "en", "chinese": "zh", "korean": "ko"}


def declared(head: str) -> str | None:
    """The language the page's markup declares (``<html lang>`` first, then the Content-Language meta), as written,
    lowercased; None when it declares none."""
    tag = declared_language(head)
    return tag.lower() if tag else None


def base_language(tag: str | None) -> str | None:
    """``ja-JP`` -> ``ja``; ``japanese`` -> ``ja``."""
    if not tag:
        return None
    base = tag.replace("_", "-").split("-")[0]
    return ALIASES.get(base, base)


def title(head: str) -> str:
    return title_text(head)


class LanguagePrefilter(Stage):
    """Keep pages that declare one of ``languages`` or whose title reads as one; see the module docstring."""

    type: ClassVar[str] = "language_prefilter"
    thresholds: ClassVar[dict[str, tuple[str, ...]]] = {"title_language_score": ("min_title_score",)}
    requires: ClassVar[tuple[str, ...]] = ("fasttext",)
    extra: ClassVar[str] = "web"
    #: Column holding the page's HTML.
    column: str = "html"
    #: Languages a page may declare or have its title read as (ISO codes as lid.176 labels them).
    languages: list[str] = ["ja"]
    #: Path of a fastText language-ID model (lid.176.bin or lid.176.ftz) for the titles; empty: declarations only.
    model: str = ""
    #: Minimum probability of the title's language.
    min_title_score: float = Field(0.5, ge=0, le=1)
    #: Characters of the page searched for the declaration and the title.
    head_chars: int = Field(65_536, ge=1024)
    batch_size: int = Field(1024, ge=1)
    _model: Any = PrivateAttr(None)

    def reads(self) -> set[str]:
        return {self.column}

    def makes(self) -> set[str]:
        return {"declared_language", "title_language", "title_language_score"}

    def preflight(self) -> list[str]:
        return super().preflight() + (model_problems(self.name, self.model) if self.model else [])

    def setup(self) -> None:
        self._model = load_model(self.type, self.model) if self.model else None

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if self.model and self._model is None:
            raise NotSetUp("language_prefilter: process() before setup()")
        pages = table.column(self.column).to_pylist() if self.column in table.column_names else [None] * len(table)
        heads = [(p or "")[: self.head_chars] for p in pages]
        decl = [declared(h) for h in heads]
        titles = [title(h) for h in heads]
        langs: list[str | None] = [None] * len(heads)
        scores: list[float | None] = [None] * len(heads)
        want = set(self.languages)
        ask = [i for i, (d, t) in enumerate(zip(decl, titles)) if t and base_language(d) not in want]
        if ask and self._model is not None:  # only titles the declaration did not already settle
            for i, lang, score in zip(ask, *top_language(self._model, [titles[i] for i in ask])):
                langs[i], scores[i] = lang, score
        reasons, details = [], []
        for page, d, t, lang, score in zip(pages, decl, titles, langs, scores):
            if not page:
                reasons.append("no_html")
                details.append(None)
            elif base_language(d) in want or (lang in want and (score or 0) >= self.min_title_score):
                reasons.append(None)
                details.append(None)
            else:
                reasons.append("prefilter_other_language")
                read = f"title {lang} ({score:.2f})" if lang else ("no title" if not t else "title not read")
                details.append(f"declared {d or 'nothing'}, {read}")
        return Verdict(reasons, details=details,
                       columns={"declared_language": pa.array(decl, pa.string()),
                                "title_language": pa.array(langs, pa.string()),
                                "title_language_score": pa.array(scores, pa.float64())})
