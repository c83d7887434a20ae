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
    from pipeline.run.verify import verify

    cfg = config(tmp_path, {"type": "exact_dedup", "partitions": 100_000})
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--output", str(out), "--executor", "inline", "--no-progress"]) == 0
    assert verify(out) == []
    work = out / "stages" / "02-exact_dedup" / "work"
    assert len(list(work.rglob("*.parquet"))) <= 10 and len(list((work / "reduce").glob("*.parquet"))) == 5
    assert "partitions 100000 > 5 input rows: using 5" in caplog.text
    assert main(["run", str(cfg), "--output", str(out), "--executor", "inline", "--no-progress"]) == 0  # resumes
    assert verify(out) == []


@pytest.mark.parametrize("stages,says", [
    ([{"type": "gopher_quality", "column": "body"}], "stages.gopher_quality.column: no column 'body' here"),
    ([{"type": "syntax_filter", "where": "lint_score > 7"}], "stages.syntax_filter.where: no column 'lint_score'"),
    ([{"type": "exact_dedup", "survivor": "highest", "survivor_column": "llm_score"}], "no column 'llm_score'"),
    ([{"type": "tokenize", "tokenizer": "x", "column": "text_before_rewrite"}], "no column 'text_before_rewrite'"),
])
def test_a_stage_reading_a_column_nothing_makes_is_a_config_error(tmp_path, stages, says):
    """Declared columns: what a stage reads (its ``column``, its ``where:``) must be made by the source or an
    earlier stage; the config fails to load, naming the stage's key and the columns that are there."""
    from pipeline.core.errors import ConfigError
    from pipeline.run.config import load_config

    raw = {"kind": "code", "source": {"type": "code", "paths": [str(tmp_path)]}, "stages": stages}
    with pytest.raises(ConfigError) as info:
        load_config(None, raw=raw)
    assert says in str(info.value) and "columns: " in str(info.value) and "\n" not in str(info.value)


def test_columns_made_by_an_earlier_stage_or_unknown_are_not_errors(tmp_path):
    from pipeline.run.config import load_config

    made = [{"type": "lint_filter"}, {"type": "syntax_filter", "where": "lint_score > 7"},
            {"type": "ruff_format"}, {"type": "length_filter", "column": "text_unformatted"}]
    load_config(None, raw={"kind": "code", "source": {"type": "code", "paths": [str(tmp_path)]}, "stages": made})
    # a records source's columns are known only from its files: nothing to check before reading them
    load_config(None, raw={"kind": "code", "source": {"type": "records", "paths": [str(tmp_path)]},
                           "stages": [{"type": "length_filter", "column": "anything"}]})


def test_a_stage_returning_a_column_it_does_not_declare_fails_loudly():
    from pipeline.core.verdict import Verdict
    from pipeline.phases.apply import safe_process
    from stages.filters.syntax import SyntaxFilter

    class Sneaky(SyntaxFilter):
        def process(self, table, ctx=None):
            return Verdict([None] * len(table), columns={"surprise": [1] * len(table)})

    with pytest.raises(AssertionError, match="surprise"):
        safe_process(Sneaky(), pa.table({"id": ["a"], "text": ["x = 1\n"]}))


# ------------------------------------------------------------------ bounds on every input (issue 42 items 3 and 6)
def test_yaml_alias_bombs_are_refused(tmp_path):
    """A few hundred bytes of nested aliases (9^20 leaves when walked): refused while reading, in bounded time."""
    from pipeline.run.config import ConfigError, load_config

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"b{i}: &b{i} [" + ", ".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * 9) + "]\n" for i in range(20))
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    with pytest.raises(ConfigError, match="aliases"):
        load_config(path)


@pytest.mark.parametrize("key,value", [("stages.length_filter.max_chars", "10**18"), ("ray.num_cpus", "-1"),
                                       ("ray.object_store_memory", "1000000000000000000000"),
                                       ("stages.length_filter.num_cpus", "-1"),
                                       ("stages.length_filter.batch_size", "0")])
def test_numbers_out_of_range_are_config_errors(tmp_path, key, value):
    from pipeline.run.config import ConfigError, load_config

    raw = {"kind": "code", "source": {"type": "records", "paths": ["x.parquet"]},
           "stages": [{"type": "length_filter"}], "export": {"enabled": False}}
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        load_config(None, [f"{key}={10**18 if value == '10**18' else value}"], raw=raw)


def test_a_where_with_a_huge_number_is_refused_at_load():
    from pipeline.run.config import ConfigError, load_config

    raw = {"kind": "code", "source": {"type": "records", "paths": ["x.parquet"]},
           "stages": [{"type": "length_filter", "where": "lint_score > 12345678901234567890123456"}],
           "export": {"enabled": False}}
    with pytest.raises(ConfigError, match="out of range"):
        load_config(None, raw=raw)


def test_a_huge_prompt_file_is_refused(tmp_path):
    from stages.rewrite.prompts import load_prompt

    path = tmp_path / "huge.yaml"
    path.write_text("name: huge\nuser: |\n" + "  line {text}\n" * 1_000_000)
    with pytest.raises(ValueError, match="a prompt file is at most"):
        load_prompt(str(path))
