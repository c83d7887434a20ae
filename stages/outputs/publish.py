"""Publish a run's dataset to the Hugging Face Hub: Parquet shards, the card, optionally the Megatron files.

Few commits: the files are pre-uploaded (``preupload_lfs_files``), then one ``create_commit`` adds them all.
Both calls are retried with exponential back-off on 429 (rate limit), 412 (the branch moved under us) and 5xx.
The token comes from the usual places (``HF_TOKEN``, ``huggingface-cli login``'s file) through
``huggingface_hub.get_token`` and is never printed or written anywhere by this module.
"""

from __future__ import annotations

import logging
import os
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


def with_backoff(fn: Callable, what: str, retries: int = 6, base_s: float = 1.0):
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(retries + 1):
        try:
            return fn()
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            if status not in RETRY_STATUS or attempt == retries:
                raise
            retry_after = exc.response.headers.get("Retry-After") if exc.response is not None else None
            wait = float(retry_after) if retry_after and retry_after.isdigit() else base_s * 2 ** attempt
            log.warning("%s: HTTP %s, retrying in %.1f s (%d/%d)", what, status, wait, attempt + 1, retries)
            time.sleep(wait)


def publish(run_dir: str | Path, repo_id: str, *, megatron: bool = False, private: bool = False,
            dry_run: bool = False, revision: str | None = None, message: str | None = None,
            backoff_base_s: float = 1.0) -> dict:
    """Upload the run's dataset to ``repo_id`` (a dataset repo); return what was (or would be) uploaded."""
    files = plan_upload(run_dir, megatron)
    total = sum(p.stat().st_size for p, _ in files)
    summary = {"repo_id": repo_id, "files": [repo_path for _, repo_path in files], "bytes": total,
               "dry_run": dry_run}
    if dry_run:
        return summary
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

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
    pb.set_defaults(func=cmd_publish)


def cmd_publish(args) -> int:
    print(format_plan(publish(args.run_dir, args.repo_id, megatron=args.megatron, private=args.private,
                              dry_run=args.dry_run, revision=args.revision, message=args.message)))
    return 0
