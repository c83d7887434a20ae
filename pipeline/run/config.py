"""Pipeline configuration: YAML validated against the stages' own schemas, with ``--set`` overrides.

Every stage and source is a pydantic model, so its fields are the schema: an unknown or ill-typed key fails
before any work with a message naming the file and the key (``configs/x.yaml: stages.lint_filter.min_score:
Input should be a valid number``). ``--set KEY=VALUE`` overrides any key; stages are addressed by name
(``stages.lint_filter.min_score=8``), values are parsed as YAML (``--set ray.num_cpus=4``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.core.component import Component
from pipeline.core.errors import ConfigError
from pipeline.core.where import columns as where_columns
from pipeline.run import plugins

__all__ = ["ConfigError", "PipelineConfig", "load_config", "dump_config"]


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: Cluster address; default: $RAY_ADDRESS (set by ``ray job submit``), else an embedded local Ray.
    address: str | None = None
    #: Logical CPUs of the embedded local Ray (default: the machine's).
    num_cpus: int | None = Field(None, ge=1, le=100_000)
    num_gpus: int | None = Field(None, ge=0, le=100_000)
    #: Object store size of the embedded local Ray, bytes (Ray's default takes 30% of RAM).
    object_store_memory: int | None = Field(1_000_000_000, ge=78_643_200, le=2**50)


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    #: Dataset kind: decides the base schema checked on every shard.
    kind: Literal["code", "web"]
    #: The first stage: turns raw inputs into records (``pipeline.core.source.Source``).
    source: Any
    #: Stages in order (``pipeline.core.stage.Stage``).
    stages: list[Any] = []
    ray: RayConfig = RayConfig()
    #: What the run writes at the end from the last stage's kept rows (an output type; default ``dataset``:
    #: bounded Parquet files and a dataset card under RUN/dataset). ``enabled: false`` skips it.
    export: Any = None
    #: Free-form description written into the dataset card.
    description: str = ""
    #: Run consecutive row-wise stages with equal resources as one chain (one worker per shard hands each stage's
    #: kept rows to the next in memory; every stage still writes its own files): ``pipeline/phases/chain.py``.
    chain_stages: bool = True
    #: Python modules imported before validation, to register your own stage types (no project change needed).
    plugins: list[str] = []

    def components(self) -> list[Component]:
        return [self.source, *self.stages]


def _fmt_loc(prefix: str, loc: tuple) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        parts.append(f"[{item}]" if isinstance(item, int) else str(item))
    return ".".join(parts).replace(".[", "[")


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _errors(where: str, prefix: str, exc: ValidationError, fields=()) -> str:
    lines = []
    for err in exc.errors():
        key = _fmt_loc(prefix, err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(err["loc"][-1], fields)
        else:
            msg = err["msg"]
        lines.append(f"{where}: {key}: {msg}")
    return "\n".join(lines)


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one ``KEY=VALUE`` override to the raw config dict; stages are addressed by name."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE")
    key, _, value_text = assignment.partition("=")
    value = safe_yaml(value_text, f"--set {key}"[:200]) if value_text != "" else ""
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            match = [s for s in node if isinstance(s, dict) and (s.get("name") or s.get("type")) == part]
            if not match:
                names = [s.get("name") or s.get("type") for s in node if isinstance(s, dict)]
                raise ConfigError(f"--set {key}: no stage named {part!r}{did_you_mean(part, names)} (stages: "
                                  f"{', '.join(names)})")
            node = match[0]
        else:
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        raise ConfigError(f"--set {key}: name a key inside stage {last!r}")
    node[last] = value


def build_component(where: str, prefix: str, raw: Any, role: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {prefix}: expected a mapping, got {type(raw).__name__}")
    type_name = raw.get("type")
    try:
        cls = plugins.component_class(role, type_name) if isinstance(type_name, str) else None
    except plugins.PluginError as exc:
        raise ConfigError(f"{where}: {prefix}.type: {exc}") from None
    if cls is None:
        known = plugins.known_types(role)
        raise ConfigError(f"{where}: {prefix}.type: unknown {role} type {type_name!r}{did_you_mean(type_name, known)};"
                          f" known: {', '.join(known)}")
    fields = {k: v for k, v in raw.items() if k != "type"}
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise ConfigError(_errors(where, prefix, exc, cls.model_fields)) from None


def check_columns(where: str, source: Any, stages: list[Any]) -> None:
    """Every column a stage reads (``Stage.reads``: its ``column``, its ``where:``) is made by the source or an
    earlier stage (``makes``); else a config error naming the stage, the column and what is there. Stops where
    the columns are known only from the data (a ``records`` source, a stage that declares nothing)."""
    have = source.makes()
    for s in stages:
        if have is None:
            return
        missing = sorted(s.reads() - have)
        if missing:
            col = missing[0]
            key = ".column" if col == getattr(s, "column", None) else ".where" if s.where and col in \
                where_columns(s.where) else ""
            raise ConfigError(f"{where}: stages.{s.name}{key}: no column {col!r} here: neither the source "
                              f"({source.type}) nor an earlier stage makes it (columns: {', '.join(sorted(have))})")
        made = s.makes()
        have = None if made is None else have | made


#: A configuration is a few KB; YAML's aliases can make a few hundred bytes expand to gigabytes when the loaded
#: structure is walked or dumped ("billion laughs"): configs are bounded in size and in alias uses.
MAX_CONFIG_BYTES = 1 << 20
MAX_ALIASES = 100


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses more than ``MAX_ALIASES`` alias uses in a document."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} YAML aliases (*name): refused, they can expand a "
                                     f"small file to gigabytes")
        return super().compose_node(parent, index)


def safe_yaml(text: str | bytes, where: str):
    """A config's YAML, bounded (``MAX_CONFIG_BYTES``, ``MAX_ALIASES``); ConfigError naming ``where``."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: {len(text):,} bytes; a configuration is at most {MAX_CONFIG_BYTES:,}")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {str(exc).splitlines()[0] if str(exc) else exc}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                raw: dict | None = None) -> PipelineConfig:
    """Read, override and validate a pipeline config; raise ConfigError naming the file and key."""
    where = str(path) if path else "<config>"
    if raw is None:
        try:
            if Path(path).stat().st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{where}: over {MAX_CONFIG_BYTES:,} bytes: not a configuration")
            raw = safe_yaml(Path(path).read_bytes(), where) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {where} does not exist") from None
    raw = copy.deepcopy(raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping")
    for ov in overrides or []:
        apply_override(raw, ov)
    mods = raw.get("plugins") or []
    if not isinstance(mods, list):
        raise ConfigError(f"{where}: plugins: expected a list of module names")
    try:
        plugins.import_modules([str(m) for m in mods])
    except plugins.PluginError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if "source" not in raw:
        raise ConfigError(f"{where}: source: missing required key")
    source = build_component(where, "source", raw["source"], "source")
    stage_list = raw.get("stages") or []
    if not isinstance(stage_list, list):
        raise ConfigError(f"{where}: stages: expected a list")
    built = []
    for i, s in enumerate(stage_list):
        label = f"stages[{i}]"
        if isinstance(s, dict) and (s.get("name") or s.get("type")):
            label = f"stages.{s.get('name') or s.get('type')}"
        built.append(build_component(where, label, s, "stage"))
    check_columns(where, source, built)
    names = [source.name] + [s.name for s in built]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{where}: stages: duplicate stage names {sorted(dup)}; give each a distinct `name`")
    export_raw = raw.get("export") if raw.get("export") is not None else {}
    if isinstance(export_raw, dict):
        export_raw = {"type": "dataset", **export_raw}
    export = build_component(where, "export", export_raw, "output")
    rest = {k: v for k, v in raw.items() if k not in ("source", "stages", "export")}
    try:
        return PipelineConfig(source=source, stages=built, export=export, **rest)
    except ValidationError as exc:
        raise ConfigError(_errors(where, "", exc)) from None


def dump_config(cfg: PipelineConfig) -> dict:
    """The resolved config as plain data (what a run records and compares on resume)."""
    out = cfg.model_dump(exclude={"source", "stages", "export"})
    out["source"] = cfg.source.config_dict()
    out["stages"] = [s.config_dict() for s in cfg.stages]
    out["export"] = cfg.export.config_dict()
    return out
