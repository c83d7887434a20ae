"""Bad input is a reason, never a traceback, and memory stays bounded whatever an input inflates to (issue 42 items
3 and 6): records whose text is binary or a list, rows without an id, a JSONL line of hundreds of MB inside a small
``.jsonl.gz``, a ``warc.paths.gz`` that inflates to hundreds of MB on one line, shard files that are no Parquet
under verify, compare, stats, report, export and publish."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.fast


def run(tmp_path, raw: dict, name: str = "run"):
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify

    out = tmp_path / name
    run_pipeline(load_config(None, raw=raw), out, progress=False, executor="inline")
    assert verify(out) == []
    return out


def rejected(out, stage="00-ingest") -> list[dict]:
    folder = out / "stages" / stage / "rejected"
    return [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_records_of_the_wrong_type_and_without_ids_are_reasons(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(pa.table({"id": ["a", None, "c"], "text": ["x", "y", "z"]}), src / "a.parquet")
    pq.write_table(pa.table({"id": ["d", "e"], "text": [b"\x00\x01", b"x"]}), src / "b.parquet")
    pq.write_table(pa.table({"id": ["f"], "text": [["a", "list"]]}), src / "c.parquet")
    pq.write_table(pa.table({"id": [1, 2], "text": ["int", "ids"]}), src / "d.parquet")
    out = run(tmp_path, {"kind": "code", "source": {"type": "records", "paths": [str(src)]},
                         "stages": [{"type": "length_filter"}], "export": {"enabled": False}})
    reasons = sorted(r["reason"] for r in rejected(out))
    assert reasons == ["bad_field_type"] * 5 + ["missing_id"]
    assert all(r["detail"] for r in rejected(out))


def test_a_huge_jsonl_line_in_a_small_gzip_is_too_large(tmp_path):
    """300 MB of one line compress to ~300 KB: read in bounded pieces, one ``too_large`` row, the next line read."""
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b'{"text": "ok before"}\n{"text": "')
        block = b"a" * (1 << 20)
        for _ in range(300):
            f.write(block)
        f.write(b'"}\n{"text": "ok after"}\n')
    assert path.stat().st_size < 2_000_000
    out = run(tmp_path, {"kind": "web", "source": {"type": "documents", "paths": [str(path)], "max_chars": 100_000},
                         "stages": [{"type": "length_filter", "min_chars": 1}], "export": {"enabled": False}})
    rej = rejected(out)
    assert [r["reason"] for r in rej] == ["too_large"] and "314,572,8" in rej[0]["detail"]
    kept = [r for f in (out / "stages" / "00-ingest" / "kept").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert sorted(r["text"] for r in kept) == ["ok after", "ok before"]


def test_a_paths_listing_that_inflates_to_one_huge_line_is_refused_in_one_line(tmp_path):
    from pipeline.cli import main

    listing = tmp_path / "warc.paths.gz"
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = z.compress(b"crawl-data/x.warc.gz\n" + b"b" * (200 << 20)) + z.flush()
    listing.write_bytes(data)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"kind: web\nsource: {{type: warc, paths: ['{listing}']}}\nstages: []\n")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--output", str(tmp_path / "o"),
                           "--executor", "inline", "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "line 2 is over 4096 bytes" in proc.stderr and "warc.paths.gz" in proc.stderr
    assert main is not None


@pytest.fixture
def broken_copies(tmp_path):
    src = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": [f"a{i}" for i in range(50)], "text": [f"text {i} " * 20 for i in range(50)]}),
                   src)
    good = run(tmp_path, {"kind": "code", "source": {"type": "records", "paths": [str(src)]},
                          "stages": [{"type": "length_filter"}]}, "good")
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    (bad / "stages" / "01-length_filter" / "kept" / "00000.parquet").write_bytes(b"not parquet" * 20)
    data = bad / "dataset" / "data"
    (data / os.listdir(data)[0]).write_bytes(b"not parquet either" * 20)
    return good, bad


@pytest.mark.parametrize("command", ["verify", "compare", "stats", "report", "export"])
def test_non_parquet_shard_files_are_named_never_a_traceback(broken_copies, command):
    good, bad = broken_copies
    args = {"compare": [str(bad), str(good)]}.get(command, [str(bad)])
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", command, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if command in ("verify", "compare", "export"):
        assert proc.returncode != 0


def test_publish_refuses_non_parquet_shard_files(broken_copies):
    from stages.outputs.publish import PublishError, publish

    with pytest.raises(PublishError, match="does not verify"):
        publish(broken_copies[1], "user/name", dry_run=True)


def test_an_empty_result_is_said_and_the_export_loads(tmp_path):
    """A run that keeps nothing says so and where the rows went (never just "OK"); its export holds no data file
    that ``datasets`` would choke on, and its card says it is empty."""
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["short", "tiny"]}), src)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"kind: code\nsource: {{type: records, paths: ['{src}']}}\nstages:\n"
                   "  - {type: length_filter, min_chars: 100}\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--output", str(out),
                           "--no-progress"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and "EMPTY: no record was kept (2 in)" in proc.stderr
    assert "'length_filter', which rejected them (too_short 2)" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and "EMPTY:" in proc.stderr
    assert "This dataset is empty" in (out / "dataset" / "README.md").read_text()
    assert not list((out / "dataset" / "data").glob("*.parquet"))
