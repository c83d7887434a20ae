"""Every row a verdict in bounded time: a row that never finishes is ``row_timeout``, its neighbours are judged as
ever, and the run goes on (pipeline/proc/row_budget.py), inline and on Ray, in pure Python and inside the C regex
engine."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import rows_of


def hang_run(tmp_path, executor: str, how: str):
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify

    texts = [f"row {i}" for i in range(12)] + ["HANG here", "and HANG there"]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"r{i:02d}" for i in range(len(texts))], "text": texts}), src)
    raw = {"kind": "code", "source": {"type": "records", "paths": [str(src)]},
           "stages": [{"type": "test_hangs", "how": how, "row_timeout_s": 0.5, "batch_size": 5}],
           "export": {"enabled": False}, "plugins": ["tests.helpers"]}
    out = tmp_path / f"{executor}-{how}"
    run_pipeline(load_config(None, raw=raw), out, progress=False, executor=executor)
    assert verify(out) == []
    kept = {r["id"] for r in rows_of(out, "01-test_hangs", "kept")}
    rejected = {r["id"]: r["reason"] for r in rows_of(out, "01-test_hangs", "rejected")}
    assert kept == {f"r{i:02d}" for i in range(12)}
    assert rejected == {"r12": "row_timeout", "r13": "row_timeout"}


@pytest.mark.fast
@pytest.mark.parametrize("how", ["loop", "regex"])
def test_a_hanging_row_is_row_timeout_inline(tmp_path, how):
    hang_run(tmp_path, "inline", how)


def test_a_hanging_row_is_row_timeout_on_ray(tmp_path, ray_session):
    hang_run(tmp_path, "ray", "loop")


@pytest.mark.fast
def test_the_budget_is_checked_at_load():
    from pipeline.run.config import ConfigError, load_config

    raw = {"kind": "code", "source": {"type": "records", "paths": ["x.parquet"]},
           "stages": [{"type": "length_filter", "row_timeout_s": -1}], "export": {"enabled": False}}
    with pytest.raises(ConfigError, match="row_timeout_s"):
        load_config(None, raw=raw)
