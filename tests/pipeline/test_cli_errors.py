"""Errors a person can act on: one line naming the thing and what to do, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import ROOT


def swallow(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture
def records(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": ["x = 1\n", "y = 2\n"], "path": ["a.py", "b.py"], "repo": ["r", "r"],
                             "license": ["mit", "mit"], "blob_id": ["a", "b"]}), src)
    return src


def config(tmp_path, src, stages, **extra):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"kind": "code", "source": {"type": "code", "paths": [str(src)]},
                                   "stages": stages, "export": {"enabled": False}, "plugins": ["tests.helpers"],
                                   **extra}))
    return cfg


def one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert err and all(line.startswith("error: ") for line in err), err
    for n in needles:
        assert any(n in line for line in err), (n, err)
    return err


@pytest.mark.parametrize("stages,needles", [
    ([{"type": "rewrite", "prompt": "code_sgcr", "model": "./models/not-there"}],
     ["stage 'rewrite'", "model './models/not-there'", "no such model directory"]),
    ([{"type": "tokenize", "tokenizer": "/nonexistent/tokenizer.json"}],
     ["tokenizer '/nonexistent/tokenizer.json'", "no such tokenizer"]),
    ([{"type": "language_id", "model": "lid/lid.176.bin"}], ["model 'lid/lid.176.bin'"]),
    ([{"type": "lint_filter", "min_scor": 7}], ["stages.lint_filter.min_scor: unknown key"]),
    ([{"type": "lint_filter", "batch_size": 0}], ["stages.lint_filter.batch_size", "greater than or equal to 1"]),
    ([{"type": "lint_filter", "timeout_s": -5}], ["stages.lint_filter.timeout_s", "greater than 0"]),
    ([{"type": "syntax_filter", "num_cpus": 0}], ["stages.syntax_filter.num_cpus"]),
    ([{"type": "test_needs_package"}], ["needs the Python package 'surely_not_an_installed_package'",
                                        "pip install -e '.[web]'"]),
    ([{"type": "nope"}], ["stages.nope.type: unknown stage type 'nope'"]),
])
def test_config_and_preflight_errors(tmp_path, records, stages, needles):
    """Checked before any work (no Ray started, no output written)."""
    proc = swallow("run", str(config(tmp_path, records, stages)), "--output", str(tmp_path / "run"), "--no-progress")
    one_line_error(proc, *needles)
    assert not (tmp_path / "run" / "stages").exists()


def test_unreadable_input_and_missing_config(tmp_path, records):
    one_line_error(swallow("run", str(tmp_path / "nope.yaml")), "config file", "does not exist")
    one_line_error(swallow("run", str(config(tmp_path, tmp_path / "missing.parquet", [{"type": "syntax_filter"}])),
                           "--output", str(tmp_path / "r")), "missing.parquet", "does not exist")


def test_resources_the_cluster_cannot_give(tmp_path, records):
    """A GPU stage on a machine without GPUs, a worker larger than any node: one line each, after Ray starts."""
    cfg = config(tmp_path, records, [{"type": "test_slow", "num_gpus": 1, "delay_s": 0}],
                 ray={"num_cpus": 2, "num_gpus": 0, "object_store_memory": 200_000_000})
    one_line_error(swallow("run", str(cfg), "--output", str(tmp_path / "g"), "--no-progress"),
                   "needs 1 GPU per worker", "the cluster has 0")
    cfg = config(tmp_path, records, [{"type": "test_slow", "num_cpus": 64, "delay_s": 0}],
                 ray={"num_cpus": 2, "object_store_memory": 200_000_000})
    one_line_error(swallow("run", str(cfg), "--output", str(tmp_path / "c"), "--no-progress"),
                   "needs 64 CPUs per worker", "stages.test_slow.num_cpus")


def test_debug_shows_the_traceback(tmp_path, records):
    proc = swallow("--debug", "run", str(config(tmp_path, records, [{"type": "nope"}])))
    assert proc.returncode != 0 and "Traceback" in proc.stderr
