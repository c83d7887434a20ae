"""Reject a whole shard with one reason: what happens when a shard keeps killing its workers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa

from pipeline.execute import finish_shard, read_shard
from pipeline.records import conform, empty_table, make_id
from pipeline.shards import StageDir


def reject_all_shard(kind: str, in_path: Path | None, spec: dict | None, stage_dir: StageDir, shard: str,
                     stage_name: str, detail: str, reason: str = "worker_died") -> dict:
    t0 = time.time()
    if in_path is not None:
        table = read_shard(in_path, kind)
        ids = table.column("id").to_pylist()
    else:  # a source shard whose records could not be enumerated: one record stands for the whole shard
        locator = json.dumps(spec, sort_keys=True)
        table = conform(pa.table({"id": [make_id(locator, "shard")], "text": [None],
                                  "source_file": [locator[:1000]], "source_offset": [0]}), kind)
        ids = None
    n = len(table)
    rejected = table.append_column("reason", pa.array([reason] * n, pa.string()))
    rejected = rejected.append_column("stage", pa.array([stage_name] * n, pa.string()))
    rejected = rejected.append_column("detail", pa.array([detail[:2000]] * n, pa.string()))
    kept = table.schema.empty_table() if in_path is not None else empty_table(kind)
    return finish_shard(stage_dir, shard, stage_name, kept, rejected, n, ids, {"worker_died": True}, t0)
