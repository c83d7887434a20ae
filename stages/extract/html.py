"""HTML -> main text with the math kept: the ``extract`` stage.

Per page: parse once (trafilatura's HTML loader, lxml), rewrite every formula into delimited LaTeX text
(``stages.extract.math``), then hand
the same tree to the extractor (trafilatura by default, resiliparse as a choice). trafilatura's content selection
sometimes keeps a question and drops the answers of a Q&A page, or one post of a forum thread: on pages with math
(``math_fallback``) whose extraction kept fewer than 80 % of the page's formulas, trafilatura's whole-article
baseline is computed too and the one that keeps clearly more formulas wins (≥ 1.25× and ≥ 3 more); other pages
get trafilatura's own selection, at no extra cost.

Extraction runs (``page.py``) in a replaceable child process (``pipeline.proc.sandbox``) with a time limit per page: a
page that
hangs the parser is rejected as ``extract_timeout`` (one that crashes it, ``extract_error``) and the stage goes
on with a fresh child. Columns: ``text`` (the extraction), ``math_formulas`` (formulas marked in the page),
``extract_method`` (``trafilatura``, ``trafilatura_baseline``, ``resiliparse``, or ``wet`` for a WET record's
text, passed through); the HTML is dropped unless
``keep_html``. Rejections: ``no_html``, ``empty_extraction``, ``extract_timeout``, ``extract_error``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import NotSetUp
from pipeline.core.stage import Stage, Verdict


class Extract(Stage):
    """HTML -> main text keeping math (LaTeX), in a time-limited worker process; see the module docstring."""

    type: ClassVar[str] = "extract"
    work_s_per_mb: ClassVar[float] = 2.0
    requires: ClassVar[tuple[str, ...]] = ("trafilatura", "lxml", "py_asciimath")
    extra: ClassVar[str] = "web"
    #: Column holding the page's HTML (decoded; the warc source writes it).
    column: str = "html"
    #: trafilatura (default) or resiliparse (faster, less selective).
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    #: Rewrite formulas (MathJax, KaTeX, MathML, formula images, AsciiMath) into LaTeX before extraction.
    math: bool = True
    #: On pages with math, take trafilatura's whole-article baseline when it keeps clearly more formulas.
    math_fallback: bool = True
    #: Where trafilatura's choice holds under a quarter of the page's prose (lines with sentence ends), take its
    #: whole-article baseline when that holds at least twice as much (≥ 100 characters more).
    prose_fallback: bool = True
    #: txt (plain text) or markdown (headings, lists, fenced code).
    output_format: Literal["txt", "markdown"] = "txt"
    #: Keep the comments section trafilatura finds (forums and Q&A pages hold answers there).
    include_comments: bool = True
    #: trafilatura's favor_precision: keep less of the page, only what is clearly main text (datatrove's default:
    #: True; off here, as when this stage's extraction and math figures were measured).
    favor_precision: bool = False
    #: trafilatura's deduplicate: drop text segments repeated within the page (datatrove's default: True; trafilatura
    #: alone counts them across every page a process extracted, here the count starts afresh with each page).
    deduplicate: bool = False
    #: Seconds one page may take before it is rejected as ``extract_timeout`` and the worker replaced.
    timeout_s: float = Field(30.0, gt=0)
    #: Address space of the extraction process, MiB (it idles at ~105): a page that needs more is ``extract_error``
    #: (MemoryError) instead of a call to the OOM killer, whose kills are never a page's verdict.
    memory_limit_mb: int = Field(4096, ge=512)
    #: Keep the HTML column in the output (large; off by default).
    keep_html: bool = False
    batch_size: int = Field(64, ge=1)
    _box: Any = PrivateAttr(None)

    def reads(self) -> set[str]:
        return super().reads() | {"text"}  # a WET conversion record's text, extracted by the crawler

    def makes(self) -> set[str]:
        return {"text", "math_formulas", "extract_method", self.column}

    def preflight(self) -> list[str]:
        import importlib.util

        problems = super().preflight()
        if self.extractor == "resiliparse" and importlib.util.find_spec("resiliparse") is None:
            problems.append(f"stage {self.name!r}: extractor resiliparse needs the package: pip install -e '.[web]'")
        return problems

    def setup(self) -> None:
        from pipeline.proc.sandbox import Sandbox

        options = {"extractor": self.extractor, "math": self.math, "math_fallback": self.math_fallback,
                   "output_format": self.output_format, "include_comments": self.include_comments,
                   "favor_precision": self.favor_precision, "deduplicate": self.deduplicate,
                   "prose_fallback": self.prose_fallback}
        self._box = Sandbox("stages.extract.page:extract_page", setup="stages.extract.page:setup_worker",
                            setup_args=(options,), memory_mb=self.memory_limit_mb)

    def teardown(self) -> None:
        if self._box is not None:
            self._box.close()
            self._box = None

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if self._box is None:
            raise NotSetUp("extract: process() before setup()")
        pages = table.column(self.column).to_pylist() if self.column in table.column_names else [None] * len(table)
        urls = table.column("url").to_pylist() if "url" in table.column_names else [None] * len(table)
        given = table.column("text").to_pylist()
        texts, formulas, methods, reasons, details = [], [], [], [], []
        for page, url, already in zip(pages, urls, given):
            text = method = detail = reason = None
            n_math = None
            if not page and already:  # a WET conversion record: extracted by the crawler already
                text, method = already, "wet"
            elif not page:
                reason = "no_html"
            else:
                status, value = self._box.call(page, url, timeout_s=self.timeout_s)
                if status == "ok":
                    text, n_math, method = value["text"], value["math_formulas"], value["method"]
                    if value.get("reason"):
                        reason, detail, text = value["reason"], value.get("detail"), None
                    elif not (text or "").strip():
                        reason, text = "empty_extraction", None
                elif status == "timeout":
                    reason, detail = "extract_timeout", f"extraction took longer than {self.timeout_s:g} s"
                else:
                    reason, detail = "extract_error", str(value)[:500]
            texts.append(text)
            formulas.append(n_math)
            methods.append(method)
            reasons.append(reason)
            details.append(detail)
        columns: dict[str, Any] = {"text": pa.array(texts, pa.string()),
                                   "math_formulas": pa.array(formulas, pa.int64()),
                                   "extract_method": pa.array(methods, pa.string())}
        if not self.keep_html and self.column in table.column_names:
            columns[self.column] = pa.nulls(len(table), pa.string())
        return Verdict(reasons, columns=columns, details=details)

    def shard_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"extractor": self.extractor}
        try:
            from importlib.metadata import version

            info[self.extractor] = version(self.extractor)
        except Exception:  # noqa: BLE001
            pass
        if self._box is not None:
            info["worker_restarts"] = self._box.restarts
        return info
