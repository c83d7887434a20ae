"""The report of a real small run with a rewrite stage on the tiny model: its content (every stage, every reason,
histograms, before/after, the corpus escaped) and the page in headless Chromium (no failed request, no console
error)."""

from __future__ import annotations

import os
import re

import pytest

from tests.browser import chromium_missing, open_page
from tests.conftest import CPU_ENGINE, write_sample

PLANTED = "banner = \"<script>alert('planted')</script>\"\n"
ANSWER = r"(### Score\nScore: [5-8]/10\n### Improved code\n```python\ndef (solve|main)\(data\):\n    return data \+ [1-9]\n```\n|I will not rewrite this\.)"


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, corpus_rows, tiny_model, ray_session):
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    tmp = tmp_path_factory.mktemp("report")
    rows = [r for r in corpus_rows if 50 < len(r["content"]) < 400][:12]
    rows.insert(0, dict(rows[0], content=PLANTED, blob_id="planted", path="planted.py"))
    rows.append(dict(rows[1], content="def broken(:\n", blob_id="broken"))  # syntax_error
    rows.append(dict(rows[1], blob_id="copy"))  # exact_duplicate
    rows.append(dict(rows[2], content="value = compute(value)\n" * 300, blob_id="long"))  # prompt_too_long
    src = write_sample(rows, tmp / "in.parquet", row_group_size=4)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 1},
           "stages": [{"type": "exact_dedup", "normalize": "none"}, {"type": "syntax_filter"},
                      {"type": "rewrite", "name": "sgcr", "prompt": "code_sgcr", "model": str(tiny_model),
                       "concurrency": 1, "check_syntax": True, "max_tokens": 80, "guided_regex": ANSWER,
                       **CPU_ENGINE}],
           "export": {"enabled": True, "license": "mit"}}
    summary = run_pipeline(load_config(None, raw=raw), tmp / "run", progress=False)
    return tmp / "run", summary


@pytest.mark.shared_data
@pytest.mark.vllm
def test_report_content(report_run):
    from pipeline.ledger import collect_stats

    run_dir, summary = report_run
    page = (run_dir / "report.html").read_text()
    assert summary["report"] == str(run_dir / "report.html")  # written by the run itself
    stats = collect_stats(run_dir)["stages"]
    for s in stats:
        assert f">{s['stage']}<" in page
        for reason in s["reasons"]:
            assert f"<code>{reason}</code>" in page
    reasons = {r.split(":")[0] for s in stats for r in s["reasons"]}  # syntax_error:SyntaxError → syntax_error
    assert {"exact_duplicate", "syntax_error", "prompt_too_long"} <= reasons
    assert "Before and after" in page and "<h3>sgcr</h3>" in page
    assert "planted" in page and "<script>alert(" not in page and "&lt;script&gt;alert(" in page
    assert "<script" not in page.lower()  # the page itself runs no script
    for measured in ("sgcr_self_score", "sgcr_output_tokens"):
        assert f"{measured} (n=" in page  # a histogram per measured column
    # nothing to fetch: no attribute or stylesheet names an outside resource (URLs in the corpus text are text)
    assert not re.search(r"""(src|href|action|data)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|@import""",
                         page, re.I)
    assert "<rdf:" not in page  # no matplotlib metadata block (a date, outside namespaces)
    assert "code_sgcr" in page and "vllm" in page  # prompts and versions


@pytest.mark.shared_data
@pytest.mark.vllm
def test_report_opens_in_headless_chromium(report_run, tmp_path):
    why = chromium_missing()
    if why:
        if os.environ.get("SWALLOW_REQUIRE_BROWSER"):  # .ci/run: this test must run there
            pytest.fail(why)
        pytest.skip(why)
    run_dir, _ = report_run
    got = open_page(run_dir / "report.html", tmp_path / "report.png")
    assert got["ready"] == "complete" and got["title"].startswith("run — swallow report")
    assert got["svg"] >= 3 and got["height"] > 1500
    assert got["failed"] == [] and got["console"] == []
    assert got["requests"] == [got["url"]]  # the page itself and nothing else
    assert (tmp_path / "report.png").stat().st_size > 20_000
