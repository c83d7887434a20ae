"""Config errors end the run before the stage they concern reads a row, in one line naming the key: ``where:``
expressions that compare unlike things, mix literal kinds, nest 100,000 deep or name a missing column; and
``partitions`` far beyond the work is bounded by it (5 rows never make 100,000 files)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.fast

TEXTS = [f"value_{i} = {i}\n" for i in range(5)]


def config(tmp_path, stage: dict):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": TEXTS, "path": [f"m{i}.py" for i in range(5)]}), src)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"kind": "code", "source": {"type": "code", "paths": [str(src)]},
                                   "stages": [{"type": "length_filter"}, stage], "export": {"enabled": False}}))
    return cfg


@pytest.mark.parametrize("where,says", [
    ("text == 1", "text is a string and 1 a number"),
    ('text in [1, "a"]', "mixes number and string"),
    ("not " * 100_000 + "n_chars > 1", "characters; at most"),
    ("(" * 300 + "n_chars > 1" + ")" * 300, "nested"),
    ("not (" * 40 + "n_chars > 1" + ")" * 40, "nests too deeply"),
    ("n_chars", "not a condition"),
    ("n_words > 'ten'", "is a number and 'ten' a string"),
    ("missing_column > 1", "no column 'missing_column'"),
    ("n_chars == None", "use 'is None'"),
])
def test_a_bad_where_is_one_line_before_the_stage_reads_a_row(tmp_path, capsys, where, says):
    from pipeline.cli import main

    cfg = config(tmp_path, {"type": "syntax_filter", "where": where})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--output", str(out), "--executor", "inline", "--no-progress"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert ("stages.syntax_filter.where" in lines[0] or "where" in lines[0]) and says in lines[0], lines[0]
    assert not list((out / "stages").glob("02-*/done/*.json"))  # the stage finished nothing


def test_partitions_are_bounded_by_the_rows(tmp_path, caplog):
    from pipeline.cli import main
    from pipeline.ledger import verify

    cfg = config(tmp_path, {"type": "exact_dedup", "partitions": 100_000})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--output", str(out), "--executor", "inline", "--no-progress"]) == 0
    assert verify(out) == []
    work = out / "stages" / "02-exact_dedup" / "work"
    assert len(list(work.rglob("*.parquet"))) <= 10 and len(list((work / "reduce").glob("*.parquet"))) == 5
    assert "partitions 100000 > 5 input rows: using 5" in caplog.text
    assert main(["run", str(cfg), "--output", str(out), "--executor", "inline", "--no-progress"]) == 0  # resumes
    assert verify(out) == []
