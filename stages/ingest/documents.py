"""Web/math documents. For now: a source of text documents (JSONL(.gz) or Parquet with a text column), e.g.
extracted pages or existing corpora such as RedPajama StackExchange records, for the math rewrite path.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.records import make_id
from pipeline.source import Source, iter_jsonl, pack_by_bytes


class DocumentSource(Source):
    """Text documents from JSONL(.gz) or Parquet; a missing/empty text or a corrupt file is a reason."""

    type: ClassVar[str] = "documents"
    text_column: str = "text"
    url_column: str = "url"
    license: str | None = None
    #: Reject documents longer than this many characters as ``too_large``.
    max_chars: int = 1_000_000

    def plan(self) -> list[dict[str, Any]]:
        items = [(p, os.path.getsize(p) * (4 if p.endswith(".gz") else 1)) for p in self.expand()]
        return [{"files": g} for g in pack_by_bytes(items, self.shard_bytes)]

    def _row(self, path: str, offset: int | str, rec: dict | None, reason: str | None = None,
             detail: str | None = None) -> dict:
        text = (rec or {}).get(self.text_column)
        rec = rec or {}
        meta = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
        url = rec.get(self.url_column) or meta.get("url")
        if reason is None:
            if not isinstance(text, str) or not text.strip():
                reason = "empty"
            elif len(text) > self.max_chars:
                reason, detail = "too_large", f"{len(text)} characters > max_chars {self.max_chars}"
        return {"id": make_id(path, offset), "text": text if isinstance(text, str) else None, "source_file": path,
                "source_offset": offset if isinstance(offset, int) else 0, "url": url if isinstance(url, str) else None,
                "license": self.license, "reason": reason, "detail": detail}

    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table]:
        for path in spec["files"]:
            rows: list[dict] = []
            if path.endswith(".parquet"):
                for i, rec in enumerate(pq.read_table(path).to_pylist()):
                    rows.append(self._row(path, i, rec))
            else:
                rows += [self._row(path, off, rec, reason, detail) for off, rec, reason, detail in iter_jsonl(path)]
            yield pa.Table.from_pylist(rows) if rows else pa.table({"id": pa.array([], pa.string())})
