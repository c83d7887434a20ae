"""Shard files of one stage: atomic writes, the completion marker, and reading a stage's finished shards.

Layout of a stage directory (``RUN/stages/NN-name/``)::

    kept/SHARD.parquet       rows that passed
    rejected/SHARD.parquet   rows that did not, plus ``reason``, ``stage``, ``detail``
    stats/SHARD.json         counters for the shard
    done/SHARD.json          completion marker, written last (row counts and file sizes)
    work/PHASE/...           a multi-phase stage's intermediate files (scans, reduce outputs)
    work/PHASE/done/KEY.json completion marker of one task of that phase

Every file is written under a temporary name in the same directory and renamed, so a reader sees either
nothing or a whole file. A shard counts as finished only when its marker exists; a rerun redoes any shard
without one, overwriting partial files, so no record is ever written twice.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

KEPT, REJECTED, STATS, DONE = "kept", "rejected", "stats", "done"


TMP_PREFIX = ".tmp-"


def atomic_path(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


def is_temporary(path: Path | str) -> bool:
    return Path(path).name.startswith(TMP_PREFIX)


def write_atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def clean_temp(stage_dir: Path) -> int:
    """Remove temporary files a killed run left behind; return how many."""
    n = 0
    if stage_dir.exists():
        for p in stage_dir.rglob(".tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
    return n


class StageDir:
    """Paths and queries for one stage's output directory."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name.split("-", 1)[1] if "-" in self.path.name else self.path.name

    def file(self, part: str, shard: str) -> Path:
        """``part`` is kept, rejected, stats or done."""
        ext = "parquet" if part in (KEPT, REJECTED) else "json"
        return self.path / part / f"{shard}.{ext}"

    def is_done(self, shard: str) -> bool:
        return self.file(DONE, shard).exists()

    def done_shards(self) -> list[str]:
        return _markers(self.path / DONE)

    # -- phases of multi-phase stages ----------------------------------------------------------------------
    def work(self, phase: str) -> Path:
        return self.path / "work" / phase

    def phase_marker(self, phase: str, key: str) -> Path:
        return self.work(phase) / DONE / f"{key}.json"

    def phase_done(self, phase: str) -> list[str]:
        return _markers(self.work(phase) / DONE)

    def marker(self, shard: str) -> dict:
        return json.loads(self.file(DONE, shard).read_text())

    def stats(self, shard: str) -> dict:
        return json.loads(self.file(STATS, shard).read_text())

    def config(self) -> dict | None:
        p = self.path / "stage.json"
        return json.loads(p.read_text()) if p.exists() else None


def _markers(folder: Path) -> list[str]:
    """Names of the completion markers in ``folder`` (never a temporary file)."""
    if not folder.exists():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if not is_temporary(p))
