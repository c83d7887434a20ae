"""The per-shard phases: a source's ``read`` and every stage's ``apply``, and the code that turns one input shard
into kept/rejected/stats files and a marker (inside a worker).

The only place rows move between files. It checks the ledger before anything is written: rows in equals kept
plus rejected, and the ids of the outputs are exactly the ids of the input.

* ``SourcePhase`` (a source's only phase): one task per planned input shard -> ``kept``/``rejected``/``stats``
  and ``done/SHARD.json``.
* ``ApplyPhase`` (every stage's last phase): one task per finished shard of the previous stage, the same files.
  ``verify`` reads only these files, whatever phases came before.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core.component import Component
from pipeline.core.errors import ConfigError, SetupError, WorkerBroken
from pipeline.core.records import check_schema, conform, empty_table, make_id
from pipeline.core.task import ShardContext, StageContext, Task
from pipeline.core.verdict import Verdict
from pipeline.core.where import WhereError, mask
from pipeline.phases.phase import Phase, check_where
from pipeline.proc.row_budget import RowTimeout, budget
from pipeline.store.shards import DONE, KEPT, REJECTED, STATS, StageDir, seal, write_json, write_parquet


class LedgerError(AssertionError):
    """Rows were lost or duplicated: a bug, never a data problem."""


def text_bytes(table: pa.Table) -> int:
    """Bytes of the rows' text; where a row has none yet (a web page before extraction), of its HTML."""
    if len(table) == 0:
        return 0
    total = 0
    if "text" in table.column_names:
        total += int(pc.sum(pc.binary_length(table.column("text").cast(pa.string()))).as_py() or 0)
    if "html" in table.column_names:
        html = table.column("html").cast(pa.string())
        if "text" in table.column_names:
            html = pc.if_else(pc.is_null(table.column("text")), html, pa.scalar(None, pa.string()))
        total += int(pc.sum(pc.binary_length(html)).as_py() or 0)
    return total


def safe_process(stage: Component, batch: pa.Table, ctx: ShardContext | None = None) -> Verdict:
    """Run ``stage.process`` within the batch's time budget (``row_budget.py``); if the batch raises or runs out of
    time, retry row by row and reject only the rows that raise (``error:<Type>``) or run out alone
    (``row_timeout``)."""
    per_row = getattr(stage, "row_timeout_s", None)
    try:
        with budget(per_row * len(batch) if per_row else None):
            verdict = stage.process(batch, ctx)
        verdict.check(len(batch), stage.name, stage.makes() if hasattr(stage, "makes") else None)
        return verdict
    except (AssertionError, WorkerBroken, SetupError):  # a framework bug, a broken worker (retried elsewhere), or
        raise  # heavy state a stage starts on its first batch that could not start (the run stops)
    except RowTimeout:
        if len(batch) == 1:
            return Verdict(reasons=["row_timeout"], details=[f"no verdict within row_timeout_s {per_row:g} s"])
    except Exception as exc:  # noqa: BLE001 - isolated per row below
        if len(batch) == 1:
            return Verdict(
                reasons=[f"error:{type(exc).__name__}"],
                details=["".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]],
            )
    verdicts = [safe_process(stage, batch.slice(i, 1), ctx) for i in range(len(batch))]
    return merge_verdicts(verdicts)


def merge_verdicts(verdicts: list[Verdict]) -> Verdict:
    reasons: list = []
    details: list = []
    side: list = []
    counters: Counter = Counter()
    names = {k for v in verdicts for k in v.columns}
    columns: dict[str, list] = {k: [] for k in names}
    for v in verdicts:
        n = len(v.reasons)
        reasons += v.reasons
        details += v.details if v.details is not None else [None] * n
        side += v.artifacts if v.artifacts is not None else [None] * n
        counters.update(v.counters)
        for k in names:
            col = v.columns.get(k)
            columns[k] += col.to_pylist() if isinstance(col, pa.Array | pa.ChunkedArray) else (col or [None] * n)
    return Verdict(reasons, columns, details, side if any(s is not None for s in side) else None, dict(counters))


def apply_verdict(batch: pa.Table, verdict: Verdict, stage_name: str) -> tuple[pa.Table, pa.Table, list]:
    """Add the verdict's columns to ``batch`` and split it into (kept, rejected, kept side values)."""
    for name, col in verdict.columns.items():
        arr = col if isinstance(col, pa.Array | pa.ChunkedArray) else pa.array(col)
        if name in batch.column_names:
            if pa.types.is_null(arr.type):  # an all-null or empty list replacing a typed column keeps its type
                arr = arr.cast(batch.schema.field(name).type)
            batch = batch.set_column(batch.column_names.index(name), name, arr)
        else:
            batch = batch.append_column(name, arr)
    is_kept = pa.array([r is None for r in verdict.reasons], pa.bool_())
    kept = batch.filter(is_kept)
    rej_idx = [i for i, r in enumerate(verdict.reasons) if r is not None]
    rejected = batch.take(pa.array(rej_idx, pa.int64()))
    rejected = rejected.append_column("reason", pa.array([verdict.reasons[i] for i in rej_idx], pa.string()))
    rejected = rejected.append_column("stage", pa.array([stage_name] * len(rej_idx), pa.string()))
    details = verdict.details or [None] * len(verdict.reasons)
    rejected = rejected.append_column("detail", pa.array([details[i] for i in rej_idx], pa.string()))
    side = [verdict.artifacts[i] for i, r in enumerate(verdict.reasons) if r is None] if verdict.artifacts else []
    return kept, rejected, side


def concat(parts: list[pa.Table], empty: pa.Table) -> pa.Table:
    parts = [p for p in parts if p.num_columns]
    if not parts:
        return empty
    return pa.concat_tables(parts, promote_options="permissive").combine_chunks()


def finish_shard(
    stage_dir: StageDir,
    shard: str,
    stage_name: str,
    kept: pa.Table,
    rejected: pa.Table,
    n_in: int,
    input_ids: list[str] | None,
    extra: dict[str, Any],
    t0: float,
) -> dict:
    """Check the ledger for one shard, then write kept, rejected, stats and (last) the marker."""
    kept_ids = kept.column("id").to_pylist() if len(kept) else []
    rej_ids = rejected.column("id").to_pylist() if len(rejected) else []
    if len(kept_ids) + len(rej_ids) != n_in:
        raise LedgerError(f"{stage_name}/{shard}: {n_in} rows in, {len(kept_ids)} kept + {len(rej_ids)} rejected")
    out_ids = kept_ids + rej_ids
    if len(set(out_ids)) != len(out_ids):
        raise LedgerError(f"{stage_name}/{shard}: duplicate ids in the output")
    if input_ids is not None and set(out_ids) != set(input_ids):
        raise LedgerError(f"{stage_name}/{shard}: output ids differ from input ids")
    files = {KEPT: write_parquet(stage_dir.file(KEPT, shard), kept),
             REJECTED: write_parquet(stage_dir.file(REJECTED, shard), rejected)}
    reasons = Counter(rejected.column("reason").to_pylist()) if len(rejected) else Counter()
    stats = {
        "stage": stage_name,
        "shard": shard,
        "in": n_in,
        "kept": len(kept),
        "rejected": len(rejected),
        "reasons": dict(sorted(reasons.items())),
        "bytes_kept": text_bytes(kept),
        "bytes_rejected": text_bytes(rejected),
        "wall_s": round(time.time() - t0, 3),
        "started": round(t0, 3),  # shards of one worker may overlap (a rewrite holds several): spans need both ends
        "finished": round(time.time(), 3),
        "host": socket.gethostname(),
        **extra,
    }
    files[STATS] = write_json(stage_dir.file(STATS, shard), stats)
    # the stage's own files of this shard (e.g. Megatron .bin/.idx), sealed too
    files.update(seal(stage_dir.path, [stage_dir.path / rel for rel in (extra.get("artifacts") or {}).get("files", [])]))  # noqa: E501
    marker = {"in": n_in, "kept": len(kept), "rejected": len(rejected), "files": files,
              "config_sha256": stage_dir.config_sha256(), "kept_digest": content_digest(kept)}
    if extra.get("input_sha256"):  # the seal of the previous stage's kept file this shard read (stale checks)
        marker["input_sha256"] = extra.pop("input_sha256")
    write_json(stage_dir.file(DONE, shard), marker)
    return stats


def read_shard(path: Path, kind: str) -> pa.Table:
    table = pq.read_table(path)
    check_schema(table.schema, kind, str(path))
    return table


def run_stage_shard(stage: Component, ctx: StageContext, shard: str, in_path: Path,
                    shard_ctx: ShardContext | None = None) -> dict:
    """Process one finished shard of the previous stage with ``stage`` (already set up); ``shard_ctx``: what the
    calling phase prepared for it (a global stage's decisions)."""
    return apply_shard(stage, ctx, shard, read_shard(in_path, ctx.kind), shard_ctx)[0]


def apply_shard(stage: Component, ctx: StageContext, shard: str, whole: pa.Table,
                shard_ctx: ShardContext | None = None) -> tuple[dict, pa.Table]:
    """``run_stage_shard`` on rows already in memory (the previous stage's kept table, as written to its file):
    writes the shard's files and marker; returns its stats and its kept rows."""
    t0 = time.time()
    table = whole
    shard_ctx = shard_ctx or ShardContext(ctx, shard)
    kept_parts, rej_parts, side = [], [], []
    counters: Counter = Counter()
    passed = None
    if stage.where:  # rows outside ``where`` pass through unchanged and kept
        check_where(stage, table.schema)  # (a chained stage's input schema is first known here)
        try:
            selected = mask(stage.where, table)
        except WhereError as exc:  # a column the rows lack: the config's fault, one line for the user
            raise ConfigError(f"stages.{stage.name}.where: {exc}") from None
        passed = table.filter(pc.invert(selected))
        table = table.filter(selected)
        counters["passed_through"] = float(len(passed))
    # An empty shard goes through the stage once too, so its files carry the stage's columns: every shard of a
    # stage then has one schema (``datasets`` refuses a folder of Parquet files whose schemas differ).
    pieces = Pieces(ctx.dir, shard, stage, table)
    start0 = pieces.resume(kept_parts, rej_parts, counters)
    for start in range(start0, max(len(table), 1), max(1, stage.batch_size)):
        batch = table.slice(start, stage.batch_size)
        verdict = safe_process(stage, batch, shard_ctx)
        counters.update(verdict.counters)
        k, r, s = apply_verdict(batch, verdict, stage.name)
        kept_parts.append(k)
        rej_parts.append(r)
        side += s
        pieces.after_batch(start + len(batch), kept_parts, rej_parts, counters)
    empty = table.schema.empty_table()
    kept = concat(kept_parts, empty)
    if passed is not None and len(passed):  # without the stage's columns: nulls there
        kept = pa.concat_tables([kept, passed], promote_options="default")
    rejected = concat(rej_parts, reject_empty(empty))
    extra = {"counters": dict(counters), "info": stage.shard_info()}
    artifacts = stage.write_artifacts(side, shard_ctx)
    if artifacts:
        extra["artifacts"] = artifacts
    extra["input_sha256"] = input_seal(ctx, shard)
    if pieces.resumed_rows:
        extra["resumed_rows"] = pieces.resumed_rows
    stats = finish_shard(ctx.dir, shard, stage.name, kept, rejected, len(whole), whole.column("id").to_pylist(),
                         extra, t0)
    pieces.clear()
    return stats, kept


def content_digest(table: pa.Table) -> str:
    """SHA-256 of a table's content (schema and values), independent of how it is chunked or was written: a shard
    redone with the same rows has the same digest, so the stages after it need not be redone."""
    t = table.replace_schema_metadata(None).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as writer:
        for batch in t.to_batches():
            writer.write_batch(batch)
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()


def input_seal(ctx: StageContext, shard: str) -> str | None:
    """The content digest of the previous stage's kept rows of ``shard``, as its marker recorded it."""
    prev = getattr(ctx, "prev", None)
    try:
        return prev.marker(shard).get("kept_digest") if prev is not None else None
    except (OSError, KeyError, TypeError, ValueError):
        return None


def stale_shards(ctx: StageContext, shards: list[str] | None = None) -> list[str]:
    """Finished shards of this stage that read a previous-stage output that is no longer there (that shard of the
    previous stage was redone since, with other rows): their rows are another input's verdicts. A shard whose
    previous-stage marker is missing is not judged here (it is being redone; the chain compares when it has)."""
    out = []
    for shard in ctx.dir.done_shards() if shards is None else shards:
        try:
            recorded = ctx.dir.marker(shard).get("input_sha256")
        except (OSError, ValueError):
            continue
        now = input_seal(ctx, shard)
        if recorded and now and recorded != now:
            out.append(shard)
    return out


#: While a shard runs, its finished rows are saved in pieces at least this often (seconds): a kill, a Ctrl-C or a lost
#: machine loses at most the piece under way (the shard marker, written last, still decides what is done).
PIECE_S = 30.0
#: Rows-done of a running shard are written at most this often (what ``swallow status`` and the bars read).
PROGRESS_S = 1.0


class Pieces:
    """The pieces of one shard of one stage saved so far (``work/pieces/SHARD/NNNNNNNNNN.parquet`` + ``.json``:
    kept and rejected rows of the rows ``[0, end)``, with the counters), and its progress file
    (``work/progress/SHARD.json``). Pieces are used only by stages that write no per-shard artefacts and process a
    shard in more than one batch, and only when the input rows are the same (ids checked)."""

    def __init__(self, stage_dir: StageDir, shard: str, stage: Component, table: pa.Table):
        self.dir = stage_dir.work("pieces") / shard
        self.progress = stage_dir.work("progress") / f"{shard}.json"
        self.table = table
        self.rows = len(table)
        self.enabled = self.rows > getattr(stage, "batch_size", self.rows) and not _has_artifacts(stage)
        self.every = getattr(stage, "piece_s", PIECE_S)
        self.saved_parts = 0  # parts (batches) already in a saved piece
        self.saved_counters: dict = {}
        self.saved_rows = 0
        self.resumed_rows = 0
        self.t_piece = self.t_progress = time.time()
        self.t0 = time.time()

    def resume(self, kept_parts: list, rej_parts: list, counters: Counter) -> int:
        """Load the saved pieces into the lists; the row to go on from (0: none)."""
        if not self.enabled or not self.dir.is_dir():
            return 0
        end = 0
        ids = self.table.column("id")
        for meta_path in sorted(self.dir.glob("*.json")):
            try:
                meta = json.loads(meta_path.read_text())
                if meta["start"] != end or meta["end"] > self.rows:
                    break
                k = pq.read_table(self.dir / meta["kept"])
                r = pq.read_table(self.dir / meta["rejected"])
                want = set(ids.slice(meta["start"], meta["end"] - meta["start"]).to_pylist())
                got = set(k.column("id").to_pylist()) | set(r.column("id").to_pylist())
                if got != want or len(k) + len(r) != meta["end"] - meta["start"]:
                    break  # other input rows: the pieces are not this shard's any more
            except (OSError, ValueError, KeyError, pa.ArrowException):
                break
            kept_parts.append(k)
            rej_parts.append(r)
            counters.update(meta.get("counters", {}))
            end = meta["end"]
        self.saved_parts, self.saved_rows, self.resumed_rows = len(kept_parts), end, end
        self.saved_counters = dict(counters)
        return end

    def after_batch(self, end: int, kept_parts: list, rej_parts: list, counters: Counter) -> None:
        now = time.time()
        if now - self.t_progress >= PROGRESS_S:
            self.t_progress = now
            rate = (end - self.resumed_rows) / max(now - self.t0, 1e-6)
            write_json(self.progress, {"rows_done": end, "rows": self.rows, "rows_per_s": round(rate, 2),
                                       "time": round(now, 3)})
        if not self.enabled or end >= self.rows or now - self.t_piece < self.every:
            return
        self.t_piece = now
        k = concat(kept_parts[self.saved_parts:], None)
        r = concat(rej_parts[self.saved_parts:], None)
        name = f"{self.saved_rows:010d}"
        write_parquet(self.dir / f"{name}.kept.parquet", k)
        write_parquet(self.dir / f"{name}.rejected.parquet", r)
        delta = {key: v - self.saved_counters.get(key, 0) for key, v in counters.items()}  # this piece's own
        write_json(self.dir / f"{name}.json", {"start": self.saved_rows, "end": end, "kept": f"{name}.kept.parquet",
                                               "rejected": f"{name}.rejected.parquet", "counters": delta})
        self.saved_parts, self.saved_rows, self.saved_counters = len(kept_parts), end, dict(counters)

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
        self.progress.unlink(missing_ok=True)


def _has_artifacts(stage: Component) -> bool:
    """Whether the stage writes per-shard files from its kept rows' side values (then a shard is one piece)."""
    method = getattr(type(stage), "write_artifacts", None)
    return method is not None and method.__qualname__.split(".")[0] != "Stage"


def reject_empty(schema_table: pa.Table) -> pa.Table:
    t = schema_table
    for name in ("reason", "stage", "detail"):
        t = t.append_column(name, pa.array([], pa.string()))
    return t


def run_source_shard(source: Component, ctx: StageContext, shard: str, spec: dict) -> dict:
    """Read one planned input shard; rows with a non-null ``reason`` are rejected at ingest."""
    return read_source_shard(source, ctx, shard, spec)[0]


def read_source_shard(source: Component, ctx: StageContext, shard: str, spec: dict) -> tuple[dict, pa.Table]:
    """``run_source_shard``, returning the shard's stats and its kept rows (what a chain hands on)."""
    t0 = time.time()
    kind = ctx.kind
    kept_parts, rej_parts = [], []
    counters: Counter = Counter()
    tables = [duplicate_listings(spec["duplicate_inputs"])] if "duplicate_inputs" in spec else source.read(spec)
    for table in tables:
        if isinstance(table, dict):  # pipeline.core.source.Counters
            counters.update(table)
            continue
        table = conform(table, kind)
        if "reason" not in table.column_names:
            table = table.append_column("reason", pa.nulls(len(table), pa.string()))
        if "detail" not in table.column_names:
            table = table.append_column("detail", pa.nulls(len(table), pa.string()))
        is_rej = pc.is_valid(table.column("reason"))
        kept_parts.append(table.filter(pc.invert(is_rej)).drop_columns(["reason", "detail"]))
        rej = table.filter(is_rej)
        rej = rej.append_column("stage", pa.array([source.name] * len(rej), pa.string()))
        rej_parts.append(rej.select([c for c in rej.column_names if c not in ("reason", "stage", "detail")]
                                    + ["reason", "stage", "detail"]))
    kept = concat(kept_parts, empty_table(kind))
    rejected = concat(rej_parts, reject_empty(empty_table(kind)))
    n_in = len(kept) + len(rejected)
    extra = {"source": spec, "info": source.shard_info(), "counters": dict(counters)}
    return finish_shard(ctx.dir, shard, source.name, kept, rejected, n_in, None, extra, t0), kept


def duplicate_listings(dups: list[list[str]]) -> pa.Table:
    """One ``duplicate_id`` row per extra listing of an input file (the file itself was read once, first)."""
    return pa.table({"id": [make_id(path, f"listing{i}") for i, (path, _) in enumerate(dups)],
                     "text": pa.nulls(len(dups), pa.string()), "source_file": [p for p, _ in dups],
                     "source_offset": [0] * len(dups), "reason": ["duplicate_id"] * len(dups),
                     "detail": [f"the same file as {first}, listed earlier in paths: read once" for _, first in dups]})


def reject_whole_shard(component, ctx: StageContext, shard: str, in_path: Path | None, spec: dict | None,
                       detail: str, reason: str = "worker_died") -> dict:
    """Reject every row of a shard with one reason: what happens when a shard keeps killing its workers.

    A source shard whose records could not be enumerated gets one record standing for the whole shard.
    """
    t0 = time.time()
    kind = ctx.kind
    if in_path is not None:
        table = read_shard(in_path, kind)
        ids = table.column("id").to_pylist()
    else:
        locator = json.dumps(spec, sort_keys=True)
        table = conform(pa.table({"id": [make_id(locator, "shard")], "text": [None],
                                  "source_file": [locator[:1000]], "source_offset": [0]}), kind)
        ids = None
    n = len(table)
    rejected = table.append_column("reason", pa.array([reason] * n, pa.string()))
    rejected = rejected.append_column("stage", pa.array([component.name] * n, pa.string()))
    rejected = rejected.append_column("detail", pa.array([detail[:2000]] * n, pa.string()))
    kept = table.schema.empty_table() if in_path is not None else empty_table(kind)
    extra = {"worker_died": True, "input_sha256": input_seal(ctx, shard) if in_path is not None else None}
    return finish_shard(ctx.dir, shard, component.name, kept, rejected, n, ids, extra, t0)


class SourcePhase(Phase):
    """Read one planned input shard into records; unusable inputs become rejected rows with a reason."""

    name = "read"

    def tasks(self, component, ctx: StageContext) -> list[Task]:
        from pipeline.store.run_tree import KEY

        plan = json.loads((Path(ctx.run_dir) / "plan.json").read_text())
        bad = [k for k in plan if not KEY.match(str(k))]
        if bad:  # a key is a file name in every stage folder: `../x` would write outside the run
            raise ConfigError(f"{ctx.run_dir}/plan.json: shard key {bad[0]!r} is not a plain name (letters, digits, "
                              f"_ and -); the plan was edited: start the run in a new folder")
        return [Task(self.name, shard, spec=spec) for shard, spec in plan.items()]

    def is_done(self, ctx: StageContext, key: str) -> bool:
        return ctx.dir.is_done(key)

    def run(self, component, task: Task, ctx: StageContext) -> dict[str, Any]:
        return run_source_shard(component, ctx, task.key, task.spec)

    def on_dead(self, component, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        return reject_whole_shard(component, ctx, task.key, None, task.spec, why)


class ApplyPhase(Phase):
    """``process`` over one finished shard of the previous stage -> kept/rejected/stats/done."""

    name = "apply"

    def tasks(self, component, ctx: StageContext) -> list[Task]:
        prev = ctx.prev
        shards = prev.done_shards()
        if getattr(component, "where", None) and shards:
            check_where(component, pq.read_schema(prev.file(KEPT, shards[0])))
        return [Task(self.name, s, inputs=(str(prev.file(KEPT, s)),)) for s in shards]

    def is_done(self, ctx: StageContext, key: str) -> bool:
        return ctx.dir.is_done(key)

    def run(self, component, task: Task, ctx: StageContext) -> dict[str, Any]:
        return run_stage_shard(component, ctx, task.key, Path(task.inputs[0]))

    def on_dead(self, component, task: Task, ctx: StageContext, why: str) -> dict[str, Any]:
        return reject_whole_shard(component, ctx, task.key, Path(task.inputs[0]), None, why)
