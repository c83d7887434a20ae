"""LLM rewriting with vLLM: SGCR -> SCOR for code, SwallowMath-style rewriting for math.

A prompt is a file in ``prompts/`` (or any path): system and user templates (``{text}`` is the document),
optional few-shot turns, default sampling parameters and the rule that extracts the result (a fenced block after
a heading, the text after a marker, or the whole generation). The prompt's name and the SHA-256 of its file are
recorded on every row. The engine, batching and prompt handling are the LLM base's (``stages/rewrite/llm.py``).

Every generation is checked and each failure is a reason: ``truncated`` (finish_reason == length; ``repetition``
when the cut-off answer is looping), ``no_code_block`` / ``no_marker`` (nothing extractable),
``rewrite_syntax_error`` (code that does not compile), ``too_short``, ``shrunk`` (much shorter than the input,
where ``min_length_ratio`` is set), ``repetition`` (a >= 100-character substring repeated back to back),
``declined`` (the model answered the prompt's reject marker), ``copied_example`` (the answer repeats the prompt's
own few-shot example). A code rewrite is also compared with its input without running either
(``stages/rewrite/fidelity.py``): names it uses but never binds that the input had, definitions lost or changed in
kind or signature, tests dropped, public names gone, the length ratio; the findings are columns of every row that
produced code, and the checks in ``fidelity_reject`` are reasons. The raw generation, the extracted text and the
self-score are columns.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from pipeline.core.stage import Verdict
from stages.rewrite import fidelity
from stages.rewrite.checks import repeated_substring
from stages.rewrite.llm import LlmStage, chat_token_ids, chat_token_ids_batch  # noqa: F401 - re-exported
from stages.rewrite.prompts import extract, self_score
from stages.text.python_code import syntax_check


class Rewrite(LlmStage):
    """Rewrite each document with an LLM (vLLM) using a prompt file; validate and extract the result."""

    type: ClassVar[str] = "rewrite"
    #: Check that the output compiles (code prompts).
    check_syntax: bool = False
    #: Reject outputs shorter than this many characters.
    min_chars: int = 20
    #: Reject outputs with a substring of at least this many characters repeated back to back (0: off).
    repetition_min_len: int = 100
    #: Reject outputs shorter than this fraction of the input (``shrunk``; 0: off). A rewrite that keeps the
    #: program's behaviour (SGCR) is rarely much shorter; a small model's unrelated snippets are (SmolLM2-135M:
    #: 4 of the 6 SGCR answers that compiled, out of 200, were 2-9 % of the input's length).
    min_length_ratio: float = Field(0.0, ge=0.0)
    #: Compare each code rewrite with its input (``fidelity.py``; columns ``<name>_new_undefined``,
    #: ``_lost_definitions``, ``_changed_kind``, ``_changed_signature``, ``_lost_tests``, ``_lost_public``,
    #: ``_length_ratio``, ``_repaired_imports``). Default: on where ``check_syntax`` is (code prompts).
    fidelity: bool | None = None
    #: The fidelity checks that reject a rewrite (the others are columns only). Measured on 684 compiling SGCR answers
    #: of Qwen2.5-Coder-1.5B to real files (docs/benchmarks.md, "Fidelity checks"): the 14 new-undefined-name rows
    #: read by hand were all broken programs; lost definitions, renames set aside (28 of 71 were renames the prompt
    #: asks for), were functions, classes and tests gone; a changed kind (function -> generator) is another program;
    #: changed signatures (8) and public names (61) also flag faithful rewrites and are columns only; the 6 rewrites
    #: that define a stub in place of a name the input imported (a package __init__'s re-exports, a test's
    #: function under test) were all another program.
    fidelity_reject: list[Literal["new_undefined", "lost_definitions", "changed_kind", "changed_signature",
                                  "lost_tests", "lost_public", "shadowed_imports"]] = \
        ["new_undefined", "lost_definitions", "changed_kind", "lost_tests", "shadowed_imports"]
    #: Put back the input's own import of a name the rewrite uses but dropped (``from collections import
    #: deque``), then check again; the statements added are the ``_repaired_imports`` column.
    repair_imports: bool = False

    def fidelity_on(self) -> bool:
        return self.check_syntax if self.fidelity is None else self.fidelity

    def fidelity_columns(self) -> list[str]:
        return [f"{self.name}_{c}" for c in (*fidelity.CHECKS, "length_ratio", "repaired_imports", "renamed")]

    def makes(self) -> set[str]:
        # the self-score column only with a prompt that asks for one (known once the prompt file is read)
        cols = {self.column, f"text_before_{self.name}", f"{self.name}_self_score", *self.common_column_names()}
        return cols | (set(self.fidelity_columns()) if self.fidelity_on() else set())

    # -- the one method ----------------------------------------------------------------------------------------
    def process(self, table: pa.Table, ctx=None) -> Verdict:
        g = self.generate_rows(table)
        texts, n, reasons, details = g.texts, len(g.texts), g.reasons, g.details
        rewritten: list[str | None] = list(texts)  # kept rows get their rewrite; rejected rows keep the input
        scores: list[float | None] = [None] * n
        rule = self._prompt.extract
        for i in g.index:
            gen = g.gens[i]
            scores[i] = self_score(gen, self._prompt.score)
            if g.finish[i] == "length":
                # more max_tokens cures plain truncation, not a loop, so the two are told apart (SmolLM2-135M on
                # 200 real files: 18 of 70 cut-off SGCR answers and 7 of 30 SCOR ones were looping)
                period = repeated_substring(gen, self.repetition_min_len) if self.repetition_min_len else None
                if period:
                    reasons[i], details[i] = "repetition", f"cut off at max_tokens while a {period}-character " \
                                                           "substring repeats back to back"
                else:
                    reasons[i] = "truncated"
                continue
            if rule.reject_if and rule.reject_if in gen:
                reasons[i] = "declined"
                continue
            result = extract(gen, rule)
            if result is None:
                reasons[i] = "no_code_block" if rule.mode == "fenced_block" else "no_marker"
                continue
            copied = self._prompt.copied_example(result)
            if copied:
                reasons[i], details[i] = "copied_example", copied
                continue
            if len(result.strip()) < self.min_chars:
                reasons[i] = "too_short"
                continue
            if self.min_length_ratio and len(result) < self.min_length_ratio * len(texts[i]):
                reasons[i], details[i] = "shrunk", f"{len(result):,} characters from {len(texts[i]):,} " \
                                                   f"({len(result) / len(texts[i]):.2f} < {self.min_length_ratio:g})"
                continue
            if self.repetition_min_len:
                period = repeated_substring(result, self.repetition_min_len)
                if period:
                    reasons[i], details[i] = "repetition", f"a {period}-character substring repeats back to back"
                    continue
            if self.check_syntax:
                r, d = syntax_check(result)
                if r:
                    reasons[i], details[i] = "rewrite_syntax_error", f"{r}: {d}"
                    continue
            rewritten[i] = result
        found = self.check_fidelity(texts, rewritten, reasons, details, g.index) if self.fidelity_on() else {}
        columns = {self.column: rewritten, f"text_before_{self.name}": texts, **self.common_columns(g), **found}
        if self._prompt.score is not None:
            columns[f"{self.name}_self_score"] = pa.array(scores, pa.float64())
        counters = g.counters()
        # a kept answer that is its input again (up to layout): the model judged it fine as it was. Kept, and
        # counted, so a funnel of "rewrites" says how many changed anything (the demo's stdlib files: 2 of 6)
        counters["unchanged"] = float(sum(1 for i in g.index if reasons[i] is None and
                                          " ".join(str(rewritten[i]).split()) == " ".join(str(texts[i]).split())))
        return Verdict(reasons, columns=columns, details=details, counters=counters)


    def check_fidelity(self, texts, rewritten, reasons, details, index) -> dict[str, pa.Array]:
        """Fidelity findings of every row that produced code (kept so far); rejects by ``fidelity_reject``."""
        n = len(texts)
        rows = [i for i in index if reasons[i] is None]
        found: list[fidelity.Fidelity | None] = [None] * n
        for i, (text, f) in zip(rows, fidelity.check_batch([texts[i] for i in rows], [rewritten[i] for i in rows],
                                                            repair=self.repair_imports)):
            found[i], rewritten[i] = f, text
            failed = f.failed(self.fidelity_reject)
            if failed:
                reasons[i] = failed
                details[i] = f.detail(next(c for c in fidelity.CHECKS if fidelity.REASONS[c] == failed))
                rewritten[i] = texts[i]  # a rejected row keeps its input, as every rejection does

        def joined(attr: str) -> pa.Array:
            return pa.array([", ".join(getattr(f, attr)) or None if f else None for f in found], pa.string())

        cols = {f"{self.name}_{c}": joined(c) for c in (*fidelity.CHECKS, "repaired_imports", "renamed")}
        cols[f"{self.name}_length_ratio"] = pa.array([f.length_ratio if f else None for f in found], pa.float64())
        return cols
