import pyarrow as pa
import pytest

from pipeline.core.records import SchemaError, check_schema, conform, make_id

pytestmark = pytest.mark.fast


def test_ids_are_deterministic_and_distinct():
    assert make_id("a.parquet", 3) == make_id("a.parquet", 3)
    assert len({make_id("a.parquet", i) for i in range(1000)}) == 1000
    assert make_id("a.parquet", 1) != make_id("b.parquet", 1)


def test_schema_check_names_shard_and_column():
    t = conform(pa.table({"id": ["x"], "text": ["t"], "source_file": ["f"], "source_offset": [0]}), "code")
    check_schema(t.schema, "code", "s.parquet")
    with pytest.raises(SchemaError, match="s.parquet: missing column 'repo'"):
        check_schema(t.drop_columns(["repo"]).schema, "code", "s.parquet")
    bad = t.set_column(t.column_names.index("source_offset"), "source_offset", pa.array(["0"]))
    with pytest.raises(SchemaError, match="column 'source_offset' has type string"):
        check_schema(bad.schema, "code", "s.parquet")
