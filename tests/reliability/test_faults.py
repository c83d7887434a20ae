"""Seeded SIGKILLs of the driver and of the workers (lint, lint server and children, exact/MinHash dedup scan and
reduce, tokenize, extraction sandbox, ...) at random moments of the code and the web pipelines; each faulted run
ends with exactly the kept rows, content hashes, rejection reasons and Megatron files of a clean run, and verifies.
The vLLM engine core is killed mid-shard in tests/stages/rewrite/test_streaming.py. A longer campaign:
``SWALLOW_FAULT_KILLS=30 pytest tests/reliability/test_faults.py -s``; its figures are in docs/reliability.md."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.run.verify import verify
from tests.faults import Campaign, differences, outcome, run_with_faults
from tests.reliability.configs import code_config, web_config

pytestmark = [pytest.mark.shared_data, pytest.mark.reliability]

#: kills per pipeline in the suite (SWALLOW_FAULT_KILLS raises it for a longer campaign)
KILLS = int(os.environ.get("SWALLOW_FAULT_KILLS", "10"))


def campaign(cfg, tmp_path, seed: int, **kw) -> dict[str, int]:
    """Faulted runs of ``cfg`` (each into a fresh folder, rerun after every driver kill until it ends) until
    ``KILLS`` kills have landed; each run's outcome must equal the clean run's. Returns the kills by role."""
    clean = tmp_path / "clean"
    run_with_faults(cfg, clean, seed=0, kills=0, log=tmp_path / "clean.log")
    assert verify(clean) == []
    expected = outcome(clean)
    kills: list = []
    runs = 0
    while len(kills) < KILLS:
        faulted = tmp_path / f"faulted{runs}"
        camp = run_with_faults(cfg, faulted, seed=seed + runs, kills=KILLS - len(kills),
                               log=tmp_path / f"faulted{runs}.log", **kw)
        runs += 1
        kills += camp.kills
        print(json.dumps({"config": cfg.name, "seed": seed + runs - 1, "kills": camp.kills,
                          "by_role": camp.by_role(), "attempts": camp.attempts, "wall_s": camp.wall_s}))
        assert verify(faulted) == []
        problems = differences(outcome(faulted), expected)
        assert not problems, (camp.kills, problems)
    return Campaign(kills=kills).by_role()


def test_code_pipeline_under_random_kills(tmp_path, corpus_rows):
    roles = campaign(code_config(tmp_path, corpus_rows), tmp_path, seed=15, gap_s=(2.0, 9.0))
    assert sum(n for r, n in roles.items() if r != "driver") >= KILLS // 3, roles  # workers too, not only the driver


def test_web_pipeline_under_random_kills(tmp_path):
    roles = campaign(web_config(tmp_path), tmp_path, seed=16)
    assert sum(n for r, n in roles.items() if r != "driver") >= KILLS // 3, roles
