"""The code source: directories, JSONL and Parquet, bad inputs as reasons."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from stages.ingest.code import CodeSource
from tests.conftest import CORPUS

shared = pytest.mark.shared_data


def read_all(source, spec):
    return pa.concat_tables(list(source.read(spec))).to_pylist()


@pytest.mark.fast
def test_ingest_directory_bad_inputs(tmp_path):
    d = tmp_path / "tree"
    d.mkdir()
    (d / "ok.py").write_text("x = 1\n")
    (d / "latin.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (d / "bin.py").write_bytes(b"\x00\x01\x02binary")
    (d / "empty.py").write_text("  \n")
    (d / "huge.py").write_text("x = 1\n" * 1000)
    (d / "notes.md").write_text("# hi\n")
    src = CodeSource(paths=[str(d)], max_file_bytes=2000)
    rows = [r for spec in src.plan() for r in read_all(src, spec)]
    by_name = {Path(r["path"]).name: r for r in rows}
    assert len(rows) == 6
    assert by_name["ok.py"]["reason"] is None and by_name["ok.py"]["text"] == "x = 1\n"
    assert by_name["latin.py"]["reason"] == "undecodable"
    assert by_name["bin.py"]["reason"] == "binary"
    assert by_name["empty.py"]["reason"] == "empty"
    assert by_name["huge.py"]["reason"] == "too_large"
    assert by_name["notes.md"]["reason"] == "other_language"
    assert len({r["id"] for r in rows}) == 6


@pytest.mark.fast
def test_ingest_jsonl_corrupt_gzip_and_bad_lines(tmp_path):
    lines = [json.dumps({"content": f"x = {i}\n", "path": f"f{i}.py", "repo_name": "r/r"}) for i in range(2000)]
    lines[5] = "{not json"
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    p = tmp_path / "part.jsonl.gz"
    p.write_bytes(data[: len(data) // 2])  # truncated archive
    src = CodeSource(paths=[str(p)])
    rows = read_all(src, src.plan()[0])
    reasons = [r["reason"] for r in rows]
    assert reasons.count("bad_json") == 1
    assert reasons[-1] == "corrupt_file"
    assert reasons.count(None) == len(rows) - 2 > 0
    assert rows[0]["repo"] == "r/r"


@shared
def test_ingest_parquet_plan_is_balanced_and_complete():
    src = CodeSource(paths=[str(CORPUS)], shard_bytes=4_000_000)
    plan = src.plan()
    assert len(plan) > 5
    rows = [r for spec in plan for r in read_all(src, spec)]
    assert len(rows) == 6771 and len({r["id"] for r in rows}) == 6771
    assert src.plan() == plan  # deterministic
