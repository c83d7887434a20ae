"""The code follows the style pyproject.toml declares (``[tool.ruff]``: 120 columns, pyflakes, pycodestyle, isort's
order), checked with the project's own ruff."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.fast


def test_ruff_finds_nothing():
    from stages.text.python_code import ruff_bin

    proc = subprocess.run([ruff_bin(), "check", "--no-cache", "pipeline", "stages", "tests", "benchmarks", "jobs"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
