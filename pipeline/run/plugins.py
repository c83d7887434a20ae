"""Finding component types without naming them: entry points and the ``plugins:`` key.

Packages declare their types under the entry-point groups ``swallow.sources``, ``swallow.stages`` and
``swallow.outputs`` (name = type, value = ``module:Class``), and extra CLI commands under ``swallow.commands``
(value = a function that adds a subparser), and checks of folders that are not runs under ``swallow.folders``
(a function of the folder: its problems, or None when the folder is not of its kind; ``swallow verify`` asks them).
This project declares its own that way in ``pyproject.toml``; from a
plain checkout that was never installed (``PYTHONPATH=.``) the same table is read from that file. A config's
``plugins: [my.module]`` imports ad-hoc modules whose classes register themselves when defined.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from pipeline.core.component import REGISTRY, Component

GROUPS = {"source": "swallow.sources", "stage": "swallow.stages", "output": "swallow.outputs"}
COMMANDS = "swallow.commands"
FOLDERS = "swallow.folders"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
DIST = "swallow-curator"


class PluginError(ImportError):
    """A declared type or plugin module cannot be imported (a missing optional dependency, a typo)."""


@lru_cache(maxsize=1)
def declared() -> dict[str, dict[str, str]]:
    """group -> name -> ``module:attr``, from the installed distribution's entry points, else pyproject.toml."""
    out: dict[str, dict[str, str]] = {g: {} for g in (*GROUPS.values(), COMMANDS, FOLDERS)}
    eps = metadata.entry_points()
    ours_installed = False
    for group in out:
        for ep in eps.select(group=group):
            out[group][ep.name] = ep.value
            if ep.dist is not None and ep.dist.name == DIST:
                ours_installed = True
    if not ours_installed and PYPROJECT.exists():
        import tomllib

        table = tomllib.loads(PYPROJECT.read_text()).get("project", {}).get("entry-points", {})
        for group, entries in table.items():
            if group in out:
                for name, value in entries.items():
                    out[group].setdefault(name, value)
    return out


def _load(value: str, what: str):
    module, _, attr = value.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise PluginError(f"{what}: cannot import {module!r}: {exc}") from None
    return getattr(mod, attr) if attr else mod


def component_class(role: str, type_name: str) -> type[Component] | None:
    """The registered class of ``type_name`` for ``role``, importing its declared module if needed."""
    if type_name in REGISTRY[role]:
        return REGISTRY[role][type_name]
    value = declared()[GROUPS[role]].get(type_name)
    if value is None:
        return None
    _load(value, f"{role} type {type_name!r}")
    return REGISTRY[role].get(type_name)


def known_types(role: str) -> list[str]:
    return sorted(set(REGISTRY[role]) | set(declared()[GROUPS[role]]))


def load_all(role: str) -> dict[str, type[Component]]:
    """Import every declared type of ``role`` (the CLI's subcommands); types that cannot import are skipped."""
    for name in known_types(role):
        try:
            component_class(role, name)
        except PluginError:
            pass
    return dict(REGISTRY[role])


def import_modules(modules: list[str]) -> None:
    for mod in modules:
        _load(mod, "plugins")


def _loadable(group: str, what: str) -> list:
    """Every entry point of ``group`` that loads, by name (one that does not is left out)."""
    out = []
    for name, value in sorted(declared()[group].items()):
        try:
            out.append(_load(value, f"{what} {name!r}"))
        except PluginError:
            pass
    return out


def commands() -> list:
    """Functions that each add a CLI subcommand (``swallow publish``, ...)."""
    return _loadable(COMMANDS, "command")


def folder_checks() -> list:
    """Functions that verify a kind of folder that is not a run (a mixture, ...)."""
    return _loadable(FOLDERS, "folder check")
