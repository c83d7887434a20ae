"""Web/math documents. For now: a source of text documents (JSONL(.gz) or Parquet with a text column), e.g.
extracted pages or existing corpora such as RedPajama StackExchange records, for the math rewrite path.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.core.records import clean_row, make_id
from pipeline.core.source import Source, iter_jsonl

ROW_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source_file", pa.string()),
                        ("source_offset", pa.int64()), ("url", pa.string()), ("license", pa.string()),
                        ("reason", pa.string()), ("detail", pa.string())])


def _text_column(f: Path) -> bool:
    """A JSONL/Parquet file whose records have a ``text`` field (documents), not a ``content`` one (code)."""
    name = f.name.lower()
    try:
        if name.endswith(".parquet"):
            names = pq.ParquetFile(f).schema_arrow.names
            return "text" in names and "content" not in names
        if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(f, "rt", encoding="utf-8", errors="replace") as fh:
                rec = json.loads(fh.readline(1 << 24) or "{}")  # a first record over 16 MiB is not guessed from
            return isinstance(rec, dict) and "text" in rec and "content" not in rec
    except Exception:  # noqa: BLE001 - a file that cannot be sniffed is not guessed from
        return False
    return False


class DocumentSource(Source):
    """Text documents from JSONL(.gz) or Parquet; a missing/empty text or a corrupt file is a reason."""

    type: ClassVar[str] = "documents"
    sniff_order: ClassVar[int | None] = 20
    kind: ClassVar[str] = "web"

    @classmethod
    def sniff(cls, inputs: list[str], files: list[Path], kind: str | None) -> tuple[str, str] | None:
        """JSONL/Parquet records with a ``text`` field and no ``content`` one (that is code), unless --kind code."""
        if kind == "code" or not files or not all(_text_column(f) for f in files):
            return None
        return "web", "records with a text field"
    text_column: str = "text"
    url_column: str = "url"
    license: str | None = None
    #: Reject documents longer than this many characters as ``too_large``.
    max_chars: int = Field(1_000_000, ge=1, le=1_000_000_000)

    def makes(self) -> set[str]:
        return set(ROW_SCHEMA.names)

    def plan(self) -> list[dict[str, Any]]:
        """Parquet files by row group (a big file spreads over many shards), JSONL files whole."""
        items: list[tuple[Any, int]] = []
        for p in self.inputs():
            try:
                if p.endswith(".parquet"):
                    pf = pq.ParquetFile(p)
                    meta = pf.metadata
                    if self.text_column not in pf.schema_arrow.names:
                        items.append((["bad", p, "missing_text_column", f"no column {self.text_column!r} (columns: "
                                       f"{pf.schema_arrow.names}); set source.text_column"[:500]], 1))
                        continue
                    items += [([p, rg], max(meta.row_group(rg).total_byte_size, 1))
                              for rg in range(meta.num_row_groups)]
                else:
                    items.append(([p, None], os.path.getsize(p) * (4 if p.endswith(".gz") else 1)))
            except Exception as exc:  # noqa: BLE001 - truncated, corrupt, not Parquet, gone: one row names it
                items.append((["bad", p, "corrupt_file", f"{type(exc).__name__}: {exc}"[:500]], 1))
        return [{"parts": g} for g in self.pack(items)]

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
        for part in spec["parts"]:
            rows: list[dict] = []
            if part[0] == "bad":  # a file found unusable while planning
                rows.append(self._row(part[1], "file", None, part[2], part[3]))
            elif part[1] is not None:
                path, rg = part
                try:
                    pf = pq.ParquetFile(path)
                    base = sum(pf.metadata.row_group(i).num_rows for i in range(rg))
                    cols = [c for c in (self.text_column, self.url_column, "meta") if c in pf.schema_arrow.names]
                    recs = pf.read_row_group(rg, columns=cols).to_pylist()
                except Exception as exc:  # noqa: BLE001 - a corrupt page or a file changed since planning
                    rows.append(self._row(path, f"rg{rg}", None, "corrupt_file",
                                          f"row group {rg}: {type(exc).__name__}: {exc}"[:500]))
                    recs = []
                for i, rec in enumerate(recs):
                    rows.append(self._row(path, base + i, rec))
            else:
                path = part[0]
                lines = iter_jsonl(path, 4 * self.max_chars + (1 << 16))  # (a line is at most 4 bytes a character)
                rows += [self._row(path, off, rec, reason, detail) for off, rec, reason, detail in lines]
            rows = [clean_row(r) for r in rows]
            yield pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
