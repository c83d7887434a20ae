"""Shard files of one stage: atomic writes, the completion marker, and reading a stage's finished shards.

Layout of a stage directory (``RUN/stages/NN-name/``)::

    kept/SHARD.parquet       rows that passed
    rejected/SHARD.parquet   rows that did not, plus ``reason``, ``stage``, ``detail``
    stats/SHARD.json         counters for the shard
    done/SHARD.json          completion marker, written last (row counts; size and SHA-256 of every file the
                             shard wrote: kept, rejected, stats and the stage's artefacts)
    work/PHASE/...           a multi-phase stage's intermediate files (scans, reduce outputs)
    work/PHASE/done/KEY.json completion marker of one task of that phase

Every file is written under a temporary name in the same directory and renamed, so a reader sees either
nothing or a whole file. A shard counts as finished only when its marker exists; a rerun redoes any shard
without one, overwriting partial files, so no record is ever written twice. The writers return the size and
SHA-256 of what they wrote (hashed from memory, not read back), and ``check_seal`` re-hashes: a file changed after
its marker, even by a same-size edit, is found by ``swallow verify`` and never read as a figure.
"""

from __future__ import annotations

import hashlib
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


def write_atomic_bytes(path: Path, data: bytes) -> dict[str, Any]:
    """Write ``data`` to ``path`` atomically (fsynced); its seal: ``{"bytes", "sha256"}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_json(path: Path, obj: Any) -> dict[str, Any]:
    return write_atomic_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def write_parquet(path: Path, table: pa.Table) -> dict[str, Any]:
    """Write ``table`` to ``path`` atomically; its seal, hashed from the serialised bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    tmp = atomic_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return {"bytes": data.size, "sha256": hashlib.sha256(memoryview(data)).hexdigest()}


def file_seal(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file on disk (read in 1 MB pieces)."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
            n += len(piece)
    return {"bytes": n, "sha256": h.hexdigest()}


def seal(root: Path, paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Seals of ``paths`` (folders: every file under them), keyed by path relative to ``root``."""
    out = {}
    for p in paths:
        files = sorted(f for f in Path(p).rglob("*") if f.is_file() and not is_temporary(f)) if Path(p).is_dir() \
            else [Path(p)]
        for f in files:
            out[str(f.relative_to(root))] = file_seal(f)
    return out


def check_seal(root: Path, files: dict[str, Any], where: str) -> list[str]:
    """Problems of the files a marker sealed (``files``: path relative to ``root`` -> seal; a bare size from a run
    written before seals existed is checked as a size)."""
    problems = []
    for rel, want in files.items():
        path = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or any(
                (root / Path(*Path(rel).parts[:i + 1])).is_symlink() for i in range(len(Path(rel).parts))):
            problems.append(f"{where}: its marker names {rel!r}, which is outside the run or through a link "
                            f"(not read)")
            continue
        if not path.is_file():
            problems.append(f"{where}: {rel} is missing")
            continue
        if isinstance(want, int):
            if path.stat().st_size != want:
                problems.append(f"{where}: {rel} is {path.stat().st_size} bytes, its marker says {want}")
            continue
        got = file_seal(path)
        if got != want:
            what = "size" if got["bytes"] != want["bytes"] else "content (same size)"
            problems.append(f"{where}: {rel} changed after the task finished ({what} differs from its marker)")
    return problems


class TamperedError(RuntimeError):
    """A file differs from what its completion marker sealed: it was changed after the task finished."""


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

    def artifact(self, folder: str, shard: str) -> Path:
        """Where a stage keeps a shard's own files (``folder/SHARD`` plus the stage's suffixes, e.g. Megatron's
        ``.bin``/``.idx``); the shard's marker seals what the stage reports writing there."""
        return self.path / folder / shard

    def is_done(self, shard: str) -> bool:
        return self.file(DONE, shard).exists()

    def shard_files(self, shard: str) -> dict[str, Any]:
        """The seals a finished shard's marker holds, by path relative to the stage folder."""
        files = self.marker(shard)["files"]
        return {(f"{k}/{shard}.{'parquet' if k in (KEPT, REJECTED) else 'json'}" if k in (KEPT, REJECTED, STATS)
                 else k): v for k, v in files.items()}

    def check_shard(self, shard: str) -> list[str]:
        """Problems of a finished shard's files against its marker's seals (empty: as written)."""
        return check_seal(self.path, self.shard_files(shard), f"{self.path.name}/{shard}")

    def verified(self, part: str, shard: str) -> Path:
        """A finished shard's ``part`` file, after checking it against its marker; TamperedError otherwise."""
        rel = f"{part}/{shard}.{'parquet' if part in (KEPT, REJECTED) else 'json'}"
        want = self.marker(shard)["files"].get(part)
        problems = check_seal(self.path, {rel: want}, f"{self.path.name}/{shard}") if want is not None else \
            [f"{self.path.name}/{shard}: its marker seals no {part} file"]
        if problems:
            raise TamperedError(problems[0] + "; run `swallow verify` (use a fresh run, or delete the stage folder)")
        return self.path / rel

    def verified_stats(self, shard: str) -> dict:
        """The shard's stats, only when they are what the shard wrote (TamperedError otherwise)."""
        return json.loads(self.verified(STATS, shard).read_text())

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

    def config_sha256(self) -> str | None:
        """SHA-256 of ``stage.json``: what every marker of the stage records (the config its shards ran with)."""
        p = self.path / "stage.json"
        return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


def _markers(folder: Path) -> list[str]:
    """Names of the completion markers in ``folder`` (never a temporary file)."""
    if not folder.exists():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if not is_temporary(p))
