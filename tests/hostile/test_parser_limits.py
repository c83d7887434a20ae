"""Nothing is dropped silently by a parser limit, and no label breaks the report: a page whose ``math/tex`` script
is longer than libxml2's 10,000,000-byte text node is rejected (``parser_limit``) instead of kept without that
formula and every word after it; a ``$`` in a column name is a dollar sign in the report's plots; a report that
fails anyway is one line, never the run's failure."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run.config import load_config
from pipeline.run.verify import verify
from pipeline.view.report import run_with_report

pytestmark = pytest.mark.fast

PARA = "<p>" + "This is a long sentence of ordinary words in a paragraph of the page. " * 20 + "</p>"


def page(formula_chars: int) -> str:
    return ("<html><body><article>" + PARA + '<p>Formula: <script type="math/tex">' + "x+" * (formula_chars // 2) +
            "1</script> after the formula.</p>" + PARA.replace("ordinary", "closing") + "</article></body></html>")


def test_a_text_node_over_the_parser_limit_is_a_reason():
    from stages.extract.html import Extract

    stage = Extract(timeout_s=120)
    stage.setup()
    try:
        table = pa.table({"id": ["small", "huge", "after"], "text": [None] * 3,
                          "html": [page(1000), page(10_500_000), page(2000)]})
        v = stage.process(table)
    finally:
        stage.teardown()
    assert v.reasons == [None, "parser_limit", None], v.details
    texts = v.columns["text"].to_pylist()
    assert "closing" in texts[0] and "after the formula" in texts[0] and "closing" in texts[2]
    assert "XML_PARSE_HUGE" in v.details[1] or "limit" in v.details[1]


def test_dollar_signs_in_names_are_plain_text_and_a_failing_report_is_one_line(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": [f"v{i} = {i}\n" for i in range(20)], "path": [f"m{i}.py" for i in range(20)],
                             "cost $x^{": [float(i) for i in range(20)], "$$": [i % 3 for i in range(20)]}), src)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "keep_columns": ["cost $x^{", "$$"]},
           "stages": [{"type": "length_filter", "min_chars": 7}], "export": {"license": "mit"}}
    out = tmp_path / "run"
    summary = run_with_report(load_config(None, raw=raw), out, progress=False, executor="inline")
    assert verify(out) == [] and "report_error" not in summary
    html = (out / "report.html").read_text()
    assert "cost $x^{" in html and "$$" in html  # drawn as they are

    import pipeline.view.report

    def broken(*a, **k):
        raise RuntimeError("the plotting library broke")

    monkeypatch.setattr(pipeline.view.report, "write_report", broken)
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["run", str(cfg), "--output", str(tmp_path / "run2"), "--executor", "inline", "--no-progress"]) == 0
    out_text = capsys.readouterr()
    assert "report: not written (RuntimeError: the plotting library broke); the run is complete" in out_text.out
    assert verify(tmp_path / "run2") == []
