"""The source protocol: the first stage of every run, which turns raw inputs into records.

A source plans byte-balanced shards (``plan``) from its inputs, deterministically, so a rerun sees the same
shards (the plan is written once to ``RUN/plan.json``); ``read(spec)`` yields Arrow tables of records for one
shard. Records it cannot use (undecodable bytes, oversize files, corrupt archives) are yielded too, with a
``reason`` column set: nothing is dropped silently.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import pyarrow as pa

from pipeline.component import Component

if TYPE_CHECKING:
    from pipeline.phases import Phase


class Counters(dict):
    """What ``read`` may yield beside tables: additive counters for the shard's stats (e.g. records per type that
    are not rows)."""


class Source(Component):
    role: ClassVar[str] = "source"
    name: str = "ingest"
    #: Input files, directories or glob patterns.
    paths: list[str]
    #: Target bytes of raw input per shard.
    shard_bytes: int = 64 * 2**20

    def phases(self) -> list["Phase"]:
        from pipeline.phases import SourcePhase

        return [SourcePhase()]

    def expand(self) -> list[str]:
        """The input files, sorted, with directories and globs expanded; error naming a missing path."""
        files: list[str] = []
        for p in self.paths:
            if any(ch in p for ch in "*?["):
                hits = sorted(glob.glob(p, recursive=True))
                if not hits:
                    raise FileNotFoundError(f"input pattern {p!r} matches no file")
                files += [h for h in hits if os.path.isfile(h)]
            elif os.path.isdir(p):
                for root, dirs, names in os.walk(p):
                    dirs.sort()
                    files += [os.path.join(root, n) for n in sorted(names)]
            elif os.path.isfile(p):
                files.append(p)
            else:
                raise FileNotFoundError(f"input path {p!r} does not exist")
        return files

    def plan(self) -> list[dict[str, Any]]:
        raise NotImplementedError(f"source type {self.type!r} does not implement plan()")

    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table | Counters]:
        """Tables of records for one planned shard (``reason`` set on unusable ones), and optional Counters."""
        raise NotImplementedError(f"source type {self.type!r} does not implement read()")


def iter_jsonl(path: str) -> Iterator[tuple[int | str, dict | None, str | None, str | None]]:
    """(offset, record, reason, detail) per non-blank line of a JSONL(.gz) file; never raises on bad data.

    A line that is not JSON gives ``bad_json``; a corrupt or truncated gzip ends the file with one
    ``corrupt_file`` entry (offset ``error@LINE``) after the lines that could be read.
    """
    import gzip
    import json
    import zlib

    opener = gzip.open if path.endswith(".gz") else open
    lineno = -1
    try:
        with opener(path, "rb") as f:
            for lineno, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line), None, None
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    yield lineno, None, "bad_json", str(exc)
    except (OSError, EOFError, zlib.error) as exc:
        yield f"error@{lineno + 1}", None, "corrupt_file", f"{type(exc).__name__}: {exc} after line {lineno + 1}"


def pack_by_bytes(items: list[tuple[Any, int]], target: int) -> list[list[Any]]:
    """Greedy in-order packing of (item, size) into groups of about ``target`` bytes (order kept: determinism)."""
    groups: list[list[Any]] = []
    cur: list[Any] = []
    size = 0
    for item, n in items:
        if cur and size + n > target:
            groups.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += n
    if cur:
        groups.append(cur)
    return groups


class RecordsSource(Source):
    """Records already in this pipeline's format (Parquet with ``id``, e.g. a stage's ``kept/`` directory).

    Lets a single stage run on the output of another run; ids and provenance are kept as they are.
    """

    type: ClassVar[str] = "records"

    def plan(self) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        items = []
        for path in self.expand():
            if path.endswith(".parquet") and not os.path.basename(path).startswith(".tmp-"):
                meta = pq.ParquetFile(path).metadata
                items += [([path, rg], max(meta.row_group(rg).total_byte_size, 1)) for rg in range(meta.num_row_groups)]
        return [{"parts": group} for group in pack_by_bytes(items, self.shard_bytes)]

    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        for path, rg in spec["parts"]:
            table = pq.ParquetFile(path).read_row_group(rg)
            yield table.drop_columns([c for c in ("reason", "stage", "detail") if c in table.column_names])
