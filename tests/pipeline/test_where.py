"""``where:`` on any stage: the expression grammar against plain Python on the same rows, its refusals, and the
pass-through through the real per-shard executor path (rows outside pass unchanged and kept, counted)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from pipeline.core.where import WhereError, columns, mask


def rows(n=400, seed=0):
    rng = random.Random(seed)
    return [{"llm_score": rng.choice([None, *range(11)]), "language": rng.choice(["python", "c", None]),
             "n_tokens": rng.randrange(0, 500), "ok": rng.choice([True, False])} for _ in range(n)]


def score(r):
    return r["llm_score"]


# each expression beside its meaning in plain Python (a comparison with a null operand is false)
CASES = [
    ("llm_score < 8", lambda r: score(r) is not None and score(r) < 8),
    ("3 <= llm_score < 8", lambda r: score(r) is not None and 3 <= score(r) < 8),
    ("llm_score >= 8 or n_tokens > 400", lambda r: (score(r) is not None and score(r) >= 8) or r["n_tokens"] > 400),
    ("not (llm_score < 3)", lambda r: not (score(r) is not None and score(r) < 3)),
    ("language == 'python' and n_tokens > 100", lambda r: r["language"] == "python" and r["n_tokens"] > 100),
    ("language in ['python', 'c']", lambda r: r["language"] in ("python", "c")),
    ("language not in ['c']", lambda r: r["language"] not in ("c",)),
    ("llm_score is None", lambda r: score(r) is None),
    ("llm_score is not None and llm_score != 5", lambda r: score(r) is not None and score(r) != 5),
    ("ok", lambda r: r["ok"]),
    ("not ok and n_tokens <= 10", lambda r: not r["ok"] and r["n_tokens"] <= 10),
    ("n_tokens > -1 and n_tokens < 250", lambda r: -1 < r["n_tokens"] < 250),
    ("llm_score == n_tokens", lambda r: score(r) is not None and score(r) == r["n_tokens"]),
    ("(llm_score < 3 or llm_score > 7) and not ok", lambda r: score(r) is not None and (score(r) < 3 or score(r) > 7)
     and not r["ok"]),
]


@pytest.mark.fast
@pytest.mark.parametrize("expr,meaning", CASES, ids=[c[0] for c in CASES])
def test_mask_equals_python(expr, meaning):
    data = rows()
    got = mask(expr, pa.Table.from_pylist(data)).to_pylist()
    assert got == [bool(meaning(r)) for r in data]
    assert 0 < sum(got) < len(data)  # the expression really splits the rows


@pytest.mark.fast
@pytest.mark.parametrize("expr,message", [
    ("__import__('os').system('x')", "Call is not allowed"),
    ("llm_score.real > 1", "Attribute is not allowed"),
    ("llm_score +", "not an expression"),
    ("[x for x in y]", "is not allowed"),
    ("-llm_score < 1", "number literals only"),
])
def test_refused_expressions(expr, message):
    with pytest.raises(WhereError, match=message):
        columns(expr)


@pytest.mark.fast
def test_missing_column_and_non_condition():
    table = pa.table({"a": [1, 2]})
    with pytest.raises(WhereError, match="no column 'b'"):
        mask("b > 1", table)
    with pytest.raises(WhereError, match="not a condition"):
        mask("a", table)


@pytest.mark.fast
def test_config_error_names_the_key():
    from pipeline.run.config import ConfigError, load_config

    raw = {"kind": "code", "source": {"type": "code", "paths": ["x.parquet"]},
           "stages": [{"type": "syntax_filter", "where": "open('x')"}]}
    with pytest.raises(ConfigError, match=r"stages\.syntax_filter\.where.*Call is not allowed"):
        load_config(None, raw=raw)


@pytest.mark.fast
def test_rows_outside_where_pass_through_kept_and_counted(tmp_path):
    """A syntax filter that only looks at rows with n >= 2: the broken row with n = 1 passes through."""
    import pyarrow.parquet as pq

    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": ["x = 1\n", "def (:\n", "def (:\n", "y = 2\n"], "path": ["a.py", "b.py", "c.py", "d.py"],  # noqa: E501
                             "repo": ["r"] * 4, "license": ["mit"] * 4, "blob_id": list("abcd")}), src)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)]},
           "stages": [{"type": "syntax_filter", "where": "path != 'b.py'"}], "export": {"enabled": False}}
    run_pipeline(load_config(None, raw=raw), tmp_path / "run", progress=False, executor="inline")
    assert verify(tmp_path / "run") == []
    st = collect_stats(tmp_path / "run")["stages"][1]
    assert st["in"] == 4 and st["kept"] == 3 and st["reasons"] == {"syntax_error:SyntaxError": 1}
    assert st["counters"]["passed_through"] == 1
    kept = pa.concat_tables([pq.read_table(f) for f in (tmp_path / "run" / "stages" / "01-syntax_filter" /
                                                         "kept").glob("*.parquet")], promote_options="default")
    assert sorted(kept.column("path").to_pylist()) == ["a.py", "b.py", "d.py"]
    assert next(r for r in kept.to_pylist() if r["path"] == "b.py")["text"] == "def (:\n"  # unchanged


@pytest.mark.fast
def test_a_global_stage_takes_no_where():
    from pipeline.run.config import ConfigError, load_config

    raw = {"kind": "code", "source": {"type": "code", "paths": ["x.parquet"]},
           "stages": [{"type": "exact_dedup", "where": "n_tokens > 1"}]}
    with pytest.raises(ConfigError, match=r"stages\.exact_dedup\.where.*decides over all rows"):
        load_config(None, raw=raw)
