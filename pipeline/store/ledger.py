"""The ledger: prove that nothing was lost or duplicated, and summarise what each stage did.

``verify`` re-reads every output file (ids, not only counters): for each stage and shard, every file the shard
wrote (kept, rejected, stats, artefacts such as Megatron files) still has the SHA-256 its marker sealed, so a
same-size edit is found; the marker's counts match the files, kept and rejected ids are disjoint, and their union
is exactly the previous stage's kept ids (for the source: ids are unique across the whole run); the stats file
agrees with the shard files; a global stage's work files match their task markers; run.yaml and plan.json match
the configs and plan the shards ran with. ``collect_stats`` (what ``swallow stats``, the report and the card
show) reads only stats files that match their markers and names the others. Then each
stage's own invariants (``Stage.verify``: a duplicate's survivor was kept, Megatron files match the kept rows)
and the output's (the final dataset holds exactly the last stage's kept ids, with the content recorded at
export). Any violation is reported naming the stage and shard.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.store.shards import KEPT, REJECTED, StageDir, TamperedError, check_seal, is_temporary


def list_stages(run_dir: Path) -> list[StageDir]:
    root = Path(run_dir) / "stages"
    if not root.exists():
        return []
    return [StageDir(p) for p in sorted(root.iterdir()) if p.is_dir()]


def _ids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["id"]).column("id").to_pylist()


def ledger_problems(run_dir: str | Path, root: str | None = None) -> tuple[list[str], list[StageDir]]:
    """What the run's files prove on their own (empty when complete and consistent): the plan, every shard of
    every stage kept or rejected once, the seals, the root hash (``root``: one held elsewhere that the run must
    have), and the stage folders whose own invariants are to be checked next (none where the run cannot be read
    that far). Those invariants need the run's config: ``pipeline.run.verify``."""
    from pipeline.store.run_tree import check_root, stray_files

    run_dir = Path(run_dir)
    plan_path = run_dir / "plan.json"
    if not plan_path.exists():
        return [f"{run_dir}: no plan.json: not a run directory"], []
    strays = stray_files(run_dir)
    if any("symbolic link" in p or "plan.json" in p for p in strays):
        return strays, []  # nothing is read through a link or a key that leaves the run
    problems, stages = _verify_ledger(run_dir, plan_path)
    return strays + check_root(run_dir, root)[1] + problems, stages


def _verify_ledger(run_dir: Path, plan_path: Path) -> tuple[list[str], list[StageDir]]:
    problems: list[str] = []
    planned = sorted(json.loads(plan_path.read_text()))
    stages = list_stages(run_dir)
    if not stages:
        return [f"{run_dir}: no stage directories"], []
    prev_kept: dict[str, set[str]] | None = None
    all_source_ids: Counter = Counter()
    for sd in stages:
        expected = planned if prev_kept is None else sorted(prev_kept)
        done = set(sd.done_shards())
        for shard in expected:
            if shard not in done:
                problems.append(f"{sd.path.name}/{shard}: not finished (no completion marker)")
        for shard in sorted(done - set(expected)):
            problems.append(f"{sd.path.name}/{shard}: finished but not expected from the previous stage")
        kept_ids: dict[str, set[str]] = {}
        config_sha = sd.config_sha256()
        problems += check_phase_markers(sd)
        for shard in sorted(done & set(expected)):
            where = f"{sd.path.name}/{shard}"
            try:
                marker = sd.marker(shard)
                k_path, r_path = sd.file(KEPT, shard), sd.file(REJECTED, shard)
                k, r = _ids(k_path), _ids(r_path)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                problems.append(f"{where}: unreadable output: {type(exc).__name__}: {exc}")
                continue
            problems += sd.check_shard(shard)  # every file the shard wrote, re-hashed against its marker
            if marker.get("config_sha256") not in (None, config_sha):
                problems.append(f"{where}: stage.json changed after the shard finished (its marker records another "
                                "config)")
            if len(k) != marker["kept"] or len(r) != marker["rejected"]:
                problems.append(f"{where}: marker says kept {marker['kept']} rejected {marker['rejected']}, "
                                f"files hold {len(k)} and {len(r)}")
            if marker["in"] != marker["kept"] + marker["rejected"]:
                problems.append(f"{where}: in {marker['in']} != kept {marker['kept']} + rejected {marker['rejected']}")
            ks, rs = set(k), set(r)
            if None in ks or None in rs:
                problems.append(f"{where}: a row without an id (every record is counted by its id)")
            if len(ks) != len(k) or len(rs) != len(r):
                problems.append(f"{where}: duplicate ids inside kept or rejected")
            if ks & rs:
                problems.append(f"{where}: {len(ks & rs)} ids both kept and rejected")
            if prev_kept is not None:
                want = prev_kept[shard]
                got = ks | rs
                if got != want:
                    problems.append(f"{where}: {len(want - got)} input ids missing, {len(got - want)} unexpected ids")
            else:
                all_source_ids.update(ks | rs)
            problems += check_stats(sd, shard, r_path, marker)
            kept_ids[shard] = ks
        if prev_kept is None:
            dups = [i for i, n in all_source_ids.items() if n > 1]
            if dups:
                problems.append(f"{sd.path.name}: {len(dups)} ids appear in more than one source shard")
        prev_kept = kept_ids
    return problems, stages


def check_phase_markers(sd: StageDir) -> list[str]:
    """The work files of a multi-phase stage's tasks, re-hashed against their markers."""
    problems = []
    for marker in sorted(sd.path.glob("work/*/done/*.json")):
        if is_temporary(marker):
            continue
        files = json.loads(marker.read_text()).get("files") or {}
        problems += check_seal(sd.path, files, f"{sd.path.name}/work/{marker.parent.parent.name}/{marker.stem}")
    return problems


def check_stats(sd: StageDir, shard: str, rejected_path: Path, marker: dict) -> list[str]:
    """The stats file must tell what the shard files hold (``stats``, the report and the card read it)."""
    where = f"{sd.path.name}/{shard}"
    try:
        st = sd.stats(shard)
    except (OSError, ValueError) as exc:
        return [f"{where}: stats file missing or unreadable ({type(exc).__name__})"]
    problems = []
    for key in ("in", "kept", "rejected"):
        if st.get(key) != marker[key]:
            problems.append(f"{where}: stats say {key} = {st.get(key)}, the shard files hold {marker[key]}")
    reasons = Counter(pq.read_table(rejected_path, columns=["reason"]).column("reason").to_pylist()) \
        if marker["rejected"] else Counter()
    if dict(reasons) != st.get("reasons", {}):
        problems.append(f"{where}: stats' rejection reasons differ from the rejected rows' reasons")
    return problems


def collect_stats(run_dir: str | Path) -> dict:
    """Per stage: rows in, kept, rejected by reason, bytes, counters, wall time (summed over shards)."""
    out: dict = {"stages": []}
    for sd in list_stages(Path(run_dir)):
        agg = {"stage": sd.name, "dir": sd.path.name, "shards": 0, "in": 0, "kept": 0, "rejected": 0,
               "bytes_kept": 0, "bytes_rejected": 0, "wall_s": 0.0}
        reasons: Counter = Counter()
        counters: Counter = Counter()
        info: dict = {}
        ends: list[tuple[float, float]] = []
        unverified = []
        for shard in sd.done_shards():
            try:
                st = sd.verified_stats(shard)
            except (TamperedError, OSError, ValueError, KeyError):
                unverified.append(shard)  # changed since the shard finished: its figures are not reported
                continue
            agg["shards"] += 1
            if "started" in st:
                ends.append((st["started"], st["finished"]))
            for k in ("in", "kept", "rejected", "bytes_kept", "bytes_rejected", "wall_s"):
                agg[k] += st.get(k, 0)
            reasons.update(st.get("reasons", {}))
            counters.update(st.get("counters", {}))
            info.update(st.get("info") or {})
        if unverified:
            agg["unverified"] = unverified
            out.setdefault("unverified", []).extend(f"{sd.path.name}/{s}" for s in unverified)
        agg["wall_s"] = round(agg["wall_s"], 2)
        # first shard's start to last shard's end: the stage's working time when shards overlap (wall_s sums them)
        agg["span_s"] = round(max(e for _, e in ends) - min(s for s, _ in ends), 2) if ends else None
        timing = sd.path / "timing.json"
        agg["elapsed_s"] = round(sum(r["elapsed_s"] for r in json.loads(timing.read_text())), 2) \
            if timing.exists() else None
        agg["reasons"] = dict(reasons.most_common())
        agg["counters"] = {k: round(v, 3) for k, v in counters.items()}
        agg["info"] = info
        out["stages"].append(agg)
    return out


def format_stats(stats: dict) -> str:
    lines = []
    if stats.get("unverified"):
        lines.append(f"WARNING: {len(stats['unverified'])} shard(s) changed after they finished and are left out of "
                     f"these figures ({', '.join(stats['unverified'][:5])}); run `swallow verify`")
    w = max([20] + [len(st["stage"]) for st in stats["stages"]])  # a long stage name does not shift the columns
    lines += [f"{'stage':<{w}} {'in':>10} {'kept':>10} {'rejected':>10} {'kept MB':>9} {'elapsed s':>9}"]
    for st in stats["stages"]:
        lines.append(f"{st['stage']:<{w}} {st['in']:>10,} {st['kept']:>10,} {st['rejected']:>10,} "
                     f"{st['bytes_kept'] / 1e6:>9.2f} {st['elapsed_s'] or st['wall_s']:>9.1f}")
        for reason, n in st["reasons"].items():
            lines.append(f"{'':<{w}}   - {reason:<40} {n:>10,}")
        for k, v in st["counters"].items():
            lines.append(f"{'':<{w}}   * {k:<40} {v:>10,}")
    if stats.get("executor"):
        lines.append(f"executor: {stats['executor']}")
    return "\n".join(lines)


def empty_summary(stages: list[dict]) -> str:
    """Where the rows of a run that kept nothing went: the stage that rejected the last of them and its reasons."""
    last = next((s for s in reversed(stages) if s["in"]), stages[0])
    reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(last["reasons"].items(), key=lambda x: -x[1])[:6])
    return (f"no record was kept ({stages[0]['in']:,} in); the last {last['in']:,} reached stage "
            f"{last['stage']!r}, which rejected them ({reasons or 'no reason recorded'})")
