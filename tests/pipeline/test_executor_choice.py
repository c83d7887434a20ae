"""The executor is chosen for the run: a small local run goes inline (Ray's start would cost more than the work),
a cluster, a GPU stage or more work goes to Ray, and the choice is said."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run.config import load_config
from pipeline.run.executor import choose

pytestmark = pytest.mark.fast


def cfg(tmp_path, stages, rows=50, **extra):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(rows)], "text": ["x = 1\n" * 20] * rows}), src)
    return load_config(None, raw={"kind": "code", "source": {"type": "records", "paths": [str(src)]},
                                  "stages": stages, "export": {"enabled": False}, **extra})


def test_a_small_local_run_goes_inline_and_says_why(tmp_path, monkeypatch, caplog):
    from pipeline.run.runner import run_pipeline

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    c = cfg(tmp_path, [{"type": "length_filter"}, {"type": "syntax_filter"}])
    name, why = choose.choose_executor(c)
    assert name == "inline" and "small local run" in why
    caplog.set_level(logging.INFO, logger="swallow")
    summary = run_pipeline(c, tmp_path / "run", progress=False, executor="auto")
    assert "executor: inline" in caplog.text and summary["executor"].startswith("inline (a small local run")


def test_clusters_gpus_and_large_work_go_to_ray(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    small = cfg(tmp_path, [{"type": "length_filter"}])
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert choose.choose_executor(small)[0] == "ray"
    monkeypatch.delenv("RAY_ADDRESS")
    assert choose.choose_executor(cfg(tmp_path, [{"type": "length_filter", "num_gpus": 1}]))[0] == "ray"
    monkeypatch.setattr(choose, "input_mb", lambda source: 500.0)
    assert choose.choose_executor(small)[0] == "ray"
    assert choose.choose_executor(cfg(tmp_path, [{"type": "lint_filter"}]))[0] == "ray"  # 500 MB of pylint
