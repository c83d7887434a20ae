"""One lock holder: 100 trials of 3 processes released together by a barrier onto a run directory whose lock file
was left by a killed run. In every trial exactly one process holds the directory, never two at once (the old
stale-lock takeover, which deleted the file by path, let two or three in on 99 of 100 trials)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import time

import pytest

from pipeline.store.lock import LockError, RunLock

pytestmark = pytest.mark.fast

TRIALS, PROCS = 100, 3


def contender(run_dir: str, start, end, holding, most, wins, trials: int) -> None:
    for _ in range(trials):
        start.wait()
        lock = RunLock(run_dir)
        try:
            lock.acquire()
        except LockError:
            pass
        else:
            with holding.get_lock():
                holding.value += 1
                most.value = max(most.value, holding.value)
            with wins.get_lock():
                wins.value += 1
            time.sleep(0.02)  # hold it while the others try
            with holding.get_lock():
                holding.value -= 1
            lock.release()
        end.wait()


def test_simultaneous_starters_on_a_stale_lock_get_one_holder(tmp_path):
    ctx = mp.get_context("fork")
    start, end = ctx.Barrier(PROCS + 1), ctx.Barrier(PROCS + 1)
    holding, most, wins = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    procs = [ctx.Process(target=contender, args=(str(tmp_path), start, end, holding, most, wins, TRIALS))
             for _ in range(PROCS)]
    for p in procs:
        p.start()
    per_trial = []
    try:
        for _ in range(TRIALS):
            (tmp_path / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 17,
                                                        "since": "a killed run"}))
            before = wins.value
            start.wait(timeout=60)
            end.wait(timeout=60)
            per_trial.append(wins.value - before)
    finally:
        for p in procs:
            p.join(timeout=60)
    assert most.value == 1, f"{most.value} processes held the lock at once"
    assert per_trial == [1] * TRIALS, per_trial  # (holders keep it while the others try: exactly one per trial)


def test_a_held_lock_names_its_holder(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(LockError, match=rf"pid {os.getpid()} on {socket.gethostname()}"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire()  # released: free again
