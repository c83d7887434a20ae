"""Compare two run directories row by row: the same stages, and per stage the same kept and rejected ids with the
same values in every column (timings and hosts aside). What ``swallow compare A B`` prints; used to prove that a
change of the code (or of the machine) left every verdict and every computed column as it was."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store.ledger import list_stages
from pipeline.store.shards import KEPT, REJECTED

#: Columns that may differ between two correct runs of the same config (they describe the run, not the row).
VOLATILE = {"extract_wall_s", "lint_wall_s", "wall_s", "finished", "started", "host"}


class Unreadable(ValueError):
    """A shard file that is no Parquet (or not ours): named, never a traceback."""


def _rows(stage_dir: Path, part: str) -> pa.Table | None:
    files = sorted((stage_dir / part).glob("*.parquet"))
    files = [f for f in files if not f.name.startswith(".tmp-")]
    if not files:
        return None
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (pa.ArrowException, OSError) as exc:
            raise Unreadable(f"{f}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    t = pa.concat_tables(tables, promote_options="permissive")
    if "id" not in t.column_names:
        raise Unreadable(f"{stage_dir / part}: no id column")
    return t.sort_by("id") if len(t) else t


def _values(col: pa.ChunkedArray) -> list:
    return col.to_pylist()


def compare(a: str | Path, b: str | Path, limit: int = 20) -> list[str]:
    """Differences between runs ``a`` and ``b`` (empty: every row of every stage has the same verdict and values)."""
    sa = {sd.path.name: sd for sd in list_stages(Path(a))}
    sb = {sd.path.name: sd for sd in list_stages(Path(b))}
    out: list[str] = []
    if sorted(sa) != sorted(sb):
        out.append(f"stages differ: {sorted(sa)} vs {sorted(sb)}")
    for name in sorted(set(sa) & set(sb)):
        for part in (KEPT, REJECTED):
            try:
                ta, tb = _rows(sa[name].path, part), _rows(sb[name].path, part)
            except Unreadable as exc:
                out.append(f"{name}/{part}: {exc}")
                continue
            if ta is None or tb is None:
                if (ta is None) != (tb is None) and (ta if ta is not None else tb).num_rows:
                    out.append(f"{name}/{part}: present in one run only")
                continue
            ia, ib = ta.column("id").to_pylist(), tb.column("id").to_pylist()
            if ia != ib:
                out.append(f"{name}/{part}: {len(set(ia) - set(ib))} ids only in A, {len(set(ib) - set(ia))} only in B")
                continue
            cols_a, cols_b = set(ta.column_names) - VOLATILE, set(tb.column_names) - VOLATILE
            if cols_a != cols_b:
                out.append(f"{name}/{part}: columns only in A {sorted(cols_a - cols_b)}, only in B "
                           f"{sorted(cols_b - cols_a)}")
            for col in sorted(cols_a & cols_b):
                va, vb = _values(ta.column(col)), _values(tb.column(col))
                if va != vb:
                    n = sum(1 for x, y in zip(va, vb) if x != y)
                    first = next(i for i, (x, y) in enumerate(zip(va, vb)) if x != y)
                    out.append(f"{name}/{part}: column {col!r} differs in {n} rows (first: id {ia[first]})")
            if len(out) >= limit:
                return out
    return out


def add_command(sub) -> None:
    p = sub.add_parser("compare", help="compare two run directories row by row (verdicts and columns)",
                       description="Exit 1 naming each stage, part and column where runs A and B differ (the ids "
                       "kept and rejected, and every column's values; timings and hosts aside).")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    import sys

    diffs = compare(args.run_a, args.run_b)
    for d in diffs:
        print(f"DIFF {d}", file=sys.stderr)
    if diffs:
        print(f"compare: {len(diffs)} difference(s)", file=sys.stderr)
        return 1
    print(f"compare: the same rows, verdicts and columns in every stage of {args.run_a} and {args.run_b}")
    return 0
