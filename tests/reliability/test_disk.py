"""A full disk and a read-only output folder (a tmpfs the test mounts, root needed): the run stops with one line
naming the file and what to do (exit code 2, no traceback), nothing half-written is taken for finished, and the
rerun after freeing space (or making the folder writable) completes and equals a clean run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.run.verify import verify
from tests.faults import ROOT, differences, outcome

pytestmark = [pytest.mark.shared_data, pytest.mark.reliability]


def mount(point: Path, *options: str) -> None:
    point.mkdir(exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(point)], capture_output=True,
                       text=True)
    if r.returncode:
        if os.environ.get("SWALLOW_REQUIRE_MOUNT"):
            pytest.fail(f"cannot mount a tmpfs: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (root needed): {r.stderr.strip()}")


def remount(point: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(("remount", *options)), str(point)], check=True)


@pytest.fixture
def disk(tmp_path):
    point = tmp_path / "disk"
    mount(point, "size=4m")
    yield point
    subprocess.run(["umount", "-l", str(point)])


def config(tmp_path: Path, corpus_rows) -> Path:
    from tests.conftest import write_sample

    src = write_sample([r for r in corpus_rows if 500 < len(r["content"]) < 20000][:900], tmp_path / "in.parquet")
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 300_000},
           "stages": [{"type": "syntax_filter"}, {"type": "length_filter", "max_chars": 15000},
                      {"type": "exact_dedup"}],
           "ray": {"num_cpus": 2, "object_store_memory": 200_000_000}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def swallow(cfg: Path, run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--executor", "ray",
                           str(cfg), "--output", str(run_dir),
                           "--no-progress"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def markers_match_files(run_dir: Path) -> None:
    """Every shard marked finished has its files, with the sizes and hashes the marker sealed (nothing partial
    counts)."""
    from pipeline.store.shards import StageDir, is_temporary

    for marker in run_dir.glob("stages/*/done/*.json"):
        if is_temporary(marker):  # a write the full disk cut short: never read as a marker
            continue
        assert StageDir(marker.parent.parent).check_shard(marker.stem) == [], marker


def test_disk_full_then_rerun_after_freeing_space(tmp_path, disk, corpus_rows):
    cfg = config(tmp_path, corpus_rows)
    clean = tmp_path / "clean"
    assert swallow(cfg, clean).returncode == 0
    used = sum(f.stat().st_size for f in clean.rglob("*") if f.is_file())
    assert used > 6 * 2**20, f"the run writes {used} bytes: it must not fit the 4 MiB disk"
    run_dir = disk / "run"
    r = swallow(cfg, run_dir)
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left" in errors[0] and "free space" in errors[0], r.stderr[-3000:]
    print(errors[0])
    assert "Traceback" not in r.stderr
    markers_match_files(run_dir)
    assert verify(run_dir)  # unfinished: it must not verify
    remount(disk, "size=64m")  # space freed
    r = swallow(cfg, run_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not list(run_dir.rglob(".tmp-*"))
    assert verify(run_dir) == []
    problems = differences(outcome(run_dir), outcome(clean))
    assert not problems, problems


def test_read_only_output_folder(tmp_path, disk, corpus_rows):
    cfg = config(tmp_path, corpus_rows)
    remount(disk, "size=64m", "ro")
    r = swallow(cfg, disk / "run")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "read-only" in errors[0] and str(disk) in errors[0], r.stderr[-3000:]
    print(errors[0])
    remount(disk, "rw")
    r = swallow(cfg, disk / "run")
    assert r.returncode == 0, r.stderr[-3000:]
    assert verify(disk / "run") == []
