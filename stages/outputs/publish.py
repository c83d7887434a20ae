"""Publish a run's dataset to the Hugging Face Hub: Parquet shards, the card, optionally the Megatron files.

Few commits: the files are pre-uploaded (``preupload_lfs_files``), then one ``create_commit`` adds them all.
Both calls are retried with exponential back-off on 429 (rate limit), 412 (the branch moved under us), 5xx and
connection errors (no network, a reset, a timeout). A failure ends ``swallow publish`` with one line naming the
step and the cause; a server's answer is shown with anything that looks like a token redacted.
The token comes from the usual places (``HF_TOKEN``, ``huggingface-cli login``'s file) through
``huggingface_hub.get_token`` and is never printed or written anywhere by this module.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("swallow.publish")

RETRY_STATUS = (412, 429, 500, 502, 503, 504)


def plan_upload(run_dir: str | Path, megatron: bool = False) -> list[tuple[Path, str]]:
    """(local file, path in the repo) for everything to upload; errors name what is missing."""
    run_dir = Path(run_dir)
    ds = run_dir / "dataset"
    if not (ds / "README.md").exists() or not (ds / "data").exists():
        raise FileNotFoundError(f"{ds}: no exported dataset (README.md + data/); run the pipeline with export "
                                "enabled first")
    files = [(ds / "README.md", "README.md")]
    if (ds / "funnel.png").exists():
        files.append((ds / "funnel.png", "funnel.png"))
    files += [(p, f"data/{p.name}") for p in sorted((ds / "data").glob("*.parquet"))]
    if megatron:
        for sd in sorted((run_dir / "stages").iterdir()):
            for p in sorted((sd / "megatron").glob("*.[bi][id][nx]")) if (sd / "megatron").exists() else []:
                files.append((p, f"megatron/{p.name}"))
    return files


#: Exception class names (any library: requests, httpx, urllib3, the stdlib) that mean "the network failed".
CONNECTION_ERRORS = {"ConnectionError", "ConnectError", "ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutException",
                     "TransportError", "RemoteProtocolError", "ProtocolError", "NewConnectionError",
                     "MaxRetryError", "ConnectionResetError", "ConnectionRefusedError"}
#: Hugging Face tokens, bearer credentials, and long opaque strings that could be secrets.
SECRET = re.compile(r"hf_[A-Za-z0-9]{8,}|(?i:bearer)\s+\S+|(?i:token)[\"']?\s*[:=]\s*[\"']?[^\s\"',}]+|"
                    r"[A-Za-z0-9_\-]{32,}")


class PublishError(RuntimeError):
    """One line for the user: which step failed and why (secrets redacted)."""


def redact(text: str) -> str:
    return SECRET.sub("[redacted]", text)


def is_connection_error(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:  # the library's wrapper, or what it wraps
        if any(c.__name__ in CONNECTION_ERRORS for c in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def describe(exc: BaseException) -> str:
    """A one-line cause: the HTTP status and the first line of the server's answer, redacted."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if status is not None:
        body = ""
        try:
            body = (response.text or "").strip().splitlines()[0][:300]
        except Exception:  # noqa: BLE001 - a body that cannot be read adds nothing
            pass
        text = f"HTTP {status}" + (f": {body}" if body else "")
    elif is_connection_error(exc):
        text = f"cannot reach the Hub ({type(exc).__name__}: {text[:200]})"
    return redact(text)[:500]


def with_backoff(fn: Callable, what: str, retries: int = 6, base_s: float = 1.0):
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(retries + 1):
        try:
            return fn()
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status not in RETRY_STATUS or attempt == retries:
                raise PublishError(f"{what} failed: {describe(exc)}") from exc
            retry_after = exc.response.headers.get("Retry-After") if exc.response is not None else None
            wait = float(retry_after) if retry_after and retry_after.isdigit() else base_s * 2 ** attempt
            log.warning("%s: HTTP %s, retrying in %.1f s (%d/%d)", what, status, wait, attempt + 1, retries)
            time.sleep(wait)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_connection_error(exc):
                raise PublishError(f"{what} failed: {describe(exc)}") from exc
            if attempt == retries:
                raise PublishError(f"{what} failed after {retries + 1} tries: {describe(exc)}") from exc
            wait = base_s * 2 ** attempt
            log.warning("%s: %s, retrying in %.1f s (%d/%d)", what, describe(exc), wait, attempt + 1, retries)
            time.sleep(wait)


def publish(run_dir: str | Path, repo_id: str, *, megatron: bool = False, private: bool = False,
            dry_run: bool = False, revision: str | None = None, message: str | None = None,
            backoff_base_s: float = 1.0) -> dict:
    """Upload the run's dataset to ``repo_id`` (a dataset repo); return what was (or would be) uploaded. A run that
    does not verify (a file changed after it was written, a ledger that does not add up) is never published."""
    from pipeline.run.verify import verify

    problems = verify(run_dir)
    if problems:
        raise PublishError(f"{run_dir} does not verify ({len(problems)} problem(s), first: {problems[0]}); "
                           f"run `swallow verify {run_dir}`")
    files = plan_upload(run_dir, megatron)
    total = sum(p.stat().st_size for p, _ in files)
    summary = {"repo_id": repo_id, "files": [repo_path for _, repo_path in files], "bytes": total,
               "dry_run": dry_run}
    if dry_run:
        return summary
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except Exception as exc:  # noqa: BLE001 - HFValidationError: say it in one line
        raise PublishError(f"--repo-id {repo_id!r} is not a Hub repo id (ORG/NAME: letters, digits, '-', '_', "
                           f"'.'): {exc}".splitlines()[0]) from None
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=get_token())
    with_backoff(lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True),
                 "create_repo", base_s=backoff_base_s)
    ops = [CommitOperationAdd(path_in_repo=repo_path, path_or_fileobj=str(p)) for p, repo_path in files]
    with_backoff(lambda: api.preupload_lfs_files(repo_id, additions=ops, repo_type="dataset", revision=revision),
                 "preupload", base_s=backoff_base_s)
    info = with_backoff(lambda: api.create_commit(repo_id, operations=ops, repo_type="dataset", revision=revision,
                                                  commit_message=message or f"Upload {len(files)} files "
                                                  "from swallow-curator"), "commit", base_s=backoff_base_s)
    summary["commit"] = getattr(info, "oid", None)
    return summary


def format_plan(summary: dict) -> str:
    lines = [f"{'would upload' if summary['dry_run'] else 'uploaded'} {len(summary['files'])} files "
             f"({summary['bytes'] / 1e6:.1f} MB) to datasets/{summary['repo_id']}:"]
    lines += [f"  {f}" for f in summary["files"]]
    return "\n".join(lines)


def add_command(sub) -> None:
    """``swallow publish RUN --repo-id ORG/NAME``: registered through the ``swallow.commands`` entry point."""
    pb = sub.add_parser("publish", help="upload a run's dataset (Parquet + card) to the Hugging Face Hub",
                        description="Pre-upload every file, then add them in one commit (retried with back-off on "
                        "429/412/5xx). The token is read from HF_TOKEN or the huggingface-cli login file and is "
                        "never printed. HF_ENDPOINT selects another Hub.")
    pb.add_argument("run_dir")
    pb.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repo (created if missing)")
    pb.add_argument("--megatron", action="store_true", help="also upload the Megatron .bin/.idx files")
    pb.add_argument("--private", action="store_true", help="create the repo private")
    pb.add_argument("--revision", help="branch to commit to (default: main)")
    pb.add_argument("--message", help="commit message")
    pb.add_argument("--dry-run", action="store_true", help="list what would be uploaded; touch nothing")
    pb.add_argument("--backoff-s", type=float, default=1.0,
                    help="first retry wait in seconds (doubles each try, 6 retries)")
    pb.set_defaults(func=cmd_publish)


def cmd_publish(args) -> int:
    try:
        summary = publish(args.run_dir, args.repo_id, megatron=args.megatron, private=args.private,
                          dry_run=args.dry_run, revision=args.revision, message=args.message,
                          backoff_base_s=args.backoff_s)
    except PublishError as exc:
        print(f"error: publish to datasets/{args.repo_id}: {exc}", file=sys.stderr)
        return 2
    print(format_plan(summary))
    return 0
