"""The default output: the last stage's kept rows as bounded Parquet files loadable by ``datasets``, a dataset
card (Hub YAML header, funnel, rejection reasons, models and prompts, sources and licenses) and a content digest
that ``swallow verify`` checks (a row whose text changed under the same id is caught).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import Field

from pipeline.core.output import Output
from pipeline.core.records import BASE_FIELDS, KIND_FIELDS
from pipeline.store.ledger import collect_stats, empty_summary, list_stages
from pipeline.store.shards import KEPT, write_atomic_bytes


class DatasetOutput(Output):
    """RUN/dataset: ``data/train-XXXXX-of-YYYYY.parquet`` of bounded size, ``README.md`` (the card), plots."""

    type: ClassVar[str] = "dataset"
    #: Upper bound of one final Parquet file, bytes of Arrow data.
    max_shard_bytes: int = Field(1_000_000_000, gt=0)
    #: Columns of the final dataset (provenance is always kept); empty: all columns.
    columns: list[str] = []
    #: Dataset card fields.
    pretty_name: str = ""
    license: str = "other"
    language: list[str] = ["en"]

    def write(self, run_dir: Path, cfg) -> Path:
        return export_dataset(run_dir, cfg, self)

    def verify(self, run_dir: Path) -> list[str]:
        return verify_dataset(run_dir) + self.verify_card(Path(run_dir))

    def verify_card(self, run_dir: Path) -> list[str]:
        """The card says what the run's verified stats say (written again and compared)."""
        card = run_dir / "dataset" / "README.md"
        if not card.is_file() or card.is_symlink():
            return []
        import yaml as _yaml

        from pipeline.run.config import load_config

        cfg = load_config(None, raw=_yaml.safe_load((run_dir / "run.yaml").read_text()))
        text = card.read_text(encoding="utf-8", errors="replace")
        try:  # the name it was written with (the run folder's, by default: a copy elsewhere keeps it)
            name = _yaml.safe_load(text.split("---", 2)[1]).get("pretty_name")
        except (IndexError, AttributeError, _yaml.YAMLError):
            name = None
        want = render_card(cfg, self, collect_stats(run_dir), run_dir, name=name)
        if text != want:
            return ["dataset/README.md: the card differs from what the run's verified figures give (edited after "
                    "the export?); re-export with `swallow export RUN`"]
        return []


def final_columns(table_schema: pa.Schema, kind: str, wanted: list[str]) -> list[str]:
    base = [f.name for f in BASE_FIELDS + KIND_FIELDS[kind]]
    if not wanted:
        return table_schema.names
    return base + [c for c in wanted if c not in base and c in table_schema.names]


def export_dataset(run_dir: str | Path, cfg, out: "DatasetOutput") -> Path:
    """Write RUN/dataset/data/train-XXXXX-of-YYYYY.parquet (bounded size) and the dataset card.

    The last stage's kept shards are packed in order into files of at most ``export.max_shard_bytes`` of Arrow
    data, written into a temporary folder that replaces ``dataset/data`` at the end (a rerun rewrites it whole).
    """
    run_dir = Path(run_dir)
    last = list_stages(run_dir)[-1]
    shards = last.done_shards()
    out_root = run_dir / "dataset"
    tmp = out_root / ".tmp-data"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    limit = out.max_shard_bytes
    groups: list[list[pa.Table]] = [[]]
    size = 0
    columns = None
    for shard in shards:
        table = pq.read_table(last.verified(KEPT, shard))  # never publish a row changed after its stage wrote it
        columns = columns or final_columns(table.schema, cfg.kind, out.columns)
        table = table.select([c for c in columns if c in table.column_names])
        per_row = table.nbytes / max(len(table), 1)
        start = 0
        while start < len(table):
            room = int((limit - size) // max(per_row, 1))
            if room < 1:
                if size:  # this file is full: start the next one
                    groups.append([])
                    size = 0
                    continue
                room = 1  # a single row larger than the limit gets a file of its own
            piece = table.slice(start, room)
            groups[-1].append(piece)
            size += piece.nbytes
            start += len(piece)
            if size >= limit:
                groups.append([])
                size = 0
    # no row kept: no data file (``datasets`` cannot read a Parquet file of no rows: "BatchSize must be greater
    # than 0"); the card says the dataset is empty and where the rows went
    groups = [g for g in groups if g]
    total = len(groups)
    for i, group in enumerate(groups):
        path = tmp / f"train-{i:05d}-of-{total:05d}.parquet"
        pq.write_table(pa.concat_tables(group, promote_options="permissive"), path, compression="zstd")
    manifest = {p.name: file_digest(p) for p in sorted(tmp.glob("*.parquet"))}
    final = out_root / "data"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_atomic_bytes(out_root / "manifest.json", json.dumps({"files": manifest}, indent=1).encode())
    stats = collect_stats(run_dir)
    if (run_dir / "megatron-data-path.txt").exists():
        shutil.copy2(run_dir / "megatron-data-path.txt", out_root / "megatron-data-path.txt")
    try:
        from pipeline.draw.plots import plot_funnel

        plot_funnel(stats, str(out_root / "funnel.png"))
    except ImportError:
        pass
    write_card(out_root, cfg, out, stats, run_dir)
    return out_root


def file_digest(path: Path) -> dict:
    """Rows and a SHA-256 over every row's id and text, in order: what the file holds, whatever its encoding."""
    table = pq.read_table(path, columns=["id", "text"])
    h = hashlib.sha256()
    for rid, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist()):
        for value in (rid, text):
            data = b"\xff" if value is None else value.encode("utf-8", "surrogatepass")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return {"rows": len(table), "sha256": h.hexdigest()}


def verify_dataset(run_dir: Path) -> list[str]:
    """The final files hold exactly the last stage's kept ids, each once, with the content recorded at export."""
    run_dir = Path(run_dir)
    data = run_dir / "dataset" / "data"
    if not data.exists():
        return []
    problems = []
    manifest_path = run_dir / "dataset" / "manifest.json"
    files = sorted(data.glob("*.parquet"))
    if not manifest_path.exists():
        problems.append("dataset: manifest.json missing (re-export with `swallow export RUN`)")
    else:
        manifest = json.loads(manifest_path.read_text())["files"]
        if sorted(manifest) != [f.name for f in files]:
            problems.append(f"dataset: files {[f.name for f in files]} differ from the manifest's {sorted(manifest)}")
        for f in files:
            if f.name in manifest and file_digest(f) != manifest[f.name]:
                problems.append(f"dataset/data/{f.name}: content differs from what the export wrote "
                                "(rows or text changed)")
    last = list_stages(run_dir)[-1]
    final = set()
    got: list[str] = []
    try:
        for shard in last.done_shards():
            final.update(pq.read_table(last.file(KEPT, shard), columns=["id"]).column("id").to_pylist())
        for f in files:
            got += pq.read_table(f, columns=["id"]).column("id").to_pylist()
    except (pa.ArrowException, OSError, KeyError) as exc:  # a file that is no Parquet of ours: named, not raised
        return problems + [f"dataset: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"]
    if len(got) != len(set(got)) or set(got) != final:
        problems.append(f"dataset: {len(got)} rows ({len(set(got))} distinct ids) but the last stage kept {len(final)}")
    return problems


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                         (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return label
    return "1B<n<10B"


def source_licenses(run_dir: Path) -> Counter:
    counts: Counter = Counter()
    for f in sorted((run_dir / "dataset" / "data").glob("*.parquet")):
        if "license" in pq.ParquetFile(f).schema_arrow.names:
            counts.update(str(v) for v in pq.read_table(f, columns=["license"]).column("license").to_pylist())
    return counts


def write_card(out_root: Path, cfg, out, stats: dict, run_dir: Path) -> Path:
    card = out_root / "README.md"
    write_atomic_bytes(card, render_card(cfg, out, stats, run_dir).encode())
    (out_root / "stats.json").write_text(json.dumps(stats, indent=1))
    return card


def render_card(cfg, out, stats: dict, run_dir: Path, name: str | None = None) -> str:
    """The card's text: a function of the config and the run's verified stats alone, so ``verify`` can write it
    again and compare (a card whose figures were edited is found)."""
    stages = stats["stages"]
    n_final = stages[-1]["kept"] if stages else 0
    header = {
        "license": out.license,
        "language": list(out.language),
        "pretty_name": out.pretty_name or name or run_dir.name,
        "size_categories": [size_category(n_final)],
        "task_categories": ["text-generation"],
        "tags": ["pretraining", "swallow-curator", cfg.kind],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    }
    if not n_final:  # no data file to point at
        del header["configs"]
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
             f"# {header['pretty_name']}", ""]
    if cfg.description:
        lines += [cfg.description, ""]
    if not n_final and stages:
        lines += [f"**This dataset is empty**: {empty_summary(stages)}", ""]
    lines += ["Built with swallow-curator. Every input record is either in this dataset or was rejected with a "
              "reason by one stage; `swallow verify` checked the run's ledger.", "",
              "![funnel](funnel.png)", "", "## Pipeline", "",
              "| # | stage | in | kept | rejected | tokens |", "|---|---|---:|---:|---:|---:|"]
    for i, st in enumerate(stages):
        tokens = st["counters"].get("tokens", st["counters"].get("output_tokens", ""))
        lines.append(f"| {i} | {st['stage']} | {st['in']:,} | {st['kept']:,} | {st['rejected']:,} | "
                     f"{int(tokens):,} |" if tokens != "" else
                     f"| {i} | {st['stage']} | {st['in']:,} | {st['kept']:,} | {st['rejected']:,} | |")
    lines += ["", "## Rejection reasons", "", "| stage | reason | records |", "|---|---|---:|"]
    for st in stages:
        for reason, n in st["reasons"].items():
            lines.append(f"| {st['stage']} | `{reason}` | {n:,} |")
    pii = [st for st in stages if any(k.startswith("pii_") for k in st["counters"])]
    if pii:
        lines += ["", "## Personal data and secrets", "", "| stage | e-mail addresses | IP addresses | secrets | rows "
                  "dropped for them |", "|---|---:|---:|---:|---:|"]
        for st in pii:
            c = st["counters"]
            lines.append(f"| {st['stage']} | {int(c.get('pii_emails', 0)):,} | {int(c.get('pii_ips', 0)):,} | "
                         f"{int(c.get('pii_secrets', 0)):,} | {st['reasons'].get('contains_pii', 0):,} |")
    decont = [(st["stage"], r, n) for st in stages for r, n in st["reasons"].items()
              if r.startswith(("contaminated:", "near_copy:"))]
    if decont:
        lines += ["", "## Decontamination", "", "| stage | benchmark set | how | rows removed |", "|---|---|---|---:|"]
        for stage, reason, n in decont:
            how, name = reason.split(":", 1)
            lines.append(f"| {stage} | {name} | {'n-gram overlap' if how == 'contaminated' else 'near copy'} | "
                         f"{n:,} |")
    models = [st for st in stages if st.get("info", {}).get("model")]
    if models:
        lines += ["", "## Models and prompts", "", "| stage | model | prompt | prompt sha256 |", "|---|---|---|---|"]
        for st in models:
            info = st["info"]
            lines.append(f"| {st['stage']} | `{info['model']}` | `{info.get('prompt', '')}` | "
                         f"`{(info.get('prompt_sha256') or '')[:16]}` |")
    lines += ["", "## Sources", "", "| input | |", "|---|---|"]
    for p in cfg.source.paths:
        lines.append(f"| `{p}` | {cfg.source.type} |")
    lic = source_licenses(run_dir)
    if lic:
        lines += ["", "| license of source records | records |", "|---|---:|"]
        for name, n in lic.most_common():
            lines.append(f"| {name} | {n:,} |")
    lines += ["", "## Files", "", "- `data/train-*.parquet`: the records (text and provenance columns).",
              "- `megatron-data-path.txt`: Megatron-LM `--data-path` (tokens-weighted prefixes), if tokenized.", ""]
    return "\n".join(lines)
