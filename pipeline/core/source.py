"""The source protocol: the first stage of every run, which turns raw inputs into records.

A source plans byte-balanced shards (``plan``) from its inputs, deterministically, so a rerun sees the same
shards (the plan is written once to ``RUN/plan.json``); ``read(spec)`` yields Arrow tables of records for one
shard. Records it cannot use (undecodable bytes, oversize files, corrupt archives) are yielded too, with a
``reason`` column set: nothing is dropped silently.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import Component


class Counters(dict):
    """What ``read`` may yield beside tables: additive counters for the shard's stats (e.g. records per type that
    are not rows)."""


REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
#: The smallest shard the automatic split makes (below it a shard's fixed costs dominate its work).
MIN_AUTO_SHARD_BYTES = 1 << 20


class Source(Component):
    role: ClassVar[str] = "source"
    name: str = "ingest"
    #: Input files, directories or glob patterns.
    paths: list[str]
    #: Bytes of raw input per shard, at most. Left unset, a corpus is also split into at least two shards per
    #: worker (never below ``MIN_AUTO_SHARD_BYTES``), so every worker gets work and a shard is a small unit of saved
    #: work: the shared 46 MB Python corpus was one shard on a 2-core machine, its lint 11 minutes in one worker.
    shard_bytes: int = Field(64 * 2**20, ge=1, le=1 << 44)
    _exclude: list[str] = PrivateAttr(default_factory=list)
    _workers: int = PrivateAttr(1)
    _duplicates: list[list[str]] = PrivateAttr(default_factory=list)

    #: Where this source stands when a command's ``--input`` names no source: ``sniff`` is asked in this order
    #: (lower first) and the first that claims the input reads it; None: never guessed, only named.
    sniff_order: ClassVar[int | None] = None
    #: The pipeline kind (``code``/``web``) of what this source reads, where ``sniff`` does not tell.
    kind: ClassVar[str] = "code"

    @classmethod
    def sniff(cls, inputs: list[str], files: list[Path], kind: str | None) -> tuple[str, str] | None:
        """``(kind, why)`` when this source reads ``inputs`` (``files``: the first few files under them; ``kind``:
        the user's ``--kind``, or None), else None. Reads a few bytes at most: it runs on every stage command."""
        return None

    def set_workers(self, workers: int) -> None:
        """How many workers the run has (the planner's hint for ``shard_target``)."""
        self._workers = max(1, int(workers))

    def shard_target(self, total_bytes: int) -> int:
        """Bytes per shard for a corpus of ``total_bytes``: ``shard_bytes`` as set; left unset, also at most a
        share giving every worker two shards, and never below ``MIN_AUTO_SHARD_BYTES``."""
        if "shard_bytes" in self.model_fields_set:
            return self.shard_bytes
        share = -(-max(total_bytes, 1) // (2 * self._workers))
        return max(MIN_AUTO_SHARD_BYTES, min(self.shard_bytes, share))

    def pack(self, items: list[tuple[Any, int]]) -> list[list[Any]]:
        """``pack_by_bytes`` at ``shard_target`` of the items' total."""
        return pack_by_bytes(items, self.shard_target(sum(n for _, n in items)))

    def makes(self) -> set[str] | None:
        """The columns of the rows it reads; None: known only from the data (then stages' reads go unchecked)."""
        return None

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

    def exclude(self, folders: list[str]) -> None:
        """Never take a file under these folders as input (the run's own directory: an output folder inside an
        input folder would otherwise ingest the run's own shards and lock file)."""
        self._exclude = [os.path.realpath(f) for f in folders]

    def inputs(self) -> list[str]:
        """``expand()`` without files under an excluded folder and with each file once (by device and inode, or
        by URL): a file listed again, under the same or another name, is remembered (``duplicate_inputs``) and
        not read twice. What ``plan`` reads."""
        out, seen = [], {}
        self._duplicates = []
        for path in self.expand():
            local = not REMOTE.match(path) or path.startswith("file://")
            if local and self._exclude:
                real = os.path.realpath(path.removeprefix("file://"))
                if any(real == d or real.startswith(d + os.sep) for d in self._exclude):
                    continue
            try:
                st = os.stat(path.removeprefix("file://")) if local else None
                key = (st.st_dev, st.st_ino) if st is not None else path
            except OSError:
                key = os.path.realpath(path) if local else path
            if key in seen:
                self._duplicates.append([path, seen[key]])
                continue
            seen[key] = path
            out.append(path)
        return out

    def duplicate_inputs(self) -> list[list[str]]:
        """[extra listing, first listing] of every input file listed more than once (after ``inputs()``)."""
        return list(self._duplicates)

    def plan(self) -> list[dict[str, Any]]:
        raise NotImplementedError(f"source type {self.type!r} does not implement plan()")

    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table | Counters]:
        """Tables of records for one planned shard (``reason`` set on unusable ones), and optional Counters."""
        raise NotImplementedError(f"source type {self.type!r} does not implement read()")


def iter_jsonl(path: str, max_line_bytes: int = 64 << 20) -> Iterator[tuple[int | str, dict | None, str | None,
                                                                          str | None]]:
    """(offset, record, reason, detail) per non-blank line of a JSONL(.gz) file; never raises on bad data.

    A line that is not JSON gives ``bad_json``, JSON that is not an object ``not_an_object``, a line over
    ``max_line_bytes`` ``too_large`` (read through in bounded pieces, never held whole: one 1 GiB line in a 1 MB
    ``.jsonl.gz`` is one row, not a crash); a corrupt or truncated gzip ends the file with one ``corrupt_file`` entry
    (offset ``error@LINE``) after the lines that could be read.
    """
    import gzip
    import json
    import zlib

    opener = gzip.open if path.endswith(".gz") else open
    lineno = -1
    try:
        with opener(path, "rb") as f:
            while True:
                line = f.readline(max_line_bytes + 1)
                if not line:
                    break
                lineno += 1
                if len(line) > max_line_bytes and not line.endswith(b"\n"):
                    size = len(line)
                    while True:  # the rest of the line, in pieces
                        piece = f.readline(1 << 20)
                        size += len(piece)
                        if not piece or piece.endswith(b"\n"):
                            break
                    yield lineno, None, "too_large", f"a line of {size:,} bytes > {max_line_bytes:,}"
                    continue
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                    yield lineno, None, "bad_json", str(exc)[:500]
                    continue
                if isinstance(obj, dict):
                    yield lineno, obj, None, None
                else:  # valid JSON, but [1, 2], "s", 42 or null is not a record
                    yield lineno, None, "not_an_object", f"a JSON {type(obj).__name__}, not an object"
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
    sniff_order: ClassVar[int | None] = 0

    @classmethod
    def sniff(cls, inputs: list[str], files: list[Path], kind: str | None) -> tuple[str, str] | None:
        """Folders of this pipeline's own shards (``RUN/stages/NN-x/kept``): Parquet with an ``id`` column; web
        when they have a ``url`` column."""
        import pyarrow.parquet as pq

        first = [next(iter(sorted(Path(p).glob("*.parquet"))), None) if Path(p).is_dir() else None for p in inputs]
        if not first or any(f is None for f in first):
            return None
        names = pq.ParquetFile(first[0]).schema_arrow.names
        if "id" not in names or not all("id" in pq.ParquetFile(f).schema_arrow.names for f in first[1:]):
            return None
        return ("web" if "url" in names else "code"), "a run's shards"

    def plan(self) -> list[dict[str, Any]]:
        """Row groups packed into shards. Planning reads every file's ``id`` column once: an id seen before (in
        this file or an earlier one, in path order) is marked, and that row becomes ``duplicate_id`` (the ledger
        counts each id once); a file that cannot be read is one ``corrupt_file`` row."""
        import pyarrow.parquet as pq

        items = []
        seen: set[str] = set()
        for path in self.inputs():
            if not path.endswith(".parquet") or os.path.basename(path).startswith(".tmp-"):
                continue
            try:
                pf = pq.ParquetFile(path)
                meta = pf.metadata
                if "id" not in pf.schema_arrow.names:
                    raise ValueError(f"no 'id' column (columns: {pf.schema_arrow.names}); a records input is a "
                                     "previous run's shards (use the 'code' or 'documents' source for raw data)")
                groups = []
                for rg in range(meta.num_row_groups):
                    dups = []
                    for i, rid in enumerate(pf.read_row_group(rg, columns=["id"]).column("id").to_pylist()):
                        if rid in seen:
                            dups.append(i)
                        seen.add(rid)
                    groups.append(([path, rg, dups], max(meta.row_group(rg).total_byte_size, 1)))
            except Exception as exc:  # noqa: BLE001 - one row names the file, the run goes on
                items.append((["bad", path, f"{type(exc).__name__}: {exc}"[:500]], 1))
                continue
            items += groups
        return [{"parts": group} for group in self.pack(items)]

    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        from pipeline.core.records import make_id

        for part in spec["parts"]:
            if part[0] == "bad":
                _, path, detail = part
                yield pa.table({"id": [make_id(path, "file")], "text": [None], "source_file": [path],
                                "reason": ["corrupt_file"], "detail": [detail]},
                               schema=pa.schema([("id", pa.string()), ("text", pa.string()),
                                                 ("source_file", pa.string()), ("reason", pa.string()),
                                                 ("detail", pa.string())]))
                continue
            path, rg, dups = part if len(part) == 3 else (*part, [])
            try:
                table = pq.ParquetFile(path).read_row_group(rg)
            except Exception as exc:  # noqa: BLE001
                yield pa.table({"id": [make_id(path, f"rg{rg}")], "text": [None], "source_file": [path],
                                "reason": ["corrupt_file"], "detail": [f"row group {rg}: {type(exc).__name__}: "
                                                                      f"{exc}"[:500]]})
                continue
            table = table.drop_columns([c for c in ("reason", "stage", "detail") if c in table.column_names])
            yield checked_records(table, path, rg, dups)


def checked_records(table: pa.Table, path: str, rg: int, dups: list[int]) -> pa.Table:
    """A records row group with a reason on every row it cannot pass on: ``duplicate_id`` (an id read before),
    ``missing_id`` (a null id), ``bad_field_type`` (an ``id`` or ``text`` column that holds no strings: binary,
    lists, numbers). A rejected row gets an id of its own in the ledger; what it held stays in its row."""
    from pipeline.core.records import make_id

    n = len(table)
    reasons: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    raw_ids = table.column("id")
    bad_types = [c for c in ("id", "text") if c in table.column_names and
                 not (pa.types.is_string(table.column(c).type) or pa.types.is_large_string(table.column(c).type)
                      or pa.types.is_null(table.column(c).type))]
    if bad_types:
        for i in range(n):
            reasons[i] = "bad_field_type"
            details[i] = "; ".join(f"{c} is {table.column(c).type}, not a string" for c in bad_types)
        for c in bad_types:  # the row keeps its place; the unusable column is null (never cast: no lossy text)
            table = table.set_column(table.column_names.index(c), c, pa.nulls(n, pa.string()))
    ids = [None if x is None else str(x) for x in (raw_ids.to_pylist() if "id" not in bad_types else [None] * n)]
    for i in dups:
        if reasons[i] is None:
            reasons[i], details[i] = "duplicate_id", f"id {ids[i]} already read (first occurrence kept)"
    for i, rid in enumerate(ids):
        if rid is None and reasons[i] is None:
            reasons[i], details[i] = "missing_id", "the row has no id"
    if not any(reasons):
        return table
    # a rejected row keeps its content but needs an id of its own in the ledger
    new_ids = [ids[i] if r is None else make_id(ids[i] or "", f"{r}@{path}:{rg}:{i}") for i, r in enumerate(reasons)]
    table = table.set_column(table.column_names.index("id"), "id", pa.array(new_ids, pa.string()))
    table = table.append_column("reason", pa.array(reasons, pa.string()))
    return table.append_column("detail", pa.array(details, pa.string()))


def first_files(paths: list[str], n: int = 20) -> list[Path]:
    """The first ``n`` files under ``paths`` (globs expanded, folders walked), for a source's ``sniff``."""
    out: list[Path] = []
    for p in paths:
        hits = [Path(h) for h in sorted(glob.glob(p, recursive=True))] if any(c in p for c in "*?[") else [Path(p)]
        for h in hits:
            out += sorted(f for f in h.rglob("*") if f.is_file())[:n] if h.is_dir() else [h] if h.is_file() else []
        if len(out) >= n:
            break
    return out[:n]
