"""Run a pipeline on Ray: the source, then each stage in order, shard by shard.

Locally (no ``RAY_ADDRESS``, no ``ray.address`` in the config) an embedded Ray is started; under
``ray job submit`` or with ``RAY_ADDRESS`` set, the cluster is used (the run directory must then be on storage
every node sees). Each stage runs in a pool of long-lived Ray actors that hold the stage's heavy state
(``setup()`` once per actor). A worker that dies is replaced and its shard retried; a shard that kills
``max_retries + 1`` workers has its rows rejected as ``worker_died`` so the run goes on and nothing is lost.
Finished shards (marker present) are skipped on a rerun.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import ConfigError, PipelineConfig, dump_config
from pipeline.execute import run_source_shard, run_stage_shard
from pipeline.progress import Progress
from pipeline.shards import KEPT, StageDir, clean_temp, write_json

log = logging.getLogger("swallow")


def stage_dirs(run_dir: Path, cfg: PipelineConfig) -> list[StageDir]:
    comps = [cfg.source] + list(cfg.stages)
    return [StageDir(run_dir / "stages" / f"{i:02d}-{c.name}") for i, c in enumerate(comps)]


_EMBEDDED = False  # whether this process started a local Ray (which no node will join)


def init_ray(cfg: PipelineConfig) -> None:
    global _EMBEDDED
    import ray

    if ray.is_initialized():
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parent.parent),
                                                                   os.environ.get("PYTHONPATH", "")] if p)}}
    _EMBEDDED = not address
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus,
                 object_store_memory=cfg.ray.object_store_memory, include_dashboard=False,
                 runtime_env=env, log_to_driver=True, configure_logging=False)


class _Worker:
    """A Ray actor holding one stage (or source) after ``setup()``."""

    def __init__(self, component, kind: str):
        logging.basicConfig(level=logging.INFO)
        self.component = component
        self.kind = kind
        component.setup()

    def ready(self) -> bool:
        return True

    def source_shard(self, spec: dict, stage_dir: str, shard: str) -> dict:
        return run_source_shard(self.component, self.kind, spec, StageDir(stage_dir), shard)

    def stage_shard(self, in_path: str, stage_dir: str, shard: str) -> dict:
        return run_stage_shard(self.component, self.kind, Path(in_path), StageDir(stage_dir), shard)

    def shutdown(self) -> None:
        self.component.teardown()


def pool_size(component, n_tasks: int) -> int:
    import ray

    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if component.num_cpus > largest:  # such an actor waits for a node big enough to place it on
        msg = (f"stage {component.name} needs {component.num_cpus:g} CPUs per worker; the largest node has "
               f"{largest:g} (set stages.{component.name}.num_cpus)")
        if _EMBEDDED:  # no node will ever join a local Ray
            raise RuntimeError(msg)
        log.warning("%s; waiting for the cluster to add one", msg)
    if component.concurrency:
        return max(1, min(component.concurrency, n_tasks))
    res = ray.cluster_resources()
    if component.num_gpus:
        fit = int(res.get("GPU", 0) // component.num_gpus)
        if fit < 1:
            raise RuntimeError(f"stage {component.name} needs {component.num_gpus} GPU per worker; "
                               f"the cluster has {res.get('GPU', 0)}")
    else:
        fit = int(res.get("CPU", 1) // max(component.num_cpus, 0.001))
    return max(1, min(fit, n_tasks))


def run_tasks(component, kind: str, method: str, tasks: list[tuple[Any, str, str]], progress: Progress,
              on_dead) -> list[dict]:
    """Run ``tasks`` (arg, stage_dir, shard) on a pool of actors, replacing dead ones; return the stats."""
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    if not tasks:
        return []
    actor_cls = ray.remote(_Worker).options(num_cpus=component.num_cpus, num_gpus=component.num_gpus,
                                           max_restarts=0, max_task_retries=0)
    size = pool_size(component, len(tasks))

    def setup_failed(exc: Exception, actors: list) -> RuntimeError:
        """A setup() that fails is a configuration or environment error (wrong model path, missing package),
        not bad data: it stops the run instead of rejecting rows."""
        for a in actors:
            ray.kill(a, no_restart=True)
        return RuntimeError(f"stage {component.name!r}: a worker's setup() failed, stopping the run "
                            f"(finished shards are kept; rerun after fixing): {exc}")

    # each actor takes work as soon as its own setup() is done (no waiting for the slowest to start)
    starting = {a.ready.remote(): a for a in (actor_cls.remote(component, kind) for _ in range(size))}
    idle: list = []
    pending = list(reversed(tasks))
    attempts: dict[str, int] = {}
    running: dict[Any, tuple[Any, tuple]] = {}
    results = []
    try:
        while pending or running:
            while idle and pending:
                actor = idle.pop()
                task = pending.pop()
                ref = getattr(actor, method).remote(*task)
                running[ref] = (actor, task)
            done, _ = ray.wait(list(running) + list(starting), num_returns=1)
            ref = done[0]
            if ref in starting:
                actor = starting.pop(ref)
                try:
                    ray.get(ref)
                except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
                    raise setup_failed(exc, [actor, *starting.values(), *idle,
                                             *(a for a, _ in running.values())]) from None
                idle.append(actor)
                continue
            actor, task = running.pop(ref)
            try:
                stats = ray.get(ref)
            except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
                shard = task[2]
                attempts[shard] = attempts.get(shard, 0) + 1
                ray.kill(actor, no_restart=True)
                replacement = actor_cls.remote(component, kind)
                starting[replacement.ready.remote()] = replacement
                if attempts[shard] <= component.max_retries:
                    log.warning("worker died on %s/%s (attempt %d), retrying: %s", component.name, shard,
                                attempts[shard], str(exc).splitlines()[0])
                    pending.append(task)
                else:
                    log.error("shard %s/%s killed %d workers; rejecting its rows as worker_died", component.name,
                              shard, attempts[shard])
                    stats = on_dead(task, str(exc).splitlines()[0])
                    results.append(stats)
                    progress.update(stats)
                continue
            idle.append(actor)
            results.append(stats)
            progress.update(stats)
    finally:
        for a in starting.values():
            ray.kill(a, no_restart=True)
        for a in idle + [a for a, _ in running.values()]:
            try:
                ray.get(a.shutdown.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - best effort (a killed actor included)
                pass
            ray.kill(a, no_restart=True)
    return results


def record_elapsed(sd: StageDir, seconds: float, shards: int) -> None:
    """Append this invocation's wall-clock time for the stage (workers' start included) to timing.json."""
    path = sd.path / "timing.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append({"elapsed_s": round(seconds, 2), "shards_processed": shards, "finished_at": time.time()})
    write_json(path, runs)


def check_resume(sd: StageDir, component) -> None:
    """Refuse to mix outputs of two different stage configs in one directory."""
    current = {"type": component.type, **component.model_dump()}
    saved = sd.config()
    if saved is not None and saved != json.loads(json.dumps(current, default=str)):
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(f"{sd.path}: stage {component.name!r} finished shards with a different config "
                          f"(keys {diff}); use a new --output directory or delete {sd.path}")
    if saved is None:
        write_json(sd.path / "stage.json", current)


def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, progress: bool = True, export: bool | None = None) -> dict:
    """Run every stage of ``cfg`` into ``run_dir``; return per-stage stats. Safe to rerun after a crash."""
    from pipeline.reject import reject_all_shard

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.yaml").write_text(yaml.safe_dump(dump_config(cfg), sort_keys=False))
    dirs = stage_dirs(run_dir, cfg)
    for sd, comp in zip(dirs, [cfg.source] + list(cfg.stages)):
        sd.path.mkdir(parents=True, exist_ok=True)
        check_resume(sd, comp)
        clean_temp(sd.path)

    plan_path = run_dir / "plan.json"
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
    else:
        plan = {f"{i:05d}": spec for i, spec in enumerate(cfg.source.plan())}
        write_json(plan_path, plan)

    init_ray(cfg)
    summary: dict[str, Any] = {}
    t0 = time.time()
    # source
    src_dir = dirs[0]
    tasks = [(spec, str(src_dir.path), shard) for shard, spec in plan.items() if not src_dir.is_done(shard)]
    t_stage = time.time()
    with Progress(f"{cfg.source.name}", total=len(plan), done=len(plan) - len(tasks), enabled=progress) as bar:
        run_tasks(cfg.source, cfg.kind, "source_shard", tasks, bar,
                  lambda task, why: reject_all_shard(cfg.kind, None, task[0], StageDir(task[1]), task[2],
                                                     cfg.source.name, why))
    record_elapsed(src_dir, time.time() - t_stage, len(tasks))
    # stages
    for prev, sd, stage in zip(dirs, dirs[1:], cfg.stages):
        shards = prev.done_shards()
        tasks = [(str(prev.file(KEPT, s)), str(sd.path), s) for s in shards if not sd.is_done(s)]
        t_stage = time.time()
        with Progress(stage.name, total=len(shards), done=len(shards) - len(tasks), enabled=progress) as bar:
            run_tasks(stage, cfg.kind, "stage_shard", tasks, bar,
                      lambda task, why, st=stage: reject_all_shard(cfg.kind, Path(task[0]), None, StageDir(task[1]),
                                                                  task[2], st.name, why))
        record_elapsed(sd, time.time() - t_stage, len(tasks))
    from pipeline.ledger import collect_stats
    from stages.write import megatron_data_paths

    data_paths = megatron_data_paths(run_dir)
    if data_paths:  # what Megatron-LM's --data-path takes: token-weighted prefixes
        (run_dir / "megatron-data-path.txt").write_text(" ".join(data_paths) + "\n")
    summary = collect_stats(run_dir)
    summary["wall_s"] = round(time.time() - t0, 2)
    do_export = cfg.export.enabled if export is None else export
    if do_export:
        from stages.write import export_dataset

        export_dataset(run_dir, cfg)
    return summary
