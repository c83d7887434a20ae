"""The syntax filter against CPython's compile() on the real corpus."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats
from stages.text.python_code import syntax_check
from tests.conftest import CORPUS
from tests.helpers import compiles

shared = pytest.mark.shared_data


@shared
def test_syntax_filter_keeps_exactly_what_compiles_on_full_corpus(tmp_path, ray_session):
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(CORPUS)], "shard_bytes": 8_000_000},
           "stages": [{"type": "syntax_filter", "batch_size": 512}], "export": {"enabled": False}}
    run_pipeline(load_config(None, raw=raw), tmp_path / "run", progress=False)
    assert verify(tmp_path / "run") == []
    rows = pq.read_table(CORPUS, columns=["blob_id", "content"]).to_pylist()
    expected = sorted(r["blob_id"] for r in rows if r["content"].strip() and compiles(r["content"]))
    kept_dir = tmp_path / "run" / "stages" / "01-syntax_filter" / "kept"
    kept = sorted(b for f in kept_dir.glob("*.parquet") for b in pq.read_table(f).column("blob_id").to_pylist())
    assert kept == expected
    stats = collect_stats(tmp_path / "run")["stages"]
    assert stats[0]["in"] == len(rows) == 6771
    assert stats[1]["info"]["python"] == sys.version.split()[0]
    failures = sum(v for k, v in stats[1]["reasons"].items() if k.startswith("syntax_error"))
    assert failures == sum(1 for r in rows if r["content"].strip() and not compiles(r["content"]))


@pytest.mark.fast
@pytest.mark.parametrize("src,reason", [
    ("print 'py2'\n", "syntax_error:SyntaxError"),
    ("x = 1\0\n", "syntax_error:"),  # null bytes: SyntaxError or ValueError depending on the version
    ("if x:\n\ty = 1\n        z = 2\n", "syntax_error:"),
    ("x = " + "(" * 300 + ")" * 300 + "\n", "syntax_error:"),  # too deeply nested for the parser
    ("x = " + " + ".join(["1"] * 5000) + "\n", "syntax_error:RecursionError"),
    ("\ufeffx = 1\n", "syntax_error:SyntaxError"),
])
def test_syntax_check_reasons(src, reason):
    got, detail = syntax_check(src)
    assert got is not None and got.startswith(reason) and detail


@pytest.mark.fast
def test_syntax_check_never_executes():
    marker = Path("/tmp/swallow-should-not-exist")
    marker.unlink(missing_ok=True)
    assert syntax_check(f"open({str(marker)!r}, 'w').write('x')\n") == (None, None)
    assert not marker.exists()
