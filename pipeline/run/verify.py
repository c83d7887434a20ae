"""``swallow verify``: a run is complete and consistent. The ledger proves what the files say on their own
(``pipeline/store/ledger.py``: every input id kept or rejected exactly once, the seals, the root hash); here the run's
config is loaded back from ``run.yaml`` to check that the stages ran with it and to run each stage's and the
output's own invariants (``Stage.verify``, ``Output.verify``)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.store.ledger import ledger_problems
from pipeline.store.shards import StageDir, TamperedError


def verify(run_dir: str | Path, root: str | None = None) -> list[str]:
    """Return a list of problems (empty when the run is complete and consistent). ``root``: a root hash held
    elsewhere that the run must have (``pipeline/store/run_tree.py``)."""
    problems, stages = ledger_problems(run_dir, root)
    return problems + (component_checks(Path(run_dir), stages) if stages else [])


def component_checks(run_dir: Path, stages: list[StageDir]) -> list[str]:
    """run.yaml and plan.json against what the stages ran with; each stage's own invariants (``Stage.verify``) and
    the output's (``Output.verify``), from run.yaml."""
    import yaml

    from pipeline.run.config import ConfigError, load_config

    run_yaml = run_dir / "run.yaml"
    if not run_yaml.exists():
        return [f"{run_dir}: no run.yaml: cannot check the stages' own invariants"]
    try:
        cfg = load_config(None, raw=yaml.safe_load(run_yaml.read_text()))
    except (ConfigError, yaml.YAMLError) as exc:
        return [f"{run_yaml}: cannot load the run's config to check its stages: {exc}"]
    problems = []
    by_dir = {sd.path.name: sd for sd in stages}
    if sorted(by_dir) != sorted(f"{i:02d}-{c.name}" for i, c in enumerate(cfg.components())):
        problems.append(f"{run_yaml}: its stages differ from the run's stage folders {sorted(by_dir)}")
    for i, comp in enumerate(cfg.components()):
        sd = by_dir.get(f"{i:02d}-{comp.name}")
        if sd is not None and sd.config() != json.loads(json.dumps(comp.config_dict(), default=str)):
            problems.append(f"{run_yaml}: stage {comp.name!r} differs from the config its shards ran with "
                            f"({sd.path.name}/stage.json): run.yaml was edited")
    if stages:
        plan = json.loads((run_dir / "plan.json").read_text())
        for shard in stages[0].done_shards():
            try:
                ran = stages[0].verified_stats(shard).get("source")
            except (TamperedError, OSError, ValueError):
                continue  # (reported with the shard's files)
            if ran is not None and ran != plan.get(shard):
                problems.append(f"{run_dir / 'plan.json'}: shard {shard} differs from what the source read: "
                                "plan.json was edited")
    for i, comp in enumerate(cfg.components()):
        sd = by_dir.get(f"{i:02d}-{comp.name}")
        check = getattr(comp, "verify", None)
        if sd is not None and check is not None:
            problems += _guarded(check, sd, f"{sd.path.name}: the stage's own check")
    check = getattr(cfg.export, "verify", None)
    if check is not None:
        problems += _guarded(check, run_dir, "dataset")
    return problems


def _guarded(check, arg, where: str) -> list[str]:
    """A component's own check; a file it cannot read (no Parquet, not ours) is a problem named, not a crash."""
    try:
        return check(arg)
    except Exception as exc:  # noqa: BLE001 - verify reports, it never raises on what it reads
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return [f"{where}: could not be checked: {type(exc).__name__}: {first}"]
