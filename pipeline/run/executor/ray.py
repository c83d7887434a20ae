"""Run tasks on a pool of long-lived Ray actors, each holding one set-up component.

Locally (no ``RAY_ADDRESS``, no ``ray.address`` in the config) an embedded Ray is started; under
``ray job submit`` or with ``RAY_ADDRESS`` set, the cluster is used (the run directory must then be on storage
every node sees). A pool is sized from the cluster's CPUs/GPUs and the phase's resources. Each actor takes a task
as soon as its own ``setup()`` is done; the pool outlives the phase and serves the component's next phase if it
asks for the same resources, until ``release()``. An actor that dies is replaced and its task retried; a task
that kills ``max_retries + 1`` actors goes to ``phase.on_dead`` (a shard's rows rejected as ``worker_died``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pipeline.core.component import Component, Resources
from pipeline.core.errors import (
    ConfigError,
    ResourceError,
    SetupError,
    StorageError,
    WorkerBroken,
    as_storage_error,
    failed_setup,
)
from pipeline.core.task import StageContext, Task
from pipeline.phases.phase import Phase
from pipeline.proc.proctitle import set_title
from pipeline.run.executor.base import OnDone

log = logging.getLogger("swallow")
ROOT = str(Path(__file__).resolve().parents[3])


class _Worker:
    """A Ray actor holding one component after ``setup()``."""

    def __init__(self, component: Component, cwd: str | None = None):
        logging.basicConfig(level=logging.INFO)
        _isolate(cwd)
        self.component = component
        set_title(f"setup {component.name}")
        try:
            component.setup()
        except WorkerBroken as exc:  # killed helpers (not a bad configuration): die, to be replaced (bounded)
            logging.getLogger("swallow").error("worker broken in setup: %s; exiting", exc)
            os._exit(75)
        set_title(f"idle {component.name}")

    def ready(self) -> bool:
        return True

    def run(self, phase: Phase, task: Task, ctx: StageContext) -> dict:
        set_title(f"{self.component.name} {phase.name} {task.key}")
        try:
            return phase.run(self.component, task, ctx)
        except OSError as exc:  # the run folder refused a write: one line for the user (the driver stops the run)
            storage = as_storage_error(exc, self.component.name, task.key, ctx.run_dir)
            if storage is None:
                raise
            raise storage from None
        except WorkerBroken as exc:
            # This actor's state is broken (e.g. its vLLM engine died): end the process so the executor sees a
            # dead worker, replaces it and retries every task it held (a clean exception would finish the task).
            logging.getLogger("swallow").error("worker broken on %s: %s; exiting", task.key, exc)
            os._exit(75)

    def shutdown(self) -> None:
        self.component.teardown()


#: how many times an embedded Ray's start is tried when its node does not register in time
EMBEDDED_START_TRIES = 3


def workers_to_terminal() -> bool:
    """Whether the workers' own output (Ray's, vLLM's: engine configs, missing-Triton and thread warnings) is shown
    on this terminal: only with ``swallow --verbose``. Otherwise it stays in Ray's session logs
    (``/tmp/ray/session_latest/logs``), and the terminal holds the run's own lines and bars."""
    return os.environ.get("SWALLOW_VERBOSE") == "1"


def start_embedded(ray, kwargs: dict) -> None:
    """``ray.init`` for an embedded Ray, tried again when the local node does not register in time.

    Ray waits a fixed 30 s (``node.py``, not settable) for its raylet to register with the GCS; on a loaded machine
    that is not always enough (seen in this project's test suite on 2 cores: one run of a pipeline in 2,043 s of
    tests ended with "The current node timed out during startup" before any shard ran). The processes the failed
    attempt started (GCS, raylet, their agents) are this process's children and would outlive it: they are ended
    before the next attempt. After ``EMBEDDED_START_TRIES`` attempts the run stops with one line saying what to do.
    """
    import psutil  # Ray's own copy (ray/thirdparty_files), importable once ray is

    tries = EMBEDDED_START_TRIES
    for attempt in range(1, tries + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            ray.init(**kwargs)
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc):
                raise
            left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
            for p in left:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(left, timeout=10)
            with contextlib.suppress(Exception):
                ray.shutdown()
            if attempt == tries:
                raise SetupError(f"the local Ray did not start: its node did not register within Ray's 30 s, "
                                 f"{tries} times (the machine is overloaded?); rerun when it is less busy, or start "
                                 f"Ray yourself (`ray start --head`) and set RAY_ADDRESS") from exc
            log.warning("the local Ray's node did not register within Ray's 30 s (attempt %d of %d); ended what "
                        "it had started (%d processes), starting it again", attempt, tries, len(left))


def neutral_dir() -> str:
    """An empty folder of this process's own (mode 0700): what Ray's processes start in and what Ray puts on its
    workers' ``sys.path`` in place of the driver's working folder."""
    import tempfile

    return tempfile.mkdtemp(prefix="swallow-ray-")


def _isolate(cwd: str | None) -> None:
    """Make this worker process import nothing from a folder of the data.

    Ray adds the driver's working folder to every worker's ``sys.path`` (``py_driver_sys_path``); the executor
    starts Ray from an empty folder so that entry names nothing, and anything else that is not an installed path
    (``""``, the working folder, a folder a corpus file lives in) is dropped here. ``PYTHONSAFEPATH`` keeps every
    Python this worker starts (vLLM's spawned engine, ``-c``/``-m`` children) from putting its working folder
    first on its path. The worker then works in the driver's folder, so the config's relative paths mean what
    they meant to the user (a folder that does not exist on this node leaves it where Ray started it)."""
    os.environ["PYTHONSAFEPATH"] = "1"
    here = os.getcwd()
    bad = {"", ".", here, cwd} - {ROOT}  # (the project itself, run from its own checkout, stays importable)
    sys.path[:] = [p for p in sys.path if p not in bad]
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


def _first_line(exc: Exception) -> str:
    """The cause of a Ray actor's death in one line: Ray wraps the exception with its traceback; the last
    ``SomeError: message`` line is the cause."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if ("Error:" in line or "Exception:" in line) and not line.startswith("File ")]
    return (causes[-1] if causes else lines[0] if lines else type(exc).__name__)[:500]


def record_event(ctx: StageContext, event: dict) -> None:
    """Append one line to the stage's ``events.jsonl`` (what ``swallow status`` shows as retries)."""
    import json
    import time

    try:
        with open(ctx.dir.path / "events.jsonl", "a") as f:
            f.write(json.dumps({"time": time.time(), **event}) + "\n")
    except OSError:  # the record of a retry must not stop the run
        pass


def _no_auth_notice(record: logging.LogRecord) -> bool:
    """Ray's notice that a new local Ray uses token authentication (its secure default, which we keep) comes at
    every command; it says nothing to act on. Its warning that authentication is *off* still comes."""
    return not record.getMessage().startswith("Token authentication is enabled")


def _stop_actors(ray, actors, graceful: bool = True) -> None:
    """End actors: a graceful ``teardown()`` first (engines, helper processes) unless in a hurry, then a kill."""
    for a in actors:
        if graceful:
            try:
                ray.get(a.shutdown.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - best effort (a killed actor included)
                pass
        ray.kill(a, no_restart=True)


@contextlib.contextmanager
def _inside(folder: str):
    back = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(back)


class RayExecutor:
    def __init__(self, ray_config=None):
        self.config = ray_config
        #: whether this process started a local Ray (which no node will ever join)
        self.embedded = False
        self._started = False
        self.owns_ray = False  # this executor started the embedded Ray (not a test's, not a cluster)
        #: the driver's working folder, where workers resolve the config's relative paths
        self.cwd = os.getcwd()
        #: the set-up workers of the component whose phases are running, kept from one phase to the next
        #: (component, resources, actors) until ``release()``: a global stage's scan, reduce and apply phases
        #: set up once (each new actor is a Python process with the stage's imports: ~1.6 s of the first shard
        #: of every phase of exact dedup on this 2-core machine)
        self._pool: tuple[Component, Resources, list] | None = None

    def start(self) -> None:
        import ray

        if self._started:
            return
        self._started = True
        cfg = self.config
        address = (cfg.address if cfg else None) or os.environ.get("RAY_ADDRESS")
        self.embedded = not address
        if ray.is_initialized():
            return
        # Ray puts the folder ``ray.init`` runs in on every worker's sys.path, and a local Ray's processes start
        # there: from a folder holding the corpus (``swallow x --input .``) a ``numpy.py`` of the data would be
        # imported by every worker. Ray is started from an empty folder of our own instead.
        self.cwd = os.getcwd()
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_no_auth_notice)
        with _inside(neutral_dir()):
            self._init(ray, cfg, address)
        self.owns_ray = not address

    def _init(self, ray, cfg, address) -> None:
        if address:
            ray.init(address=address, log_to_driver=workers_to_terminal())
        else:
            # The local Ray's processes inherit this environment, so its workers import the project from a plain
            # checkout too; no runtime_env, which would keep actors off the workers Ray prestarts (measured here:
            # 1.8 s to start two actors with a runtime_env, 0.6 s without).
            paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if ROOT not in paths:
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, *paths] if p)
            # Ray lowers its workers' priority by 15 (RAY_worker_niceness, added to the niceness its processes
            # inherit): on a shared machine they lose the CPU the run is owed (issue 25, under load: 504-737 s of
            # CPU for the web sample, 268-328 s without). An embedded Ray's workers run at the priority of the
            # command that started them, unless RAY_worker_niceness says otherwise.
            os.environ.setdefault("RAY_worker_niceness", "0")
            start_embedded(ray, dict(
                num_cpus=cfg.num_cpus if cfg else None, num_gpus=cfg.num_gpus if cfg else None,
                object_store_memory=cfg.object_store_memory if cfg else None, include_dashboard=False,
                log_to_driver=workers_to_terminal(), configure_logging=False))

    def release(self) -> None:
        """The component's phases are done: tear its kept workers down (a graceful ``teardown()`` each: engines
        and helper processes end) and give their CPUs and GPUs back for the next component."""
        if self._pool is None:
            return
        import ray

        _, _, actors = self._pool
        self._pool = None
        _stop_actors(ray, actors)

    def close(self) -> None:
        """An embedded Ray this executor started is stopped once every stage is done: the summary, the export and
        the report need none of it, and its daemons (~0.35 GiB PSS on the 12-file web sample: dashboard, agents,
        monitors, GCS) and idle workers were kept through the report, which takes the driver from ~0.1 to ~0.35
        GiB. A cluster, or a Ray someone else started (a test session's), is left as it is."""
        import ray

        if ray.is_initialized():
            self.release()
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
        self.owns_ray = False

    def abort(self) -> None:
        """After Ctrl-C: stop an embedded Ray now (its workers, raylet and stores), so that nothing of the run
        outlives the command; a cluster's workers were killed by ``run`` and the cluster is not ours."""
        import ray

        pool, self._pool = self._pool, None
        if pool is not None and ray.is_initialized():
            _stop_actors(ray, pool[2], graceful=False)
        if self.embedded and ray.is_initialized():
            ray.shutdown()

    # -- sizing --------------------------------------------------------------------------------------------
    def pool_size(self, component: Component, res: Resources, n_tasks: int) -> int:
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        largest = max((n["Resources"].get("CPU", 0) for n in nodes), default=0)
        if res.num_cpus > largest:  # such an actor waits for a node big enough to place it on
            msg = (f"stage {component.name} needs {res.num_cpus:g} CPUs per worker; the largest node has "
                   f"{largest:g} (set stages.{component.name}.num_cpus)")
            if self.embedded:  # no node will ever join a local Ray
                raise ResourceError(msg)
            log.warning("%s; waiting for the cluster to add one", msg)
        if res.concurrency:
            return max(1, min(res.concurrency, n_tasks))
        total = ray.cluster_resources()
        if res.num_gpus:
            fit = int(total.get("GPU", 0) // res.num_gpus)
            if fit < 1:
                raise ResourceError(f"stage {component.name} needs {res.num_gpus:g} GPU per worker and the cluster "
                                    f"has {total.get('GPU', 0):g}: run it where GPUs are, or set "
                                    f"stages.{component.name}.num_gpus=0 for a CPU build of vLLM")
        else:
            fit = int(total.get("CPU", 1) // max(res.num_cpus, 0.001))
        return max(1, min(fit, n_tasks))

    # -- the pool ------------------------------------------------------------------------------------------
    def run(self, component: Component, phase: Phase, tasks: list[Task], ctx: StageContext,
            on_done: OnDone) -> list[dict[str, Any]]:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

        if not tasks:
            return []
        self.start()
        res = phase.resources(component)
        if self._pool is not None and (self._pool[0] is not component or self._pool[1] != res):
            self.release()  # another component, or a phase that wants other workers
        kept, self._pool = (self._pool[2] if self._pool else []), None
        slots = max(1, res.tasks_per_worker)  # tasks one actor holds at once (its threads)
        actor_cls = ray.remote(_Worker).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_restarts=0,
                                                max_task_retries=0, max_concurrency=slots)
        size = self.pool_size(component, res, len(tasks))

        def setup_failed(exc: Exception, actors: list) -> RuntimeError:
            """A setup() that fails is a configuration or environment error (wrong model path, missing package),
            not bad data: it stops the run instead of rejecting rows."""
            for a in actors:
                ray.kill(a, no_restart=True)
            name, cause = failed_setup(component.name, _first_line(exc))
            return SetupError(f"stage {name!r}: a worker's setup() failed, stopping the run "
                              f"(finished shards are kept; rerun after fixing): {cause}")

        # kept workers are asked whether they are alive like new ones (one that died between the phases, e.g.
        # killed for memory, is replaced as a worker that died while starting, without costing a task a retry)
        starting = {a.ready.remote(): a for a in [*kept, *(actor_cls.remote(component, self.cwd)
                                                           for _ in range(max(0, size - len(kept))))]}
        idle: list = []  # one entry per free slot of a live actor
        dead: set = set()  # actors killed after a failure (their other in-flight tasks fail too)
        pending = list(reversed(tasks))
        attempts: dict[str, int] = {}
        start_deaths = 0  # workers that died in setup() without raising (each replaced; bounded)
        running: dict[Any, tuple[Any, Task]] = {}
        results = []
        interrupted = False
        finished = False
        try:
            while pending or running:
                while idle and pending:
                    actor = idle.pop()
                    task = pending.pop()
                    running[actor.run.remote(phase, task, ctx)] = (actor, task)
                if not running and not starting:  # every worker died while starting
                    raise RuntimeError(f"stage {component.name!r}: no worker could be started")
                done, _ = ray.wait(list(running) + list(starting), num_returns=1)
                ref = done[0]
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        ray.get(ref)
                    except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
                        if getattr(exc, "actor_init_failed", False) or start_deaths >= size + component.max_retries:
                            raise setup_failed(exc, [actor, *starting.values(), *idle,
                                                     *(a for a, _ in running.values())]) from None
                        # killed while starting (OOM, a lost node, a kill), not a setup() that raised: replace it
                        start_deaths += 1
                        record_event(ctx, {"event": "restart", "phase": phase.name, "task": "setup",
                                           "attempt": start_deaths, "why": _first_line(exc)})
                        log.warning("a %s worker died while starting, replacing it: %s", component.name,
                                    _first_line(exc))
                        replacement = actor_cls.remote(component, self.cwd)
                        starting[replacement.ready.remote()] = replacement
                        continue
                    idle += [actor] * slots
                    continue
                actor, task = running.pop(ref)
                try:
                    stats = ray.get(ref)
                except RayTaskError as exc:
                    if isinstance(exc.cause, (ConfigError, StorageError, SetupError)):  # one line, not a traceback
                        raise exc.cause from None
                    raise
                except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
                    key = phase.attempt_key(task, ctx)  # a chain of stages counts per stage and shard
                    attempts[key] = attempts.get(key, 0) + 1
                    if actor not in dead:  # one replacement per dead actor, however many tasks it held
                        dead.add(actor)
                        ray.kill(actor, no_restart=True)
                        idle = [a for a in idle if a is not actor]
                        replacement = actor_cls.remote(component, self.cwd)
                        starting[replacement.ready.remote()] = replacement
                    why = str(exc).splitlines()[0]
                    retry = attempts[key] <= phase.max_retries(component, task, ctx)
                    record_event(phase.event_context(task, ctx), {"event": "retry" if retry else "gave_up",
                                                                  "phase": phase.name, "task": task.key,
                                                                  "attempt": attempts[key], "why": why[:500]})
                    if retry:
                        log.warning("worker died on %s/%s/%s (attempt %d), retrying: %s", component.name,
                                    phase.name, task.key, attempts[key], why)
                        pending.append(task)
                    else:
                        log.error("task %s/%s/%s killed %d workers", component.name, phase.name, task.key,
                                  attempts[key])
                        stats = phase.on_dead(component, task, ctx, why)
                        results.append(stats)
                        on_done(stats)
                    continue
                if actor not in dead:
                    idle.append(actor)
                results.append(stats)
                on_done(stats)
            finished = True
        except KeyboardInterrupt:  # Ctrl-C: stop now; the tasks in flight are redone by the rerun
            interrupted = True
            raise
        finally:
            _stop_actors(ray, starting.values(), graceful=False)
            live = list({id(a): a for a in idle + [a for a, _ in running.values()] if a not in dead}.values())
            if finished:  # every task done: the workers wait, set up, for the component's next phase
                self._pool = (component, res, live)
            else:  # a graceful teardown only when not in a hurry (Ctrl-C)
                _stop_actors(ray, live, graceful=not interrupted)
        return results

