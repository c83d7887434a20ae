"""LLM rewriting with vLLM: SGCR -> SCOR for code, SwallowMath-style rewriting for math.

A prompt is a file in ``prompts/`` (or any path): system and user templates (``{text}`` is the document),
optional few-shot turns, default sampling parameters and the rule that extracts the result (a fenced block after
a heading, the text after a marker, or the whole generation). The prompt's name and the SHA-256 of its file are
recorded on every row. The engine, batching and prompt handling are the LLM base's (``stages/rewrite/llm.py``).

Every generation is checked and each failure is a reason: ``truncated`` (finish_reason == length; ``repetition``
when the cut-off answer is looping), ``no_code_block`` / ``no_marker`` (nothing extractable),
``rewrite_syntax_error`` (code that does not compile), ``too_short``, ``shrunk`` (much shorter than the input,
where ``min_length_ratio`` is set), ``repetition`` (a >= 100-character substring repeated back to back),
``declined`` (the model answered the prompt's reject marker). The raw generation, the extracted text and the
self-score are columns.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from pipeline.stage import Verdict
from stages.filters.syntax import syntax_check
from stages.rewrite.checks import repeated_substring
from stages.rewrite.llm import LlmStage, chat_token_ids, chat_token_ids_batch  # noqa: F401 - re-exported
from stages.rewrite.prompts import extract, self_score


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

    def makes(self) -> set[str]:
        # the self-score column only with a prompt that asks for one (known once the prompt file is read)
        return {self.column, f"text_before_{self.name}", f"{self.name}_self_score", *self.common_column_names()}

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
        columns = {self.column: rewritten, f"text_before_{self.name}": texts, **self.common_columns(g)}
        if self._prompt.score is not None:
            columns[f"{self.name}_self_score"] = pa.array(scores, pa.float64())
        return Verdict(reasons, columns=columns, details=details, counters=g.counters())

