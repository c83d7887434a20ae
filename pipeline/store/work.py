"""A stage's work folder as storage: task markers (``work/PHASE/done/KEY.json``), side tables of a task
(``work/PHASE/KEY/NAME.parquet``), a partitioned phase's outputs and the inputs its scan recorded
(``work/inputs.json``). Reading only: the phases (``pipeline/phases/phase.py``) write them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store.shards import StageDir


def read_marker(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def side_file(stage_dir: StageDir, phase: str, key: str, name: str) -> Path:
    """Where a task of ``phase`` keeps a side table ``name`` (sealed with the task's other files)."""
    return stage_dir.work(phase) / key / f"{name}.parquet"


def read_side(stage_dir: StageDir, phase: str, key: str, name: str, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(side_file(stage_dir, phase, key, name), columns=columns)


def phase_outputs(stage_dir: StageDir, phase: str) -> list[Path]:
    """The files a partitioned phase wrote, one per task (``work/PHASE/KEY.parquet``), in key order."""
    return sorted(p for p in stage_dir.work(phase).glob("*.parquet") if not p.name.startswith(".tmp-"))


def recorded_inputs(stage_dir: StageDir) -> list[str]:
    """The input shards a multi-phase stage scanned, in order (a scan's shard index is a position here)."""
    return sorted(json.loads((stage_dir.path / "work" / "inputs.json").read_text()))
