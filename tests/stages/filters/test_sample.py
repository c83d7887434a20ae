"""The sample stage: the same rows on every rerun and under any sharding, a rate or an exact count."""

from __future__ import annotations

import pytest

from tests.helpers import rows_of

pytestmark = pytest.mark.fast


def run(tmp_path, name: str, shard_bytes: int, sample: dict, rows: int = 300, files: int = 12) -> tuple[set, set]:
    """``rows`` documents in ``files`` files (the same files, so the same ids, in every run), one shard per file
    (``shard_bytes`` 1) or all in one."""
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify

    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for f in range(files):
        (folder / f"{f:03d}.jsonl").write_text("".join(f'{{"id": "doc-{i}", "text": "document number {i}"}}\n'
                                                       for i in range(rows) if i % files == f))
    raw = {"kind": "web", "source": {"type": "documents", "paths": [str(folder)], "shard_bytes": shard_bytes},
           "stages": [{"type": "sample", **sample}], "export": {"enabled": False}}
    out = tmp_path / name
    run_pipeline(load_config(None, raw=raw), out, progress=False, executor="inline")
    assert verify(out) == []
    kept = {r["id"] for r in rows_of(out, "01-sample", "kept")}
    rejected = rows_of(out, "01-sample", "rejected")
    assert {r["reason"] for r in rejected} <= {"not_sampled"}
    return kept, {r["id"] for r in rejected}


def test_the_same_rows_under_any_sharding(tmp_path):
    a, ra = run(tmp_path, "a", 10**9, {"count": 25})
    b, rb = run(tmp_path, "b", 1, {"count": 25})
    assert a == b and len(a) == 25 and len(a | ra) == 300
    c, _ = run(tmp_path, "c", 10**9, {"rate": 0.2})
    d, _ = run(tmp_path, "d", 1, {"rate": 0.2})
    assert c == d and 30 < len(c) < 90
    e, _ = run(tmp_path, "e", 1, {"rate": 0.2, "seed": 7})
    assert e != c  # another seed, another sample


def test_one_of_rate_or_count():
    from stages.filters.sample import Sample

    with pytest.raises(ValueError, match="exactly one"):
        Sample()
    with pytest.raises(ValueError, match="exactly one"):
        Sample(rate=0.1, count=3)
    with pytest.raises(ValueError):
        Sample(rate=1.5)


def test_a_stratified_count_shares_the_ranges(tmp_path):
    """A labelling sample over a skewed score: 90 % of the rows below 0.2, yet each range gets its share."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify

    score = [((i % 10) / 100 if i % 10 else 0.9 - (i % 7) / 20) for i in range(400)]  # 360 low, 40 spread high
    score[3] = None  # no value: never sampled
    parts = []
    for k in range(4):
        parts.append(str(tmp_path / f"p{k}.parquet"))
        pq.write_table(pa.table({"id": [f"d{i}" for i in range(100 * k, 100 * k + 100)],
                                 "text": ["x"] * 100, "math_score": score[100 * k: 100 * k + 100]}), parts[-1])
    sample = {"type": "sample", "count": 30, "stratify_by": "math_score", "strata": [0, 0.2, 0.5, 1.0]}
    out = tmp_path / "run"
    run_pipeline(load_config(None, raw={"kind": "web", "source": {"type": "records", "paths": parts},
                                        "stages": [sample], "export": {"enabled": False}}),
                 out, progress=False, executor="inline")
    assert verify(out) == []
    kept = rows_of(out, "01-sample", "kept")
    got = sorted(r["math_score"] for r in kept)
    low = [s for s in got if s < 0.2]
    mid = [s for s in got if 0.2 <= s < 0.5]
    high = [s for s in got if s >= 0.5]
    n_mid = sum(1 for s in score if s is not None and 0.2 <= s < 0.5)
    assert len(low) == 10 and len(mid) == min(10, n_mid) and len(high) == 10, (len(low), len(mid), len(high))
    from stages.filters.sample import Sample

    with pytest.raises(ValueError, match="give count"):
        Sample(rate=0.5, stratify_by="x", strata=[0, 1])
    with pytest.raises(ValueError, match="ascending"):
        Sample(count=5, stratify_by="x", strata=[1, 0])
