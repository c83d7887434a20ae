"""``swallow publish`` failures: one line each, exit 2, retried where a retry can help, no secret printed.
The Hub cannot be reached from tests: a local HTTP stand-in (tests/hub_standin.py) answers instead."""

from __future__ import annotations

import socket

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.fast
SECRET = "hf_" + "s3cr3t" * 6


@pytest.fixture
def exported(tmp_path, monkeypatch):
    """A real (tiny, in-process) run with its exported dataset: publish refuses a run that does not verify."""
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": ["x = 1\n", "def f(:\n"], "path": ["a.py", "b.py"]}), src)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)]}, "stages": [{"type": "syntax_filter"}],
           "export": {"license": "mit"}}
    run_pipeline(load_config(None, raw=raw), tmp_path / "run", progress=False, executor="inline")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    return tmp_path / "run"


def publish(run, repo="org/name"):
    from pipeline.cli import main

    return main(["publish", str(run), f"--repo-id={repo}", "--backoff-s", "0.001"])


def creates(hub) -> int:
    return sum(1 for method, path, _ in hub.requests if method == "POST" and path.startswith("/api/repos/create"))


def one_line(capsys):
    cap = capsys.readouterr()
    lines = [line for line in cap.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    assert SECRET not in cap.out + cap.err
    return lines[0]


@pytest.mark.parametrize("status,body", [
    (500, f"internal error for token {SECRET}"),
    (503, f"Authorization: Bearer {SECRET} rejected upstream"),
    (502, '{"token": "' + SECRET + '"}'),
])
def test_server_errors_are_retried_then_one_redacted_line(exported, capsys, monkeypatch, status, body):
    from tests.hub_standin import HubStandIn

    with HubStandIn(fail_all_with=(status, body)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert publish(exported) == 2
        assert creates(hub) == 7  # the first try and 6 retries
    line = one_line(capsys)
    assert f"HTTP {status}" in line and "create_repo failed" in line and "[redacted]" in line


def test_client_errors_are_not_retried(exported, capsys, monkeypatch):
    from tests.hub_standin import HubStandIn

    with HubStandIn(fail_all_with=(401, f"bad token {SECRET}")) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert publish(exported) == 2
        assert creates(hub) == 1
    assert "HTTP 401" in one_line(capsys)


def test_no_network_is_retried_then_one_line(exported, capsys, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert publish(exported) == 2
    line = one_line(capsys)
    assert "cannot reach the Hub" in line and "after 7 tries" in line


@pytest.mark.parametrize("repo", ["not a repo", "org/na me", "a/b/c", "-org/x"])
def test_bad_repo_id(exported, capsys, repo):
    assert publish(exported, repo) == 2
    assert "is not a Hub repo id" in one_line(capsys)
