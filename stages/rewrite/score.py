"""LLM quality scoring (SwallowCode-v2 style): the model grades each document 0-10 with a one-sentence reason.

The answer is held to a JSON schema by vLLM's structured outputs (``{"reason": string, "score": integer 0..10}``),
so it parses unless the generation was cut off; whatever does not parse is a reason (``unparsable_score``,
``truncated``), never a crash. Columns: ``llm_score`` (float) and ``llm_score_reason``, plus the generation
columns of the rewrite stage (``<name>_generation``, tokens, prompt hash, model). The text is not changed.
``min_score`` rejects documents graded below it as ``low_llm_score``; tiers are then expressed with ``where:`` on
the stages after (``configs/swallow_code_v2.yaml``: drop < 3, rewrite 3-7, keep 8-10 as they are).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field

from pipeline.core.stage import Verdict
from stages.rewrite.llm import LlmStage


#: The reason before the score: a model writes its judgement, then the grade that follows from it. Score first,
#: Qwen2.5-Coder-1.5B gave 6 to all of 24 real files, reasons such as "not useful for training" included
#: (docs/benchmarks.md); vLLM's structured outputs generate the properties in this order.
def schema(max_score: int = 10) -> dict[str, Any]:
    return {"type": "object",
            "properties": {"reason": {"type": "string", "maxLength": 300},
                           "score": {"type": "integer", "minimum": 0, "maximum": max_score}},
            "required": ["reason", "score"], "additionalProperties": False}


SCHEMA = schema()


def parse_score(generation: str | None, max_score: int = 10) -> tuple[float | None, str | None]:
    """(score, reason) from the model's JSON answer, or (None, None) if it is not one."""
    try:
        obj = json.loads(generation or "")
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    score = obj.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= max_score:
        return None, None
    reason = obj.get("reason")
    return float(score), reason if isinstance(reason, str) else None


class LlmScore(LlmStage):
    """Grade each document 0-``max_score`` with an LLM (JSON answer); ``llm_score`` / ``llm_score_reason``."""

    type: ClassVar[str] = "llm_score"
    thresholds: ClassVar[dict[str, tuple[str, ...]]] = {"llm_score": ("min_score",)}
    prompt: str = "code_quality_score"
    #: Reject documents graded below this (``low_llm_score``); None keeps every graded document.
    min_score: float | None = None
    #: The top of the prompt's scale: 10 for the code rubric, 5 for FineMath's and the educational-value rubrics.
    max_score: int = Field(10, ge=1, le=100)
    #: Grade the first this many characters of a document (None: all of it; a longer prompt is prompt_too_long).
    #: FineWeb-Edu's and FineMath's graders read a page's beginning; the classifier reads its first 10,000.
    max_input_chars: int | None = Field(None, ge=1)
    #: JSON schema the answer must follow (vLLM structured outputs); the default is ``schema(max_score)`` above.
    json_schema: dict[str, Any] | None = None

    def makes(self) -> set[str]:
        return {"llm_score", "llm_score_reason", *self.common_column_names()}

    def sampling(self):
        from vllm.sampling_params import StructuredOutputsParams

        params = super().sampling()
        if not self.guided_regex:  # a regex, where given, wins (tests force unparsable answers with one)
            params.structured_outputs = StructuredOutputsParams(json=self.json_schema or schema(self.max_score))
        return params

    def engine_defaults(self) -> dict[str, Any]:
        # compact JSON: no whitespace between the object's tokens (a model, a random one above all, can otherwise
        # spend its max_tokens on blanks inside the object: seen with the tiny test model). vLLM sets this per
        # engine, and only for the xgrammar and guidance backends.
        return {"structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}}

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if self.max_input_chars and self.column in table.column_names:  # what the model reads; the row keeps all
            cut = [t[: self.max_input_chars] if t else t for t in table.column(self.column).to_pylist()]
            table = table.set_column(table.column_names.index(self.column), self.column, pa.array(cut, pa.string()))
        g = self.generate_rows(table)
        n = len(g.texts)
        scores: list[float | None] = [None] * n
        why: list[str | None] = [None] * n
        for i in g.index:
            if g.finish[i] == "length":
                g.reasons[i], g.details[i] = "truncated", "the answer was cut off at max_tokens"
                continue
            scores[i], why[i] = parse_score(g.gens[i], self.max_score)
            if scores[i] is None:
                g.reasons[i], g.details[i] = "unparsable_score", (g.gens[i] or "")[:200]
            elif self.min_score is not None and scores[i] < self.min_score:
                g.reasons[i], g.details[i] = "low_llm_score", f"{scores[i]:g} < {self.min_score:g}"
        columns = {"llm_score": pa.array(scores, pa.float64()), "llm_score_reason": pa.array(why, pa.string()),
                   **self.common_columns(g)}
        return Verdict(g.reasons, columns=columns, details=g.details, counters=g.counters())
