"""``swallow status RUN [--watch]``: where a run is, from its directory alone (works from any machine that sees it,
under ``ray job submit`` too): per stage, tasks done/total per phase, rows in and kept, rows/s, an ETA, failures
(rows rejected as ``worker_died``, scans that failed) and retries (``events.jsonl``), and the stage running now."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.store.ledger import list_stages
from pipeline.store.lock import current_holder
from pipeline.store.shards import StageDir, TamperedError
from pipeline.store.work import read_marker


def _mtimes(folder: Path) -> list[float]:
    return sorted(p.stat().st_mtime for p in folder.glob("*.json") if not p.name.startswith(".tmp-")) \
        if folder.exists() else []


def stage_status(sd: StageDir, expected: int | None, started: float | None) -> dict:
    done = sd.done_shards()
    rows_in = kept = died = 0
    for shard in done:
        try:
            st = sd.verified_stats(shard)
        except (TamperedError, OSError, ValueError, KeyError):
            continue
        rows_in += st.get("in", 0)
        kept += st.get("kept", 0)
        died += st.get("reasons", {}).get("worker_died", 0)
    phases = {}
    work = sd.path / "work"
    if work.exists():
        for phase_dir in sorted(p for p in work.iterdir() if p.is_dir()):
            keys = sd.phase_done(phase_dir.name)
            failed = sum(1 for k in keys if read_marker(sd.phase_marker(phase_dir.name, k)).get("failed"))
            phases[phase_dir.name] = {"done": len(keys), "failed": failed}
    times = _mtimes(sd.path / "done")
    if started is None and (sd.path / "stage.json").exists():
        started = (sd.path / "stage.json").stat().st_mtime
    rate = eta = None
    if times and started:
        elapsed = max(times[-1] - started, 1e-3)
        rate = rows_in / elapsed
        if expected and len(done) < expected:
            per_shard = elapsed / len(done)
            eta = per_shard * (expected - len(done))
    # shards under way: their rows done so far (pipeline/phases/apply.py writes work/progress/SHARD.json as they run)
    running = []
    progress_dir = sd.work("progress")
    for p in sorted(progress_dir.glob("*.json")) if progress_dir.exists() else []:
        if p.name.startswith(".tmp-") or p.stem in done:
            continue
        try:
            running.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    running_done = sum(r.get("rows_done", 0) for r in running)
    running_rows = sum(r.get("rows", 0) for r in running)
    running_rate = sum(r.get("rows_per_s", 0) for r in running if time.time() - r.get("time", 0) < 60)
    if running and running_rate and expected:
        per_shard_left = (running_rows - running_done) / running_rate
        eta = max(eta or 0.0, per_shard_left * max(1, expected - len(done)) / len(running))
        rate = rate or running_rate
    retries = 0
    events = sd.path / "events.jsonl"
    if events.exists():
        retries = sum(1 for line in events.read_text().splitlines() if '"retry"' in line)
    return {"stage": sd.name, "dir": sd.path.name, "done": len(done), "total": expected, "in": rows_in,
            "kept": kept, "rows_per_s": rate, "eta_s": eta, "worker_died_rows": died, "retries": retries,
            "phases": phases, "first_done": times[0] if times else None, "last_done": times[-1] if times else None,
            "running_shards": len(running), "running_rows_done": running_done, "running_rows": running_rows}


def under_way(stages: list[dict]) -> list[dict]:
    """What runs now: the first unfinished stage and the unfinished ones after it that finished shards already
    (the stages of one chain advance together)."""
    first = next((i for i, s in enumerate(stages) if s["done"] < s["total"]), None)
    return [s for i, s in enumerate(stages) if first is not None and i >= first and s["done"] < s["total"]
            and (i == first or s["done"])]


def status(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    plan = run_dir / "plan.json"
    if not plan.exists():
        raise FileNotFoundError(f"{run_dir}: no plan.json — not a run directory (or the run has not started)")
    planned = len(json.loads(plan.read_text()))
    stages, start = [], None
    for sd in list_stages(run_dir):
        # every stage ends with one shard per planned shard (each writes one per shard of the stage before it)
        st = stage_status(sd, planned, start)
        stages.append(st)
        # the next stage started when this one ended, or, chained with it (pipeline/phases/chain.py), with its first
        # shard
        start = st["last_done"] if st["done"] == planned else st["first_done"]
    running = " > ".join(s["stage"] for s in under_way(stages)) or None
    holder = current_holder(run_dir)
    finished = running is None and holder is None
    if holder is None:  # a stopped run has no rate and no ETA: nothing runs
        for st in stages:
            st["eta_s"] = None
            if st["done"] < (st["total"] or 0):
                st["rows_per_s"] = None
    return {"run_dir": str(run_dir), "planned_shards": planned, "stages": stages, "running": running,
            "holder": holder, "finished": finished, "report": str(run_dir / "report.html")
            if (run_dir / "report.html").exists() else None}


def format_status(st: dict) -> str:
    who = st["holder"]
    doing = f"running {st['running']}" if st["running"] else "finishing (every stage done; export and report)"
    head = "finished" if st["finished"] else (
        f"{doing} (pid {who.get('pid')} on {who.get('host')})" if who else
        f"stopped before the end (at {st['running']}); rerun to resume")
    lines = [f"{st['run_dir']}: {head}",
             f"{'stage':<24} {'shards':>13} {'rows in':>11} {'kept':>11} {'rows/s':>9} {'ETA':>8}  notes"]
    for s in st["stages"]:
        shards = f"{s['done']}/{s['total']}" if s["total"] is not None else f"{s['done']}/?"
        rate = f"{s['rows_per_s']:,.0f}" if s["rows_per_s"] else ""
        eta = f"{s['eta_s'] / 60:.1f} min" if s["eta_s"] else ""
        notes = []
        for phase, p in s["phases"].items():
            notes.append(f"{phase} {p['done']}" + (f" ({p['failed']} failed)" if p["failed"] else ""))
        if s.get("running_shards"):
            notes.append(f"{s['running_shards']} shard(s) under way: {s['running_rows_done']:,}/"
                         f"{s['running_rows']:,} rows")
        if s["worker_died_rows"]:
            notes.append(f"{s['worker_died_rows']} rows worker_died")
        if s["retries"]:
            notes.append(f"{s['retries']} retries")
        lines.append(f"{s['stage']:<24} {shards:>13} {s['in']:>11,} {s['kept']:>11,} {rate:>9} {eta:>8}  "
                     + ", ".join(notes))
    if st["report"]:
        lines.append(f"report: {st['report']}")
    return "\n".join(lines)


def watch(run_dir: str | Path, every_s: float = 2.0, out=None) -> dict:
    import sys

    out = out or sys.stdout
    while True:
        st = status(run_dir)
        out.write("\x1b[2J\x1b[H" if out.isatty() else "")
        out.write(format_status(st) + "\n")
        out.flush()
        if st["finished"] or st["holder"] is None:
            return st
        time.sleep(every_s)
