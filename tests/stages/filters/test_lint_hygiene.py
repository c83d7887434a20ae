"""A killed owner leaves no lint temp folder: the warm lint server notices its owner's death (its stdin closes),
exits and removes its private folder. Several kill points: right after start, while warming, after a lint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

OWNER = r"""
import json, sys, time
from stages.filters.lint.client import LintServer
from stages.filters.lint.score import SWALLOWCODE_DISABLE
server = LintServer(SWALLOWCODE_DISABLE, warm_modules=[] if sys.argv[1] == "cold" else None,
                    wait=sys.argv[1] != "start")
print(json.dumps({"tmp": server.tmp, "pid": server.proc.pid}), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("when", ["start", "cold", "warm"])
def test_a_killed_owner_leaves_no_lint_folder(when):
    owner = subprocess.Popen([sys.executable, "-c", OWNER, when], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    info = json.loads(owner.stdout.readline())
    assert os.path.isdir(info["tmp"])
    owner.send_signal(signal.SIGKILL)
    owner.wait(30)
    deadline = time.time() + 60
    while time.time() < deadline and (os.path.exists(info["tmp"]) or _alive(info["pid"])):
        time.sleep(0.2)
    assert not os.path.exists(info["tmp"]), f"{info['tmp']} left behind"
    assert not _alive(info["pid"]), "the lint server outlived its owner"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
