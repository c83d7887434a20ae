"""ruff gate/format and the script filter, with the real ruff binary."""

from __future__ import annotations

import pytest

from stages.filters.ruff import RuffFormat, RuffGate
from stages.filters.script import ScriptFilter
from tests.helpers import table_of


@pytest.mark.fast
def test_ruff_gate_and_format():
    good = "import os\n\n\ndef f():\n    return os.sep\n"
    bad = "import os, sys, re\nx = undefined_a\ny = undefined_b\nz = undefined_c\n"
    v = RuffGate().process(table_of([good, bad]))
    assert v.reasons == [None, "ruff_gate"]
    assert v.columns["ruff_violations"].to_pylist()[1] >= 3
    f = RuffFormat().process(table_of(["x=[1,2 ,3]\n", "def (:\n"]))
    assert f.columns["text"][0] == "x = [1, 2, 3]\n" and f.reasons == [None, "format_error"]


@pytest.mark.fast
def test_script_filter():
    v = ScriptFilter().process(table_of(["# 日本語のコメント\nx = 'ok'\n", "# комментарий\nx = 1\n", "x = 'é'\n"]))
    assert v.reasons == [None, "disallowed_script", "disallowed_script"]
