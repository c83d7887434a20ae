"""A run is one tree of hashes, and nothing of it lies outside its folder.

Every shard's marker seals the files the shard wrote (size and SHA-256); a global stage's task markers seal their
work files; ``dataset/manifest.json`` seals the final Parquet files. Those seals alone are not enough: an edit of a
kept row whose shard marker is resealed to match, or a dataset edit with a resealed manifest, passes every check
that reads only the marker. So the run's **root** hashes every sealing file in a fixed order, like a commit:
``plan.json``, ``run.yaml``, each stage's ``stage.json``, shard markers and task markers, then the dataset's
manifest and card (and any other file directly in ``dataset/``). The root is written to ``root.json`` when a run or
an export ends, printed then and by ``verify`` (which recomputes it, names the leaf that changed, and takes
``--root HEX`` to check a copy against a root held elsewhere) and put in ``publish``'s commit message. Anyone
holding the root can check a copy of the run.

And nothing outside the run is part of it: a symbolic link anywhere in the run folder, a marker naming a path
that resolves outside it, a shard key that is not a plain name, or a file in a shard folder that no finished
shard wrote, is a problem for ``verify`` and a refusal for ``export`` and ``publish``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from pipeline.store.shards import file_seal, is_temporary, write_json

ROOT_FILE = "root.json"
#: A shard or task key: what the planner and the phases name them (``00012``, ``p00003``, ``all``).
KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: The per-shard folders of a stage, whose files are named ``SHARD.ext``.
SHARD_FOLDERS = ("kept", "rejected", "stats", "done")


class OutsideRun(ValueError):
    """A path of the run resolves outside its folder, or is a link."""


def inside(run_dir: Path, path: Path) -> bool:
    """Whether ``path`` lies in ``run_dir`` with no symbolic link on the way (checked component by component)."""
    run_dir = Path(run_dir).resolve()
    p = Path(path)
    if not p.is_absolute():
        p = run_dir / p
    try:
        rel = Path(os.path.normpath(p)).relative_to(run_dir)
    except ValueError:
        return False
    cur = run_dir
    for part in rel.parts:
        if part in ("..", ""):
            return False
        cur = cur / part
        if cur.is_symlink():
            return False
    return True


def leaves(run_dir: Path) -> list[tuple[str, str]]:
    """(path relative to the run, SHA-256) of every sealing file, in the tree's fixed order."""
    run_dir = Path(run_dir)
    files: list[Path] = [run_dir / "plan.json", run_dir / "run.yaml"]
    stages = run_dir / "stages"
    for sd in sorted(p for p in stages.iterdir() if p.is_dir()) if stages.is_dir() else []:
        files.append(sd / "stage.json")
        files += sorted(p for p in (sd / "done").glob("*.json") if not is_temporary(p))
        files += sorted(p for p in sd.glob("work/*/done/*.json") if not is_temporary(p))
    dataset = run_dir / "dataset"
    if dataset.is_dir():
        files += sorted(p for p in dataset.iterdir() if p.is_file() and not is_temporary(p))
    return [(str(f.relative_to(run_dir)), file_seal(f)["sha256"]) for f in files if f.is_file()]


def root_of(pairs: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for rel, digest in pairs:
        h.update(f"{rel}\t{digest}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def write_root(run_dir: Path) -> str:
    """Compute the run's root and record it (with its leaves, so ``verify`` can name the one that changed)."""
    pairs = leaves(run_dir)
    root = root_of(pairs)
    write_json(Path(run_dir) / ROOT_FILE, {"root": root, "algorithm": "sha256 over 'path<TAB>sha256<LF>' of the "
                                           "leaves in order", "leaves": [list(p) for p in pairs]})
    return root


def check_root(run_dir: Path, expected: str | None = None) -> tuple[str, list[str]]:
    """The recomputed root and the problems: a leaf changed, added or removed since ``root.json`` was written, or
    the root differs from ``expected`` (one held elsewhere)."""
    run_dir = Path(run_dir)
    pairs = leaves(run_dir)
    root = root_of(pairs)
    problems = []
    recorded_path = run_dir / ROOT_FILE
    if recorded_path.is_file():
        try:
            recorded = json.loads(recorded_path.read_text())
            before = {rel: digest for rel, digest in recorded.get("leaves", [])}
        except (ValueError, TypeError, AttributeError):
            recorded, before = {}, {}
            problems.append(f"{ROOT_FILE}: unreadable")
        if recorded.get("root") != root or root_of(list(before.items())) != recorded.get("root"):
            now = dict(pairs)
            changed = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
            if changed:
                problems.append(f"the run's root {root[:16]}... differs from the recorded {str(recorded.get('root'))[:16]}"  # noqa: E501
                                f"...: changed since the run ended: {', '.join(changed[:5])}"
                                f"{' ...' if len(changed) > 5 else ''}")
            else:
                problems.append(f"{ROOT_FILE} was edited: its leaves do not hash to its root")
    if expected and expected != root:
        problems.append(f"the run's root is {root}, not the {expected} you hold")
    return root, problems


def stray_files(run_dir: Path) -> list[str]:
    """Links anywhere in the run, shard keys that are no plain name, and files in a stage's folder that no finished
    shard wrote (kept/rejected/stats of a shard without a marker, an artefact no marker seals)."""
    run_dir = Path(run_dir)
    problems = []
    for dirpath, dirnames, filenames in os.walk(run_dir):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                problems.append(f"{p.relative_to(run_dir)}: a symbolic link (a run's files are its own: links are "
                                f"refused, they could point outside the run)")
    plan = run_dir / "plan.json"
    if plan.is_file():
        try:
            keys = list(json.loads(plan.read_text()))
        except ValueError:
            keys = []
            problems.append("plan.json: unreadable")
        problems += [f"plan.json: shard key {k!r} is not a plain name" for k in keys if not KEY.match(str(k))]
    stages = run_dir / "stages"
    for sd in sorted(p for p in stages.iterdir() if p.is_dir()) if stages.is_dir() else []:
        done = {p.stem for p in (sd / "done").glob("*.json") if not is_temporary(p)}
        sealed = set()
        for shard in done:
            try:
                files = json.loads((sd / "done" / f"{shard}.json").read_text()).get("files", {})
            except (ValueError, OSError, AttributeError):
                continue
            sealed |= {k for k in files if k not in ("kept", "rejected", "stats")}
        for dirpath, dirnames, filenames in os.walk(sd):
            rel_dir = Path(dirpath).relative_to(sd)
            if rel_dir.parts[:1] == ("work",):
                continue  # a global stage's work files: sealed by its task markers
            for name in filenames:
                f = Path(dirpath) / name
                rel = f.relative_to(sd)
                if is_temporary(f) or str(rel) in ("stage.json", "timing.json", "events.jsonl") or str(rel) in sealed:
                    continue
                if len(rel.parts) == 2 and rel.parts[0] in SHARD_FOLDERS and f.stem in done:
                    continue
                problems.append(f"{sd.name}/{rel}: not written by a finished shard (no marker seals it); remove "
                                f"it or rerun the stage")
    return problems
