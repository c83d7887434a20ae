"""Code corpora in: Parquet or JSONL(.gz) files (The Stack v2 layout), a ``datasets`` dataset, or source trees.

One record per file, with its provenance (repo, path, license, blob id) and a language from the path's extension.
Files that cannot be used are rejected rows with a reason (``too_large``, ``binary``, ``undecodable``,
``empty``, ``other_language``, ``bad_json``, ``not_an_object``, ``bad_field_type``, ``corrupt_file``,
``missing_content``, ``missing_content_column``, ``unreadable``). A Parquet file that cannot be opened, or lacks
the content column, is one rejected row naming it (found while planning: planning never fails on a bad file); a
row group that cannot be read is one ``corrupt_file`` row for that part; the run goes on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.core.records import clean_row, make_id
from pipeline.core.source import Source, iter_jsonl, pack_by_bytes

EXT_LANGUAGE = {".py": "python", ".pyw": "python", ".pyi": "python", ".ipynb": "jupyter", ".js": "javascript",
                ".ts": "typescript", ".java": "java", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
                ".hpp": "cpp", ".rs": "rust", ".go": "go", ".rb": "ruby", ".sh": "shell", ".md": "markdown",
                ".txt": "text", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


def language_of(path: str | None) -> str:
    if not path:
        return "unknown"
    return EXT_LANGUAGE.get(os.path.splitext(path)[1].lower(), "unknown")


def decode_source(data: bytes) -> tuple[str | None, str | None, str | None]:
    """(text, reason, detail) for raw file bytes: binary content and undecodable bytes are reasons."""
    if b"\x00" in data[:8192]:
        return None, "binary", "NUL byte in the first 8 KiB"
    try:
        return data.decode("utf-8"), None, None
    except UnicodeDecodeError as exc:
        return None, "undecodable", f"not UTF-8: {exc}"


#: The columns of every row the code source writes (plus ``keep_columns``).
ROW_TYPES = {"id": pa.string(), "text": pa.string(), "source_file": pa.string(), "source_offset": pa.int64(),
             "repo": pa.string(), "path": pa.string(), "license": pa.string(), "blob_id": pa.string(),
             "language": pa.string(), "reason": pa.string(), "detail": pa.string()}


class CodeSource(Source):
    """Code corpora: Parquet or JSONL(.gz) files (The Stack v2 layout), a ``datasets`` name, or source trees."""

    type: ClassVar[str] = "code"
    sniff_order: ClassVar[int | None] = 100  # last: whatever no other source claims is read as code

    @classmethod
    def sniff(cls, inputs: list[str], files: list[Path], kind: str | None) -> tuple[str, str] | None:
        return "code", "source files or records with a content field"
    #: parquet | jsonl | dir | hf | auto (from each path's extension; directories are source trees).
    format: Literal["auto", "parquet", "jsonl", "dir", "hf"] = "auto"
    content_column: str = "content"
    repo_column: str = "repo"
    path_column: str = "path"
    license_column: str = "license"
    blob_id_column: str = "blob_id"
    #: Other columns copied through (missing ones are ignored).
    keep_columns: list[str] = []
    #: Languages kept (from the path's extension); others are rejected as ``other_language``. Empty: keep all.
    languages: list[str] = ["python"]
    #: Files larger than this (UTF-8 bytes) are rejected as ``too_large`` without being decoded.
    max_file_bytes: int = Field(1_000_000, ge=1, le=1 << 32)
    #: Split of a ``datasets`` dataset (format hf).
    hf_split: str = "train"

    def _fmt(self, path: str) -> str:
        if self.format != "auto":
            return self.format
        low = path.lower()
        if low.endswith(".parquet"):
            return "parquet"
        if low.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
            return "jsonl"
        return "file"

    def plan(self) -> list[dict[str, Any]]:
        if self.format == "hf":
            return self._plan_hf()
        items: list[tuple[Any, int]] = []
        for path in self.inputs():
            fmt = self._fmt(path) if self.format != "dir" else "file"
            if fmt == "parquet":
                try:
                    pf = pq.ParquetFile(path)
                    meta = pf.metadata
                    names = pf.schema_arrow.names
                except Exception as exc:  # noqa: BLE001 - truncated, corrupt, not Parquet: one row names it
                    items.append((["bad", path, "corrupt_file", f"{type(exc).__name__}: {exc}"[:500]], 1))
                    continue
                if self.content_column not in names:
                    items.append((["bad", path, "missing_content_column",
                                   f"no column {self.content_column!r} (columns: {names}); set "
                                   "source.content_column"[:500]], 1))
                    continue
                for rg in range(meta.num_row_groups):
                    g = meta.row_group(rg)
                    items.append((["rowgroup", path, rg, g.num_rows], max(g.total_byte_size, 1)))
            else:
                try:
                    size = os.path.getsize(path)
                except OSError as exc:  # a dangling symlink, a file gone or unreadable since listing
                    items.append((["bad", path, "unreadable", f"{type(exc).__name__}: {exc}"[:500]], 1))
                    continue
                if fmt == "jsonl":
                    items.append((["jsonl", path], size * (4 if path.endswith(".gz") else 1)))
                else:
                    items.append((["file", path], min(size, self.max_file_bytes)))
        target = self.shard_target(sum(n for _, n in items))
        split = []  # a row group bigger than a shard is cut into row ranges
        for item, size in items:
            if item[0] != "rowgroup":
                split.append((item, size))
                continue
            _, path, rg, n = item
            pieces = max(1, -(-size // target))
            step = max(1, -(-n // pieces))
            for start in range(0, n, step):
                stop = min(n, start + step)
                split.append((["parquet", path, rg, start, stop], size * (stop - start) // max(n, 1)))
        return [{"parts": group} for group in pack_by_bytes(split, target)]

    def _plan_hf(self) -> list[dict[str, Any]]:
        import datasets

        rows = 0
        for name in self.paths:
            ds = datasets.load_dataset(name, split=self.hf_split) if not os.path.exists(name) else \
                datasets.load_from_disk(name)
            rows = len(ds)
        step = max(1, self.shard_bytes // 4096)  # ~4 KB per source file
        return [{"parts": [["hf", name, s, min(rows, s + step)]]} for name in self.paths for s in range(0, rows, step)]

    # -- reading ------------------------------------------------------------------------------------------------
    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table]:
        for part in spec["parts"]:
            kind = part[0]
            if kind == "parquet":
                yield self._read_parquet(*part[1:])
            elif kind == "jsonl":
                yield from self._read_jsonl(part[1])
            elif kind == "hf":
                yield self._read_hf(*part[1:])
            elif kind == "bad":  # a file found unusable while planning
                _, path, reason, detail = part
                yield self._rows_to_table([self._record(path, "file", None, {"path": path}) |
                                           {"reason": reason, "detail": detail}])
            else:
                yield self._rows_to_table([self._read_file(part[1])])

    def _record(self, source: str, offset: int | str, content: Any, meta: dict) -> dict:
        """One record from raw content (str or bytes), with a reason if it is unusable."""
        reason = detail = None
        text = None
        wrong = [f"{k} is {type(v).__name__}" for k, v in meta.items()
                 if k in ("repo", "path", "blob_id") and v is not None and not isinstance(v, str)]
        if content is not None and not isinstance(content, str | bytes):
            wrong.insert(0, f"{self.content_column} is {type(content).__name__}")
        if wrong:  # e.g. content a number, path a list, repo an object: rejected, the fields kept as text
            meta = {k: (v if v is None or isinstance(v, str) else _as_str(v)) for k, v in meta.items()}
            return {"id": make_id(source, offset), "text": None, "source_file": source,
                    "source_offset": int(offset) if str(offset).isdigit() else 0,
                    "language": meta.get("language") if isinstance(meta.get("language"), str) else None,
                    "reason": "bad_field_type", "detail": "; ".join(wrong)[:500], **meta}
        path = meta.get("path")
        if content is None:
            reason, detail = "missing_content", f"column {self.content_column!r} is null or absent"
        else:
            data = content if isinstance(content, bytes) else None
            size = len(data) if data is not None else len(content.encode("utf-8", "surrogatepass"))
            if size > self.max_file_bytes:
                reason, detail = "too_large", f"{size} bytes > max_file_bytes {self.max_file_bytes}"
            elif data is not None:
                text, reason, detail = decode_source(data)
            else:
                text = content
                if "\x00" in text[:8192]:
                    reason, detail, text = "binary", "NUL character in the first 8 KiB", None
        if reason is None and text is not None and not text.strip():
            reason = "empty"
        lang = meta.get("language") or language_of(path)
        if reason is None and self.languages and lang not in self.languages:
            reason, detail = "other_language", lang
        return {"id": make_id(source, offset), "text": text if reason in (None, "other_language", "empty") else None,
                "source_file": source, "source_offset": int(offset) if str(offset).isdigit() else 0,
                "language": lang, "reason": reason, "detail": detail, **meta}

    def _meta(self, row: dict) -> dict:
        meta = {"repo": row.get(self.repo_column) or row.get("repo_name"), "path": row.get(self.path_column),
                "license": _as_str(row.get(self.license_column)), "blob_id": row.get(self.blob_id_column)}
        for c in self.keep_columns:
            meta[c] = row.get(c)
        return meta

    def _read_parquet(self, path: str, rg: int, start: int, stop: int) -> pa.Table:
        try:
            pf = pq.ParquetFile(path)
            wanted = [c for c in {self.content_column, self.repo_column, "repo_name", self.path_column,
                                  self.license_column, self.blob_id_column, *self.keep_columns}
                      if c in pf.schema_arrow.names]
            table = pf.read_row_group(rg, columns=sorted(wanted)).slice(start, stop - start)
            base = sum(pf.metadata.row_group(i).num_rows for i in range(rg)) + start
        except Exception as exc:  # noqa: BLE001 - a corrupt page or a file changed since planning: one row
            return self._rows_to_table([self._record(path, f"rg{rg}:{start}-{stop}", None, {"path": path}) |
                                        {"reason": "corrupt_file",
                                         "detail": f"row group {rg}, rows {start}-{stop}: {type(exc).__name__}: "
                                                   f"{exc}"[:500]}])
        rows = [self._record(path, base + i, row.get(self.content_column), self._meta(row))
                for i, row in enumerate(table.to_pylist())]
        return self._rows_to_table(rows)

    def _read_jsonl(self, path: str) -> Iterator[pa.Table]:
        rows: list[dict] = []
        for offset, row, reason, detail in iter_jsonl(path, 8 * self.max_file_bytes + (1 << 16)):
            if reason:
                rows.append(self._record(path, offset, None, {}) | {"reason": reason, "detail": detail})
            else:
                rows.append(self._record(path, offset, row.get(self.content_column), self._meta(row)))
            if len(rows) >= 2048:
                yield self._rows_to_table(rows)
                rows = []
        yield self._rows_to_table(rows)

    def _read_file(self, path: str) -> dict:
        meta = {"repo": None, "path": path, "license": None, "blob_id": None}
        size = os.path.getsize(path)
        if size > self.max_file_bytes:
            return self._record(path, 0, None, meta) | {"reason": "too_large",
                                                        "detail": f"{size} bytes > max_file_bytes {self.max_file_bytes}"}  # noqa: E501
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            return self._record(path, 0, None, meta) | {"reason": "unreadable", "detail": str(exc)}
        return self._record(path, 0, data, meta)

    def _read_hf(self, name: str, start: int, stop: int) -> pa.Table:
        import datasets

        ds = datasets.load_from_disk(name) if os.path.exists(name) else datasets.load_dataset(name, split=self.hf_split)
        rows = [self._record(f"hf:{name}", start + i, row.get(self.content_column), self._meta(row))
                for i, row in enumerate(ds.select(range(start, stop)))]
        return self._rows_to_table(rows)

    def makes(self) -> set[str]:
        return set(ROW_TYPES) | set(self.keep_columns)

    def _rows_to_table(self, rows: list[dict]) -> pa.Table:
        rows = [clean_row(r) for r in rows]
        cols = {c: pa.array([r.get(c) for r in rows], t) for c, t in ROW_TYPES.items()}
        for c in self.keep_columns:
            cols[c] = pa.array([r.get(c) for r in rows])
        return pa.table(cols)


def _as_str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, default=str)
