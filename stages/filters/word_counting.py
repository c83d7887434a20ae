"""The base of the filters that count spaCy's words (Gopher quality and repetition, FineWeb): each batch is measured
within its shard's scope of ``stages.text.units.words``, so chained filters tokenize a text once (see
``words_scope``)."""

from __future__ import annotations

import pyarrow as pa

from pipeline.core.document_filter import DocumentFilter
from pipeline.core.verdict import Verdict
from stages.text.units import words_scope


class WordCountingFilter(DocumentFilter):
    def process(self, table: pa.Table, ctx=None) -> Verdict:
        words_scope((ctx.stage.run_dir, ctx.shard) if ctx is not None else None)
        return super().process(table, ctx)
