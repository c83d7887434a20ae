"""Redoing a stage redoes everything after it: a later stage's finished shards record the seal of the input they
read, and a run whose earlier stage was redone (its folder deleted, its config changed) redoes the later ones
instead of ending with stale verdicts that verify rejects."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import kept_ids

pytestmark = pytest.mark.fast


def raw(src, min_chars: int) -> dict:
    return {"kind": "code", "source": {"type": "records", "paths": [str(src)]},
            "stages": [{"type": "length_filter", "name": "first", "min_chars": min_chars},
                       {"type": "length_filter", "name": "second", "max_chars": 60},
                       {"type": "exact_dedup", "name": "third"}], "export": {"enabled": False}}


def test_a_redone_stage_redoes_the_stages_after_it(tmp_path, caplog):
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify

    src = tmp_path / "in.parquet"
    texts = [("x" * (i % 50 + 1)) for i in range(120)]
    pq.write_table(pa.table({"id": [f"r{i:03d}" for i in range(120)], "text": texts}), src)
    run = tmp_path / "run"
    run_pipeline(load_config(None, raw=raw(src, 10)), run, progress=False, executor="inline")
    assert verify(run) == []
    # the user changes the first stage and deletes its folder, as the error for a changed config tells them to
    shutil.rmtree(run / "stages" / "01-first")
    run_pipeline(load_config(None, raw=raw(src, 30)), run, progress=False, executor="inline")
    assert verify(run) == []
    # the chained second stage redid each shard whose input changed; the global third stage was redone whole
    assert "redoing 03-third" in caplog.text
    from pipeline.phases.apply import stale_shards
    from pipeline.run.runner import contexts

    assert all(stale_shards(ctx) == [] for ctx in contexts(run, load_config(None, raw=raw(src, 30)))[1:])
    fresh = tmp_path / "fresh"
    run_pipeline(load_config(None, raw=raw(src, 30)), fresh, progress=False, executor="inline")
    assert kept_ids(run) == kept_ids(fresh) and len(kept_ids(fresh)) < len(set(texts))
