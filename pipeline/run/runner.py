"""Run a pipeline: each component's phases in order, their unfinished tasks on an executor, then the output.

The runner knows no stage kinds. For every component (the source, then each stage) it asks each phase for its
tasks, skips those whose completion marker exists, and hands the rest to the executor (Ray by default, a local
embedded Ray or a cluster; ``inline`` runs in this process). Every phase of stage N finishes before stage N+1
starts, so a global phase sees every shard. A rerun into the same directory resumes at the first unfinished
task; a component whose configuration changed after it finished work is refused (use a new directory).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.component import Component
from pipeline.core.task import StageContext
from pipeline.phases.chain import Chain, ChainPhase, chains
from pipeline.phases.defaults import phases_of
from pipeline.run.config import ConfigError, PipelineConfig, dump_config
from pipeline.run.executor import make_executor
from pipeline.run.progress import Progress
from pipeline.store.ledger import collect_stats
from pipeline.store.lock import RunLock
from pipeline.store.shards import StageDir, clean_temp, write_atomic_bytes, write_json

log = logging.getLogger("swallow")


def stage_dirs(run_dir: Path, cfg: PipelineConfig) -> list[StageDir]:
    return [StageDir(run_dir / "stages" / f"{i:02d}-{c.name}") for i, c in enumerate(cfg.components())]


def contexts(run_dir: Path, cfg: PipelineConfig) -> list[StageContext]:
    dirs = stage_dirs(run_dir, cfg)
    return [StageContext(str(run_dir), str(d.path), str(dirs[i - 1].path) if i else None, cfg.kind, i)
            for i, d in enumerate(dirs)]


def has_finished_work(sd: StageDir) -> bool:
    return bool(sd.done_shards()) or any((sd.path / "work").glob("*/done/*.json"))


def check_resume(sd: StageDir, component: Component) -> None:
    """Refuse to mix outputs of two different configs of a component in one directory.

    A component that has not finished any task yet takes the new config (a run that failed before its first
    shard, e.g. on a wrong model path, does not block the corrected rerun).
    """
    current = json.loads(json.dumps(component.config_dict(), default=str))
    saved = sd.config()
    if saved is not None and saved != current and has_finished_work(sd):
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(f"{sd.path}: stage {component.name!r} finished shards with a different config "
                          f"(keys {diff}); use a new --output directory or delete {sd.path}")


def record_elapsed(sd: StageDir, seconds: float, tasks: int) -> None:
    """Append this invocation's wall-clock time for the stage (workers' start included) to timing.json."""
    path = sd.path / "timing.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append({"elapsed_s": round(seconds, 2), "tasks_run": tasks, "finished_at": time.time()})
    write_json(path, runs)


def prepare(cfg: PipelineConfig, run_dir: Path) -> dict[str, Any]:
    """Check every component against what the directory holds, then record configs and the plan."""
    dirs = stage_dirs(run_dir, cfg)
    for sd, comp in zip(dirs, cfg.components()):
        check_resume(sd, comp)
    wanted = {sd.path.name for sd in dirs}
    strays = [StageDir(p) for p in sorted((run_dir / "stages").glob("*")) if p.is_dir() and p.name not in wanted] \
        if (run_dir / "stages").exists() else []
    for sd in strays:
        if has_finished_work(sd):
            raise ConfigError(f"{sd.path}: this run directory holds finished work of a stage that is not in the "
                              "config (renamed, removed or reordered); use a new --output directory or delete it")
    for sd in strays:  # a stage that never finished a task (e.g. its setup failed): nothing to keep
        shutil.rmtree(sd.path)
    src_dir = dirs[0]
    plan_path = run_dir / "plan.json"
    if plan_path.exists() and has_finished_work(src_dir):
        plan = json.loads(plan_path.read_text())
    else:
        cfg.source.exclude([str(run_dir)])  # the run's own files are never its input
        # every worker gets work: the CPUs the run asks for, else this machine's (a cluster plans like its driver)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        cfg.source.set_workers(cfg.ray.num_cpus or cpus)
        specs = cfg.source.plan()
        duplicates = cfg.source.duplicate_inputs()
        if duplicates:  # a file listed again is read once; each extra listing gets its row (duplicate_id)
            log.warning("%d input file(s) listed more than once; each is read once", len(duplicates))
            specs.append({"duplicate_inputs": duplicates})
        plan = {f"{i:05d}": spec for i, spec in enumerate(specs)}
        write_json(plan_path, plan)
    # only now that every check passed: a refused rerun leaves the directory's record as it was
    write_atomic_bytes(run_dir / "run.yaml", yaml.safe_dump(dump_config(cfg), sort_keys=False).encode())
    for sd, comp in zip(dirs, cfg.components()):
        sd.path.mkdir(parents=True, exist_ok=True)
        write_json(sd.path / "stage.json", comp.config_dict())
        clean_temp(sd.path)
    return plan


def preflight(cfg: PipelineConfig) -> None:
    """Everything that can be checked before any work: packages, model and tokenizer paths, prompts."""
    problems = [p for comp in cfg.components() for p in comp.preflight()]
    if problems:
        raise ConfigError("\n".join(problems))


def redo_if_stale(pairs: list, group: list[StageContext]) -> None:
    """A stage redone since (its folder deleted, its config changed on a stage with no finished work) wrote new
    outputs; every later stage's finished shards read the old ones. The first stage of ``group`` whose finished
    shards read an output that is no longer there is redone, and every stage after it: their folders are emptied
    (what they hold is derived, and wrong now) and the run goes on. A run never ends with stages that verify would
    reject for this."""
    from pipeline.phases.apply import stale_shards

    for ctx in group:
        if ctx.prev is None:
            continue
        stale = stale_shards(ctx)
        if not stale:
            continue
        later = [c for _, c in pairs if c.index >= ctx.index]
        log.warning("stage %s: %d finished shard(s) read an earlier output of %s, which was redone since: redoing "
                    "%s", ctx.dir.name, len(stale), ctx.prev.name, ", ".join(c.dir.path.name for c in later))
        for c in later:
            config = c.dir.path / "stage.json"
            kept = config.read_bytes() if config.exists() else None
            shutil.rmtree(c.dir.path)
            c.dir.path.mkdir(parents=True)
            if kept is not None:
                config.write_bytes(kept)
        return


def run_component(ex, comp: Component, ctx: StageContext, progress: bool, chained_s: float = 0.0,
                  chained_tasks: int = 0) -> None:
    """Every phase of one component: its unfinished tasks on the executor; then its ``finalize`` and timing
    (``chained_*``: what this stage already did inside a chain)."""
    t_stage = time.time()
    ran = chained_tasks
    for phase in phases_of(comp):
        tasks = phase.tasks(comp, ctx)
        todo = [t for t in tasks if not phase.is_done(ctx, t.key)]
        if not todo and chained_tasks:
            continue  # the chain did it all: no second (empty) progress bar
        label = comp.name if phase.name in ("read", "apply") else f"{comp.name}:{phase.name}"
        with Progress(label, total=len(tasks), done=len(tasks) - len(todo), enabled=progress,
                      watch=[ctx.dir.path] if phase.name == "apply" else None) as bar:
            ex.run(comp, phase, todo, ctx, bar.update)
        ran += len(todo)
    ex.release()  # the workers kept set up through the phases: their CPUs/GPUs go to the next stage
    clean_temp(ctx.dir.path)  # what killed workers were writing: their tasks were redone since
    finalize = getattr(comp, "finalize", None)
    if finalize is not None:
        finalize(ctx)
    record_elapsed(ctx.dir, time.time() - t_stage + chained_s, ran)


def run_chain(ex, group: list[tuple[Component, StageContext]], progress: bool) -> dict[str, tuple[float, int]]:
    """A chain of row-wise stages (``pipeline.phases.chain``): one task per shard runs them all. Returns, per stage,
    the seconds its shards took inside the chain and how many it did."""
    t0 = time.time()
    chain = Chain([c for c, _ in group])
    phase = ChainPhase([x for _, x in group])
    first = group[0][1]
    tasks = phase.tasks(chain, first)
    todo = [t for t in tasks if not phase.is_done(first, t.key)]
    with Progress(" > ".join(c.name for c, _ in group), total=len(tasks), done=len(tasks) - len(todo),
                  enabled=progress, watch=[x.dir.path for _, x in group]) as bar:
        results = ex.run(chain, phase, todo, first, bar.update)
    ex.release()
    wall = time.time() - t0
    spent: dict[str, tuple[float, int]] = {}
    for r in results:
        for st in r.get("stages", []):
            s, n = spent.get(st["stage"], (0.0, 0))
            spent[st["stage"]] = (s + st.get("wall_s", 0.0), n + 1)
    total = sum(s for s, _ in spent.values()) or 1.0
    # the chain's wall time (workers' start included), shared by the stages as their shards' time was
    return {name: (wall * s / total, n) for name, (s, n) in spent.items()}


def _warm_plot_imports():
    """Import the card's plotting library (matplotlib: ~0.7 s) in a thread while an embedded Ray stops, which is
    ~1.2 s of waiting for its processes to exit; returns the thread."""
    import threading

    def work() -> None:
        try:
            from pipeline.draw.plots import pyplot

            pyplot()
        except Exception:  # noqa: BLE001 - the export imports it again and says what failed
            pass

    t = threading.Thread(target=work, name="plot-imports", daemon=True)
    t.start()
    return t


def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, progress: bool = True, export: bool | None = None,
                 executor: str = "ray") -> dict:
    """Run every stage of ``cfg`` into ``run_dir``; return per-stage stats. Safe to rerun after a crash. A start that
    fails (a missing input, a refused plan) leaves no folder behind where there was none. The HTML report is the
    caller's (``pipeline.view.report.run_with_report``: what ``swallow run`` does)."""
    preflight(cfg)
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run_locked(cfg, run_dir, progress, export, executor)
    except _StartFailed as exc:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise exc.__cause__ from None


class _StartFailed(Exception):
    """``prepare`` failed: nothing of the run was written yet."""


def _run_locked(cfg: PipelineConfig, run_dir: Path, progress: bool, export: bool | None, executor: str) -> dict:
    t0 = time.time()
    with RunLock(run_dir):
        try:
            prepare(cfg, run_dir)
        except Exception as exc:
            raise _StartFailed() from exc
        if executor == "auto":
            from pipeline.run.executor.choose import choose_executor

            executor, why = choose_executor(cfg)
            # info, not a warning: a choice is not a problem, and stderr stays one line per error (--verbose shows it;
            # the summary keeps it)
            log.info("executor: %s (%s)", executor, why)
            chosen = f"{executor} ({why})"
        else:
            chosen = f"{executor} (named)"
        local = executor == "inline" or not (cfg.ray.address or os.environ.get("RAY_ADDRESS"))
        started, stages_done = [], False
        ex = make_executor(executor, cfg.ray)
        try:
            for comp in cfg.components():  # shared per-node helpers warm up while Ray and earlier stages start
                handle = comp.prestart(local)
                if handle is not None:
                    started.append(handle)
            pairs = list(zip(cfg.components(), contexts(run_dir, cfg)))
            for group in chains(pairs) if cfg.chain_stages else [[pair] for pair in pairs]:
                redo_if_stale(pairs, [ctx for _, ctx in group])
                chained = run_chain(ex, group, progress) if len(group) > 1 else {}
                for comp, ctx in group:  # alone, or what a chain left (a shard rejected as worker_died upstream)
                    run_component(ex, comp, ctx, progress, *chained.get(comp.name, (0.0, 0)))
            stages_done = True
        except KeyboardInterrupt:
            ex.abort()
            raise
        finally:
            do_export = cfg.export.enabled if export is None else export
            warm = _warm_plot_imports() if do_export and stages_done else None
            ex.close()
            for handle in started:
                handle.close()
        summary = collect_stats(run_dir)
        summary["wall_s"] = round(time.time() - t0, 2)
        summary["executor"] = chosen
        if do_export:
            if warm is not None:
                warm.join()
            cfg.export.write(run_dir, cfg)
        if stages_done:  # every sealed file of the run under one hash (pipeline/store/run_tree.py)
            from pipeline.store.run_tree import write_root

            summary["root"] = write_root(run_dir)
    return summary
