"""A stage command reads its ``--input`` the way the files ask: WARC/WET files (by name or by content) with the warc
source on kind web, JSONL/Parquet records with a text field as documents, a run's shards as records, the rest as
code; it says which it chose. And no Ray notice at every command: Ray's token authentication (its default for our
local Ray) stays on, silently."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run.verify import verify
from tests.conftest import WARC

SWALLOW = str(Path(sys.executable).with_name("swallow"))


def stage_cmd(capsys, *args) -> str:
    from pipeline.cli import main

    assert main([*args, "--executor", "inline", "--no-progress"]) == 0
    return capsys.readouterr().err


@pytest.mark.shared_data
@pytest.mark.fast
def test_the_source_is_guessed_from_the_files_and_said(tmp_path, capsys):
    warc = WARC / "dolma_sample-0000.warc.gz"
    err = stage_cmd(capsys, "language_id", "--input", str(warc), "--output", str(tmp_path / "w"),
                    "--model", str(WARC.parent / "fasttext" / "lid.176.ftz"), "--min-score", "0")
    assert "reading --input as warc" in err and "kind web" in err
    assert verify(tmp_path / "w") == []
    disguised = tmp_path / "crawl.bin"  # no telling name: sniffed from its first bytes
    shutil.copy(warc, disguised)
    assert "as warc" in stage_cmd(capsys, "length_filter", "--input", str(disguised), "--output", str(tmp_path / "d"))

    docs = tmp_path / "pages.jsonl"
    docs.write_text("\n".join(json.dumps({"text": f"page number {i} of the site"}) for i in range(5)) + "\n")
    err = stage_cmd(capsys, "length_filter", "--input", str(docs), "--output", str(tmp_path / "docs"))
    assert "as documents" in err and "kind web" in err
    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"content": "x = 1\n", "path": "a.py"}) + "\n")
    assert "as code" in stage_cmd(capsys, "syntax_filter", "--input", str(code), "--output", str(tmp_path / "c"))
    kept = tmp_path / "c" / "stages" / "01-syntax_filter" / "kept"
    err = stage_cmd(capsys, "length_filter", "--input", str(kept), "--output", str(tmp_path / "r"))
    assert "as records" in err and "kind code" in err
    err = stage_cmd(capsys, "length_filter", "--input", str(docs), "--output", str(tmp_path / "forced"),
                    "--source", "code")
    assert "as code (as asked" in err
    pq.write_table(pa.table({"text": ["a"], "content": ["b"]}), tmp_path / "both.parquet")
    assert "as code" in stage_cmd(capsys, "length_filter", "--input", str(tmp_path / "both.parquet"),
                                  "--output", str(tmp_path / "both"))


def test_no_token_notice_at_every_command(tmp_path):
    src = tmp_path / "a.py"
    src.write_text("x = 1\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    out = subprocess.run([SWALLOW, "syntax_filter", "--input", str(src), "--output", str(tmp_path / "run"),
                          "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Token authentication" not in out.stderr + out.stdout
    assert verify(tmp_path / "run") == []
