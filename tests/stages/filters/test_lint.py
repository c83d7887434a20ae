"""The lint filter: real pylint, scores equal to the CLI whatever ran before, per-file isolation, and no
configuration (or code) read from the disk around the lint process."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import WorkerBroken
from pipeline.proc.child import KILLS_PER_INPUT
from stages.filters.lint.client import PylintWorker
from stages.filters.lint.isolation import cli_command, lint_env, pylint_library
from stages.filters.lint.score import SWALLOWCODE_DISABLE, comment_ratio, module_name, pylint_args
from stages.filters.lint.stage import LintFilter
from stages.text.python_code import syntax_check
from tests.conftest import ROOT
from tests.helpers import compiles, table_of

shared = pytest.mark.shared_data


@pytest.mark.fast
def test_comment_ratio_definition():
    ratio, has_code = comment_ratio("# a\nx = 1  # b\n")
    # tokens: COMMENT NL NAME OP NUMBER COMMENT NEWLINE ENDMARKER -> 2 comments of 8 tokens
    assert ratio == pytest.approx(2 / 8) and has_code
    assert comment_ratio("# only\n# comments\n")[1] is False


@pytest.fixture(scope="module")
def pylib(tmp_path_factory):
    return pylint_library(str(tmp_path_factory.mktemp("pylib") / "lib"))


def cli_score(text: str, folder: Path, pylib: str | None) -> float:
    """``python -m pylint`` on the file alone, in an empty folder of its own, under the name our worker uses, with
    an explicit empty rcfile, in the same lint environment (``pylib``: the standard library and pylint's own
    packages; None: the whole virtual environment)."""
    folder.mkdir(parents=True)
    path = folder / f"{module_name(text)}.py"
    path.write_text(text, encoding="utf-8")
    rc = folder / "empty-pylintrc"
    rc.write_text("")
    out = subprocess.run([*cli_command(pylib), *pylint_args(SWALLOWCODE_DISABLE, str(rc)), str(path)],
                         capture_output=True, text=True, cwd=folder, env=lint_env(str(folder))).stdout
    m = re.search(r"rated at (-?[\d.]+)/10", out)
    return float(m.group(1)) if m else 0.0


def scores(worker: PylintWorker, texts: list[str]) -> list[float]:
    out = []
    for t in texts:
        status, score, detail = worker.lint(t, module_name(t))
        assert status == "ok", detail
        out.append(float(f"{score:.2f}") if score is not None else 0.0)
    return out


# ------------------------------------------------------------------------------------------------ determinism

def determinism_sample(corpus_rows) -> list[tuple[str, str]]:
    """(label, text) of >= 100 real files that stress import resolution: relative imports (``from .x import``,
    which resolve to whatever a long-lived process saw before), imports of names that are also stdlib or
    third-party modules (``util``, ``compat``, ``six``, ``test``, ...), and a random rest; plus the stdlib's
    ``wsgiref/handlers.py``, which scored 8.39 / 7.98 / 7.77 / 8.18 depending on history and machine."""
    ok = [r for r in corpus_rows if 200 < len(r["content"]) < 7000 and compiles(r["content"])]
    relative = [r for r in ok if re.search(r"^from \.+\w* import", r["content"], re.M)][:40]
    shadow = re.compile(r"^(from|import) (util|utils|compat|six|test|tests|types|string|parser|config|random|"
                        r"select|signal|logging|queue)\b", re.M)
    named = [r for r in ok if shadow.search(r["content"]) and r not in relative][:30]
    rest = [r for r in ok if r not in relative and r not in named]
    picked = relative + named + random.Random(7).sample(rest, 40)
    handlers = Path(sysconfig.get_paths()["stdlib"]) / "wsgiref" / "handlers.py"
    return [("stdlib:wsgiref/handlers.py", handlers.read_text())] + \
        [(f"{r['repo']}/{r['path']}", r["content"]) for r in picked]


@shared
def test_scores_are_a_function_of_the_file_alone(tmp_path, corpus_rows, ray_session, pylib):
    """The same scores alone (a fresh worker per file), in two orders through one worker, in a full pipeline run
    on Ray, and from ``python -m pylint``: history never changes a verdict."""
    sample = determinism_sample(corpus_rows)
    assert len(sample) >= 100
    texts = [t for _, t in sample]
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=120)
    try:
        forward = scores(w, texts)
        backward = scores(w, texts[::-1])[::-1]
    finally:
        w.close()
    alone = []
    for text in texts[:4]:  # wsgiref/handlers.py first
        w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=120)
        try:
            alone += scores(w, [text])
        finally:
            w.close()

    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline

    rows = [{"id": f"d{i}", "text": t, "source_file": "sample", "source_offset": i, "repo": None, "path": label,
             "license": None, "blob_id": None, "language": "python"} for i, (label, t) in enumerate(sample)]
    src = tmp_path / "records.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=9)
    raw = {"kind": "code", "source": {"type": "records", "paths": [str(src)], "shard_bytes": 1},
           "stages": [{"type": "lint_filter", "batch_size": 4}], "export": {"enabled": False}}
    run_pipeline(load_config(None, raw=raw), tmp_path / "run", progress=False)
    out = pa.concat_tables([pq.read_table(f) for f in (tmp_path / "run" / "stages" / "01-lint_filter").glob("*/*.parquet")  # noqa: E501
                            if f.parent.name in ("kept", "rejected")], promote_options="permissive")
    full = dict(zip(out.column("id").to_pylist(), out.column("pylint_score").to_pylist()))
    in_run = [full[f"d{i}"] if full[f"d{i}"] is not None else 0.0 for i in range(len(sample))]

    with ThreadPoolExecutor(2) as pool:
        cli = list(pool.map(lambda it: cli_score(it[1], tmp_path / "cli" / str(it[0]), pylib), enumerate(texts)))
    labels = [label for label, _ in sample]
    differ = [(labels[i], cli[i], forward[i], backward[i], in_run[i]) for i in range(len(texts))
              if not cli[i] == forward[i] == backward[i] == in_run[i]]
    assert not differ, differ[:5]
    assert alone == cli[:4]
    assert len(set(cli)) > 10  # a real spread of scores, not a constant


@pytest.mark.fast
def test_scores_do_not_depend_on_the_callers_environment(tmp_path, pylib, monkeypatch):
    """The caller's environment variables never reach pylint. Regression: the lint process inherited them, and
    astroid infers through ``os.environ``; the standard library's ``wsgiref/handlers.py`` scored 8.18 from one
    shell and 8.39 from the same shell with 14 more variables, and the worker and the CLI disagreed in CI
    (8.39 / 8.18). Here: the CLI and a worker from a plain and from a crowded environment all agree."""
    text = (Path(sysconfig.get_paths()["stdlib"]) / "wsgiref" / "handlers.py").read_text()
    got = [cli_score(text, tmp_path / "plain", pylib)]
    for j in range(40):
        monkeypatch.setenv(f"SWALLOW_TEST_VAR_{j}", "y" * (17 * j % 300))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    got.append(cli_score(text, tmp_path / "crowded", pylib))
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=120)
    try:
        got += scores(w, [text])
    finally:
        w.close()
    assert got[0] == got[1] == got[2], got


@shared
def test_inherit_environment_is_history_free_too(tmp_path, corpus_rows):
    """With every installed package importable (``environment: inherit``), scores still equal the CLI's in the
    same virtual environment. Regression: linting a file that makes astroid look up `pip` turned setuptools'
    distutils hack off in a long-lived process; a later setuptools file then scored 8.19 instead of 8.10."""
    by_path = {r["path"]: r["content"] for r in corpus_rows}
    first = by_path["python3/venv/lib/python3.7/site-packages/pip/_vendor/urllib3/packages/ssl_match_hostname/"
                    "_implementation.py"]
    second = by_path["setuptools/command/sdist.py"]
    third = by_path["sympy/series/acceleration.py"]  # imports sympy, installed here (a vLLM dependency)
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=60, environment="inherit")
    try:
        got = scores(w, [first, second, third])
    finally:
        w.close()
    assert got[1:] == [cli_score(second, tmp_path / "cli2", None), cli_score(third, tmp_path / "cli3", None)]


def test_the_stdlib_environment_does_not_see_installed_packages(tmp_path, pylib):
    """A file that uses an installed package (PyYAML here) scores the same as if it were absent: the score does
    not depend on what the worker machine has installed."""
    uses_yaml = "import yaml\n\n\ndef f(x):\n    return yaml.no_such_function(x)\n"
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=60, warm_modules=[])
    w2 = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=60, warm_modules=[], environment="inherit")
    try:
        iso, inherit = scores(w, [uses_yaml]), scores(w2, [uses_yaml])
    finally:
        w.close()
        w2.close()
    assert iso == [10.0] and inherit[0] < 10.0  # E1101 no-member only where yaml is resolvable
    assert iso[0] == cli_score(uses_yaml, tmp_path / "cli", pylib)


@pytest.mark.fast
def test_scores_and_decision_columns():
    """final = raw x (1 - ratio), the threshold applies to it; an all-comment file scores 0."""
    stage = LintFilter(min_score=7.0, warm_modules=[])
    stage.setup()
    try:
        texts = ["import os\n\n\ndef f():\n    return os.sep\n", "# just\n# comments\n",
                 "import os,sys\nx=1\n# a comment\n# another\n", "def f(a):\n    return a  # why\n"]
        v = stage.process(table_of(texts))
    finally:
        stage.teardown()
    raw = v.columns["pylint_score"].to_pylist()
    for r, ratio, final, reason in zip(raw, v.columns["comment_ratio"].to_pylist(),
                                       v.columns["lint_score"].to_pylist(), v.reasons):
        if r is not None and ratio is not None and final:
            assert final == pytest.approx(r * (1 - ratio))
        assert (reason is None) == (final >= 7.0)
    assert v.columns["lint_score"].to_pylist()[1] == 0.0 and v.reasons[1] == "low_lint_score"


@pytest.mark.fast
def test_process_before_setup_is_an_error():
    from pipeline.core.component import NotSetUp

    with pytest.raises(NotSetUp):
        LintFilter().process(table_of(["x = 1\n"]))


# ------------------------------------------------------------------------------------------------ isolation

BIG = "\n".join(f"def f{i}(a, b):\n    return a + b * {i}\n" for i in range(3000))  # ~2 s of pylint


@pytest.mark.fast
def test_timeout_kills_only_that_files_child():
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=0.5, warm_modules=[])
    try:
        assert w.lint("import os\n\nprint(os.sep)\n", "warm")[0] == "ok"
        server = w.server_pid
        status, score, detail = w.lint(BIG, "big")
        assert status == "lint_timeout" and score is None and "0.5" in detail
        status, score, _ = w.lint("import os\n\nprint(os.sep)\n", "after")
        assert status == "ok" and score == 10.0 and w.server_pid == server  # the warm server went on
    finally:
        w.close()


MEDIUM = "\n".join(f"def f{i}(a, b):\n    return a + b * {i}\n" for i in range(200)) + "\nx = f1(1, 2)\n"


def kill_children(server_pid: int, n: int, sig: int = signal.SIGKILL) -> threading.Thread:
    """Send ``sig`` to the first ``n`` lint children the server forks, each as soon as it appears."""
    import psutil

    server = psutil.Process(server_pid)

    def loop():
        killed, deadline = set(), time.time() + 60
        while len(killed) < n and time.time() < deadline:
            for child in server.children():
                if child.pid not in killed:
                    child.send_signal(sig)
                    killed.add(child.pid)
            time.sleep(0.005)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_kills_of_a_lint_child_never_change_a_verdict_and_a_crash_twice_is_lint_error():
    """A kill from outside (SIGKILL: the OOM killer, a person) never changes a verdict: the file is linted again
    in a fresh child and gets the score a clean lint gives, however many kills land; a third on one file breaks
    the worker (the executor retries the shard elsewhere) instead of rejecting the file. A child that crashes
    (SIGSEGV) twice is the file's ``lint_error``. The server goes on either way."""
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=30, warm_modules=[])
    try:
        clean = w.lint(MEDIUM, "clean")
        assert clean[0] == "ok"
        server = w.server_pid
        killer = kill_children(server, KILLS_PER_INPUT - 1)
        assert w.lint(MEDIUM, "killed") == clean
        killer.join()
        killer = kill_children(server, KILLS_PER_INPUT)
        with pytest.raises(WorkerBroken, match="SIGKILL"):
            w.lint(MEDIUM, "always")
        killer.join()
        killer = kill_children(server, 1, signal.SIGSEGV)
        assert w.lint(MEDIUM, "crashed") == clean
        killer.join()
        killer = kill_children(server, 2, signal.SIGSEGV)
        status, _, detail = w.lint(MEDIUM, "twice")
        killer.join()
        assert status == "lint_error" and "died" in detail and "signal 11" in detail
        assert w.lint("x = 1\n", "after")[0] == "ok" and w.server_pid == server
    finally:
        w.close()


def test_a_server_that_dies_is_replaced_and_the_file_linted_again():
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=30, warm_modules=[])
    try:
        clean = w.lint(BIG, "warm")
        victim = w.server_pid
        threading.Timer(0.7, lambda: os.kill(victim, 9)).start()
        assert w.lint(BIG, "big") == clean  # the file's verdict, from a fresh server of the worker's own
        assert w.server_pid != victim
    finally:
        w.close()


@pytest.mark.fast
def test_pylint_internal_crash_on_deep_nesting_is_lint_error():
    deep = "a = 1\nx = " + " + ".join(["a"] * 2000) + "\n"
    assert syntax_check(deep) == (None, None)  # CPython accepts it; pylint's AST builder recurses too deep
    stage = LintFilter(warm_modules=[])
    stage.setup()
    try:
        v = stage.process(table_of([deep, "import os\n\nprint(os.getcwd())\n"]))
    finally:
        stage.teardown()
    assert v.reasons[0] == "lint_error" and "astroid-error" in v.details[0]
    assert v.reasons[1] is None


@pytest.mark.fast
def test_module_names_never_leave_the_lint_folder():
    """The file name comes from the content: a hostile id or path cannot name a file outside the folder."""
    assert re.fullmatch(r"m_[0-9a-f]{16}", module_name("x = 1\n"))
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=30, warm_modules=[])
    try:
        with pytest.raises(ValueError):
            w.lint("x = 1\n", "../../escape")
    finally:
        w.close()


# ------------------------------------------------------------------------------------------------ no configuration

HOOK = "open({marker!r}, 'w').write('ran')"
#: (where, file name, content template): every place pylint looks for configuration by default, each with an
#: init-hook (code pylint would run) and options that would change every score.
HOSTILE = [
    ("tmpdir", "pyproject.toml", "[tool.pylint.main]\ninit-hook = \"{hook}\"\n[tool.pylint.'messages control']\n"
                                 "disable = ['all']\n"),
    ("tmpdir", "pylintrc", "[MAIN]\ninit-hook={hook}\n[MESSAGES CONTROL]\nenable=all\n"),
    ("tmpdir", ".pylintrc", "[MAIN]\ninit-hook={hook}\nmax-line-length=5\n"),
    ("tmpdir", "setup.cfg", "[pylint.main]\ninit-hook={hook}\n"),
    ("tmpdir", "tox.ini", "[pylint.main]\ninit-hook={hook}\n"),
    ("home", ".pylintrc", "[MAIN]\ninit-hook={hook}\n"),
    ("home", ".config/pylintrc", "[MAIN]\ninit-hook={hook}\n"),
    ("envvar", "hostile.rc", "[MAIN]\ninit-hook={hook}\nload-plugins=hostile_plugin\n"),
    ("cwd", "pyproject.toml", "[tool.pylint.main]\ninit-hook = \"{hook}\"\n"),
    ("pythonpath", "sitecustomize.py", "{hook}\n"),
]
SAMPLES = ["import os\n\n\ndef f():\n    return os.sep\n", "import os,sys\nx=1;y=2\n"]


@pytest.fixture(scope="module")
def clean_scores():
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=60, warm_modules=[])
    try:
        return scores(w, SAMPLES)
    finally:
        w.close()


@pytest.mark.fast
def test_a_deep_temp_folder_still_lints(tmp_path, monkeypatch, clean_scores):
    """A TMPDIR so deep that the server's socket path would pass the 107 bytes a unix socket may have (under
    pytest-xdist the hostile-TMPDIR tests got there: the server could not bind and exited): the socket goes into
    a short private folder instead, and both folders are gone after close."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", None)
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=60, warm_modules=[])
    try:
        assert scores(w, SAMPLES) == clean_scores
        server = w.own
        assert Path(server.tmp).parent == deep and server.sock_dir and len(server.socket.encode()) <= 107
    finally:
        w.close()
    assert not Path(server.tmp).exists() and not Path(server.sock_dir).exists()


@pytest.mark.parametrize("where,name,template", HOSTILE, ids=[f"{w}-{n}" for w, n, _ in HOSTILE])
def test_no_configuration_or_code_from_the_disk(tmp_path, monkeypatch, clean_scores, where, name, template):
    """Whatever is on disk (the temp folder, HOME, $PYLINTRC, the working folder, PYTHONPATH), the lint runs
    no foreign code and reads no foreign options: no marker file, the same scores as in a clean environment."""
    marker = tmp_path / "RAN"
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    cfg = hostile / name
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(template.format(hook=HOOK.format(marker=str(marker))))
    if where == "tmpdir":
        monkeypatch.setenv("TMPDIR", str(hostile))
        monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    elif where == "home":
        monkeypatch.setenv("HOME", str(hostile))
    elif where == "envvar":
        monkeypatch.setenv("PYLINTRC", str(cfg))
    elif where == "cwd":
        monkeypatch.chdir(hostile)
    elif where == "pythonpath":
        monkeypatch.setenv("PYTHONPATH", str(hostile))
    w = PylintWorker(SWALLOWCODE_DISABLE, timeout_s=60, warm_modules=[])
    try:
        got = scores(w, SAMPLES)
        if where == "tmpdir":
            assert Path(w.own.tmp).parent == hostile  # the attack's premise: the lint folder is inside it
    finally:
        w.close()
    assert not marker.exists(), f"code from {where}/{name} ran in the lint process"
    assert got == clean_scores


@shared
def test_swallow_lint_filter_with_a_hostile_tmpdir(tmp_path, request):
    """The issue's reproduction, through the command a user types."""
    marker = tmp_path / "PWNED"
    hostile = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))  # short: Ray puts its unix sockets under TMPDIR
    request.addfinalizer(lambda: shutil.rmtree(hostile, ignore_errors=True))
    (hostile / "pyproject.toml").write_text(f"[tool.pylint.main]\ninit-hook = \"open('{marker}', 'w')\"\n")
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": SAMPLES, "path": ["a.py", "b.py"], "repo": ["r", "r"],
                             "license": ["mit", "mit"], "blob_id": ["a", "b"]}), src)
    env = {**os.environ, "TMPDIR": str(hostile), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "lint_filter", "--input", str(src), "--output",
                           str(tmp_path / "run"), "--no-progress", "--set", "stages.lint_filter.warm_modules=[]"],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not marker.exists()
