"""Every command's --help: never crashes, and every option says what it does in one line from one source (the
``#:`` comment above the field, or the argument's help)."""

from __future__ import annotations

import argparse
import re

import pytest

pytestmark = pytest.mark.fast


def subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in subparsers(sub))


def test_every_help_renders_and_every_option_is_described():
    from pipeline.cli import build_parser

    parser = build_parser(docs=True, stage_commands=True)
    undocumented = []
    seen = 0
    for name, sub in subparsers(parser):
        sub.format_help()  # (a % in a field's comment used to crash argparse here)
        seen += 1
        if name.startswith("test_"):  # stage types the tests register (tests/helpers.py), not the product's
            continue
        for action in sub._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or "-h" in action.option_strings:
                continue
            text = re.sub(r"\s*\((default: .*|required)\)\s*$", "", action.help or "").strip()
            if len(text) < 8 or text.lower().startswith("see the module"):
                undocumented.append(f"{name} {action.option_strings[-1]}")
    assert seen > 25
    assert not undocumented, f"{len(undocumented)} options without a description: {undocumented[:40]}"


def test_booleans_are_switches():
    from pipeline.cli import build_parser

    parser = build_parser(docs=False, stage_commands=True)
    sub = dict(subparsers(parser))["extract"]
    flags = {s for a in sub._actions for s in a.option_strings}
    assert "--math" in flags and "--no-math" in flags


@pytest.mark.parametrize("raw_stage,override,says", [
    ({"type": "lenght_filter"}, None, "did you mean 'length_filter'"),
    ({"type": "length_filter", "min_char": 5}, None, "did you mean 'min_chars'"),
    ({"type": "length_filter"}, "stages.lenght_filter.min_chars=3", "did you mean 'length_filter'"),
])
def test_typos_get_did_you_mean(raw_stage, override, says):
    from pipeline.run.config import ConfigError, load_config

    raw = {"kind": "code", "source": {"type": "records", "paths": ["x.parquet"]}, "stages": [raw_stage]}
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(None, [override] if override else None, raw=raw)
