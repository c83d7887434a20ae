"""A real local Ray cluster (`ray start --head`) and `ray job submit` of the pipeline's job entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.ledger import verify
from tests.conftest import ROOT, write_sample

pytestmark = [pytest.mark.shared_data, pytest.mark.ray_cluster]

RAY = str(Path(sys.executable).with_name("ray"))


def sh(*args, env=None, timeout=300):
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_ray_job_submit_runs_pipeline(tmp_path, corpus_rows):
    src = write_sample(corpus_rows[:120], tmp_path / "in.parquet")
    out = tmp_path / "run"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"kind": "code", "source": {"type": "code", "paths": [str(src)],
                                                               "shard_bytes": 100_000},
                                   "stages": [{"type": "syntax_filter"}]}))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS")
    temp_dir = Path("/tmp") / f"rayjob{os.getpid()}"  # short: unix socket paths are length-limited
    start = sh(RAY, "start", "--head", "--num-cpus=2", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
               "--object-store-memory=300000000", "--dashboard-host=127.0.0.1", "--dashboard-port=8265",
               f"--temp-dir={temp_dir}", env=env)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        job_env = {**env, "RAY_API_SERVER_ADDRESS": "http://127.0.0.1:8265"}
        sub = sh(RAY, "job", "submit", "--working-dir", ".", "--", "python", "jobs/run_pipeline.py", str(cfg),
                 "--output", str(out), "--no-progress", env=job_env, timeout=600)
        assert sub.returncode == 0, (sub.stdout + sub.stderr)[-4000:]
        assert "succeeded" in (sub.stdout + sub.stderr).lower()
    finally:
        sh(RAY, "stop", "--force", env=env)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert verify(out) == []
    assert (out / "dataset" / "data").exists() and (out / "dataset" / "README.md").exists()
