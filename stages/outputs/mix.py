"""``swallow mix``: several finished runs made into one training mixture by token shares.

A mixture file names the runs and the share of the mixture's tokens each gives::

    sources:
      code:    {run: runs/code, share: 0.16, max_epochs: 4}
      ja_web:  {run: runs/ja,   share: 0.50}
      en_web:  {run: runs/en,   share: 0.34}
    total_tokens: 2_000_000_000        # optional: by default the largest mixture no source repeats beyond its
                                       # max_epochs (1 where not given)

What it does, for each source (a run that verifies, whose kept rows carry ``n_tokens``, from its ``tokenize`` stage):

1. **Upsampling by duplicate cluster** ("rehydration", FineWeb-2): a kept row that survived a MinHash cluster of
   size N (``minhash_cluster_size``) counts ``factor(N)`` times; FineWeb-2's table by default: 1 → 1, 2-3 → N,
   4 → 3, 5-99 → 5, 100-999 → 8, ≥ 1000 → 1 (the largest clusters are taken to be boilerplate). A source without the
   column is not upsampled (said in the card).
2. **Epochs**: the source's upsampled tokens are repeated (or subsampled) to ``share × total`` tokens: each row gets
   ``floor(e)`` copies of ``e = epochs × factor`` and one more with probability ``e - floor(e)``, drawn from a hash
   of (seed, source, id), then copies are added or removed in hash order until the source is within one document
   of its target. The copies of a row are a function of the row and the mixture file alone.

Written to the output folder (replaced whole when the config or a source changed; skipped when neither did):

* ``data/train-XXXXX-of-YYYYY.parquet``: every copy, shuffled across files and inside them by a hash of (seed,
  source, id, copy) — columns ``id``, ``source``, ``copy``, ``text``, ``n_tokens`` (loadable by ``datasets``);
* ``megatron/SOURCE/SHARD.bin/.idx``: each source's rows × their upsampling factor (token ids from the source's
  ``tokenize`` stage), and ``megatron-data-path.txt``: ``--data-path`` with weight ``share × prefix tokens /
  source tokens``, so Megatron's blending (which repeats and shuffles by itself) draws each source's share;
* ``draws/SOURCE.parquet``: every kept row of every source with its factor and copies (0: not drawn, when a source
  is subsampled) — nothing is lost without a record;
* ``mixture.json``: the figures (targets, realised tokens and shares, epochs, cluster sizes), each source run's
  root hash, and the seals of every file above; ``README.md``: the mixture card; ``shares.png``.

``swallow verify MIXTURE`` re-reads all of it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.core.errors import ConfigError
from pipeline.store.shards import KEPT, check_seal, file_seal, write_atomic_bytes, write_json

MIXTURE_FILE = "mixture.json"
#: FineWeb-2's rehydration weights: (smallest cluster size, largest or None, copies; "size": the cluster's size).
FINEWEB2 = [(1, 1, 1), (2, 3, "size"), (4, 4, 3), (5, 99, 5), (100, 999, 8), (1000, None, 1)]
#: The share a source may miss its target by, relative (a source is within one document of its target; a
#: mixture of documents larger than this share of a source's target cannot be this exact and is said so).
SHARE_TOLERANCE = 0.01


class Band(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int = Field(ge=1)
    max: int | None = None
    factor: int | Literal["size"]


class MixSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: A finished run's folder.
    run: str
    #: Its share of the mixture's tokens (the shares add up to 1).
    share: float = Field(gt=0, le=1)
    #: The most times its upsampled tokens may be repeated; with ``total_tokens`` unset, the mixture is the largest
    #: that keeps every source within its cap (1 where not given).
    max_epochs: float | None = Field(None, gt=0)
    #: Upsample by duplicate cluster size (where the run has ``minhash_cluster_size``).
    upsample: bool = True


class MixConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: dict[str, MixSource] = Field(min_length=1)
    #: Tokens of the mixture; by default the largest that needs no source beyond its ``max_epochs``.
    total_tokens: int | None = Field(None, gt=0)
    #: Seed of the draws and of the shuffle.
    seed: int = 0
    #: Cluster size → copies; FineWeb-2's by default.
    upsample: list[Band] = [Band(min=a, max=b, factor=f) for a, b, f in FINEWEB2]
    #: Upper bound of one Parquet file, bytes of Arrow data.
    max_shard_bytes: int = Field(500_000_000, gt=0)
    #: Write the Megatron files and ``--data-path`` too.
    megatron: bool = True

    @model_validator(mode="after")
    def _check(self):
        total = sum(s.share for s in self.sources.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"the shares add up to {total:.6g}, not 1 ("
                             + ", ".join(f"{k} {s.share:g}" for k, s in self.sources.items()) + ")")
        bad = [k for k in self.sources if not k or not all(c.isalnum() or c in "_-" for c in k) or len(k) > 64]
        if bad:
            raise ValueError(f"source names are plain names (letters, digits, _ and -): {bad}")
        return self


def load_mix(path: str | Path, overrides: list[str] | None = None) -> MixConfig:
    """The mixture file, validated; ConfigError naming the file and the key."""
    from pipeline.run.config import _errors, apply_override, safe_yaml

    where = str(path)
    try:
        raw = safe_yaml(Path(path).read_bytes(), where) or {}
    except FileNotFoundError:
        raise ConfigError(f"mixture file {where} does not exist") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping (sources:, total_tokens:, ...)")
    for ov in overrides or []:
        apply_override(raw, ov)
    try:
        return MixConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(_errors(where, "", exc, MixConfig.model_fields)) from None


def factor_of(size: int, bands: list[Band]) -> int:
    for b in bands:
        if size >= b.min and (b.max is None or size <= b.max):
            return size if b.factor == "size" else int(b.factor)
    return 1


def _u64(*parts: Any) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"),
                                                    digest_size=8).digest(), "little"))


# -- reading a source run ---------------------------------------------------------------------------------------

class Source:
    """One finished run, read through its seals: its final kept rows' ids, tokens and cluster sizes by shard."""

    def __init__(self, name: str, spec: MixSource, bands: list[Band]):
        from pipeline.run.verify import verify
        from pipeline.store.ledger import list_stages
        from pipeline.store.run_tree import leaves, root_of

        self.name, self.spec, self.dir = name, spec, Path(spec.run)
        where = f"source {name} ({self.dir})"
        if not (self.dir / "plan.json").is_file():
            raise ConfigError(f"{where}: not a run folder (no plan.json); `run:` names the folder of a finished "
                              f"`swallow run`")
        problems = verify(self.dir)
        if problems:
            raise ConfigError(f"{where}: does not verify: {problems[0]}; run `swallow verify {self.dir}`")
        self.root = root_of(leaves(self.dir))
        stages = list_stages(self.dir)
        self.last = stages[-1]
        self.tokenize = next((sd for sd in reversed(stages) if (sd.config() or {}).get("type") == "tokenize"), None)
        self.shards: list[tuple[str, pa.Table]] = []
        self.has_clusters = False
        for shard in self.last.done_shards():
            schema = pq.read_schema(self.last.verified(KEPT, shard))
            if "n_tokens" not in schema.names or self.tokenize is None:
                raise ConfigError(f"{where}: its rows have no n_tokens: add a `tokenize` stage to its config "
                                  f"(a mixture is made by tokens)")
            cols = ["id", "n_tokens"] + (["minhash_cluster_size"] if "minhash_cluster_size" in schema.names else [])
            t = pq.read_table(self.last.verified(KEPT, shard), columns=cols)
            self.has_clusters |= "minhash_cluster_size" in cols
            size = t.column("minhash_cluster_size") if "minhash_cluster_size" in cols else pa.nulls(len(t), pa.int64())
            size = pc.fill_null(size.cast(pa.int64()), 1)
            self.shards.append((shard, t.select(["id", "n_tokens"]).append_column("cluster_size", size)))
        sizes = np.concatenate([s.column("cluster_size").to_numpy() for _, s in self.shards]) if self.shards else \
            np.zeros(0, np.int64)
        use = spec.upsample and self.has_clusters
        table = {int(n): factor_of(int(n), bands) if use else 1 for n in np.unique(sizes)}
        self.factors = [np.array([table[int(n)] for n in s.column("cluster_size").to_numpy()], np.int64)
                        for _, s in self.shards]
        self.tokens = int(sum(s.column("n_tokens").to_numpy().sum() for _, s in self.shards))
        self.upsampled_tokens = int(sum((s.column("n_tokens").to_numpy() * f).sum()
                                        for (_, s), f in zip(self.shards, self.factors)))
        self.rows = sum(len(s) for _, s in self.shards)
        self.cluster_sizes = Counter({int(k): int(v) for k, v in zip(*np.unique(sizes, return_counts=True))})

    def token_rows(self, shard: str) -> tuple[Any, dict[str, int], np.ndarray, np.ndarray]:
        """The tokenize stage's ids of ``shard``: (token array, id → sequence, lengths, pointers in items)."""
        from stages.tokenize.megatron import read_index

        prefix = self.tokenize.artifact("megatron", shard)
        problems = self.tokenize.check_shard(shard)
        if problems:
            raise ConfigError(f"source {self.name}: {problems[0]}")
        dtype, lengths, pointers = read_index(Path(str(prefix) + ".idx"))
        tokens = np.memmap(str(prefix) + ".bin", dtype=dtype, mode="r") if Path(str(prefix) + ".bin").stat().st_size \
            else np.zeros(0, dtype)
        ids = pq.read_table(self.tokenize.verified(KEPT, shard), columns=["id"]).column("id").to_pylist()
        return tokens, {i: k for k, i in enumerate(ids)}, lengths, pointers // np.dtype(dtype).itemsize


# -- the draw --------------------------------------------------------------------------------------------------

def draw(source: Source, target: int, seed: int) -> list[np.ndarray]:
    """Copies of each row (per shard) so that the source gives ``target`` tokens within one document."""
    if not source.rows:
        return []
    epochs = target / source.upsampled_tokens if source.upsampled_tokens else 0.0
    tokens = np.concatenate([s.column("n_tokens").to_numpy() for _, s in source.shards]).astype(np.int64)
    want = epochs * np.concatenate(source.factors).astype(np.float64)
    keys = np.array([_u64(seed, source.name, i) for _, s in source.shards for i in s.column("id").to_pylist()],
                    dtype=np.uint64)
    uniform = (keys >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    copies = np.floor(want).astype(np.int64) + (uniform < want - np.floor(want))
    order = np.argsort(keys, kind="stable")
    got = int((copies * tokens).sum())
    # within one document of the target: add copies (rows rounded down first, then any, in hash order) or remove
    # them (rows rounded up first, latest in hash order first); every row holds at least one token (its EOD)
    if got < target:
        pool = np.concatenate([order[copies[order] < np.ceil(want[order])], order])
        k = 0
        while got < target:
            i = pool[k % len(pool)] if k < len(pool) else order[(k - len(pool)) % len(order)]
            copies[i] += 1
            got += int(tokens[i])
            k += 1
    elif got > target:
        back = order[::-1]
        for i in np.concatenate([back[copies[back] > np.floor(want[back])], back]):
            if got <= target:
                break
            while copies[i] > 0 and got > target:
                copies[i] -= 1
                got -= int(tokens[i])
    out, start = [], 0
    for _, s in source.shards:
        out.append(copies[start:start + len(s)])
        start += len(s)
    return out


def plan(cfg: MixConfig, sources: dict[str, Source]) -> dict[str, Any]:
    """Tokens per source and epochs: the mixture's figures before anything is written."""
    where = "mixture"
    for name, s in sources.items():
        if not s.upsampled_tokens:
            raise ConfigError(f"{where}: source {name} ({s.dir}) kept no tokens: nothing to mix from it")
    caps = {n: (s.spec.max_epochs or 1.0) for n, s in sources.items()}
    largest = int(min(caps[n] * s.upsampled_tokens / s.spec.share for n, s in sources.items()))
    total = cfg.total_tokens or largest
    if cfg.total_tokens:
        for n, s in sources.items():
            epochs = s.spec.share * total / s.upsampled_tokens
            if s.spec.max_epochs and epochs > s.spec.max_epochs + 1e-9:
                raise ConfigError(f"{where}: source {n} would be repeated {epochs:.2f} times for "
                                  f"{total:,} tokens, over its max_epochs {s.spec.max_epochs:g}; lower total_tokens "
                                  f"(at most {largest:,}) or raise sources.{n}.max_epochs")
    return {"total_tokens": total, "largest_within_caps": largest,
            "targets": {n: int(round(s.spec.share * total)) for n, s in sources.items()},
            "epochs": {n: s.spec.share * total / s.upsampled_tokens for n, s in sources.items()}}


def config_digest(cfg: MixConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


# -- writing ---------------------------------------------------------------------------------------------------

def make_mixture(cfg: MixConfig, out: str | Path, dry_run: bool = False, say=print) -> dict[str, Any]:
    """Build (or find up to date) the mixture of ``cfg`` in ``out``; return its figures."""
    out = Path(out)
    sources = {n: Source(n, spec, cfg.upsample) for n, spec in cfg.sources.items()}
    figures = plan(cfg, sources)
    roots = {n: s.root for n, s in sources.items()}
    if dry_run:
        return {**figures, "sources": {n: {"rows": s.rows, "tokens": s.tokens, "upsampled_tokens": s.upsampled_tokens}
                                       for n, s in sources.items()}}
    old = out / MIXTURE_FILE
    if old.is_file():
        try:
            rec = json.loads(old.read_text())
        except ValueError:
            rec = {}
        if rec.get("config_sha256") == config_digest(cfg) and rec.get("roots") == roots and \
                not verify_mixture(out, check_sources=False):
            say(f"mix: {out} is up to date (same mixture file, same source runs); nothing written")
            return rec
    if out.exists() and not old.is_file() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and holds no mixture; name an empty or new folder")
    tmp = out.parent / f".tmp-mix-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    draws = {n: draw(s, figures["targets"][n], cfg.seed) for n, s in sources.items()}
    rec = _write(cfg, sources, draws, figures, tmp, out, say)
    rec.update(config_sha256=config_digest(cfg), roots=roots)
    write_json(tmp / MIXTURE_FILE, rec)
    write_atomic_bytes(tmp / "README.md", render_card(rec).encode())
    _plot(rec, tmp / "shares.png")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return rec


def _write(cfg: MixConfig, sources: dict[str, Source], draws: dict[str, list[np.ndarray]], figures: dict,
           tmp: Path, out: Path, say) -> dict[str, Any]:
    files: dict[str, Any] = {}
    per_source: dict[str, Any] = {}
    # draws: every kept row with its factor and copies
    for n, s in sources.items():
        parts = [t.append_column("shard", pa.array([shard] * len(t), pa.string()))
                 .append_column("factor", pa.array(f, pa.int64())).append_column("copies", pa.array(c, pa.int64()))
                 for (shard, t), f, c in zip(s.shards, s.factors, draws[n])]
        table = pa.concat_tables(parts) if parts else pa.table({"id": pa.array([], pa.string())})
        (tmp / "draws").mkdir(exist_ok=True)
        pq.write_table(table, tmp / "draws" / f"{n}.parquet", compression="zstd")
        copies = np.concatenate(draws[n]) if draws[n] else np.zeros(0, np.int64)
        tokens = np.concatenate([t.column("n_tokens").to_numpy() for _, t in s.shards]) if s.shards else copies
        per_source[n] = {
            "run": str(s.dir), "root": s.root, "share": s.spec.share, "max_epochs": s.spec.max_epochs,
            "rows": s.rows, "tokens": s.tokens, "upsampled": bool(s.spec.upsample and s.has_clusters),
            "has_cluster_sizes": s.has_clusters, "upsampled_tokens": s.upsampled_tokens,
            "target_tokens": figures["targets"][n], "epochs": figures["epochs"][n],
            "copies": int(copies.sum()), "rows_drawn": int((copies > 0).sum()),
            "rows_not_drawn": int((copies == 0).sum()),
            "mixture_tokens": int((copies * tokens).sum()),
            "largest_document": int(tokens.max()) if len(tokens) else 0,
            "cluster_sizes": {str(k): v for k, v in sorted(s.cluster_sizes.items())}}
    total = sum(p["mixture_tokens"] for p in per_source.values())
    for p in per_source.values():
        p["mixture_share"] = p["mixture_tokens"] / total if total else 0.0
    say(f"mix: {total:,} tokens from {len(sources)} source(s): " + ", ".join(
        f"{n} {p['mixture_share']:.1%} ({p['epochs']:.2f} epochs)" for n, p in per_source.items()))
    files.update(_write_parquet(cfg, sources, draws, tmp, total, say))
    data_path: list[str] = []
    if cfg.megatron:
        files_m, data_path = _write_megatron(sources, tmp, out)
        files.update(files_m)
    files.update({f"draws/{n}.parquet": file_seal(tmp / "draws" / f"{n}.parquet") for n in sources})
    return {"format": 1, "total_tokens_target": figures["total_tokens"], "largest_within_caps":
            figures["largest_within_caps"], "mixture_tokens": total, "seed": cfg.seed,
            "upsample": [b.model_dump() for b in cfg.upsample], "sources": per_source, "data_path": data_path,
            "files": files}


def _write_parquet(cfg, sources, draws, tmp: Path, total_tokens: int, say) -> dict[str, Any]:
    """Every copy into ``data/``: bucketed by a hash into files, then each file sorted by it (bounded memory)."""
    # size: the texts' bytes, counted while reading (a first pass over the kept text columns)
    text_bytes = 0
    for n, s in sources.items():
        for (shard, t), c in zip(s.shards, draws[n]):
            lens = pc.binary_length(pq.read_table(s.last.verified(KEPT, shard), columns=["text"]).column("text"))
            text_bytes += int((pc.fill_null(lens, 0).to_numpy(zero_copy_only=False) * c).sum())
    n_files = max(1, math.ceil(text_bytes / cfg.max_shard_bytes))
    buckets = tmp / ".buckets"
    k = 0
    for n, s in sources.items():
        for (shard, t), c in zip(s.shards, draws[n]):
            keep = np.nonzero(c)[0]
            if not len(keep):
                continue
            rows = pq.read_table(s.last.verified(KEPT, shard), columns=["id", "text", "n_tokens"]).take(keep)
            reps = c[keep]
            idx = np.repeat(np.arange(len(rows)), reps)
            copy_no = np.concatenate([np.arange(r) for r in reps])
            ids = rows.column("id").to_pylist()
            keys = np.array([_u64(cfg.seed, n, ids[i], j) for i, j in zip(idx, copy_no)], np.uint64)
            piece = rows.take(idx)
            piece = pa.table({"id": piece.column("id"), "source": pa.array([n] * len(piece), pa.string()),
                              "copy": pa.array(copy_no, pa.int64()), "text": piece.column("text"),
                              "n_tokens": piece.column("n_tokens"), "_key": pa.array(keys, pa.uint64())})
            which = (keys % np.uint64(n_files)).astype(np.int64)
            for b in np.unique(which):
                (buckets / f"{b:05d}").mkdir(parents=True, exist_ok=True)
                pq.write_table(piece.filter(pa.array(which == b)), buckets / f"{b:05d}" / f"{k:06d}.parquet")
            k += 1
    files = {}
    (tmp / "data").mkdir()
    written = [b for b in range(n_files) if (buckets / f"{b:05d}").is_dir()]
    for i, b in enumerate(written):
        table = pq.read_table(buckets / f"{b:05d}")
        table = table.take(pc.sort_indices(table, [("_key", "ascending")])).drop_columns(["_key"])
        path = tmp / "data" / f"train-{i:05d}-of-{len(written):05d}.parquet"
        pq.write_table(table, path, compression="zstd")
        files[f"data/{path.name}"] = file_seal(path)
        shutil.rmtree(buckets / f"{b:05d}")
        say(f"mix: {path.name}: {len(table):,} rows")
    shutil.rmtree(buckets, ignore_errors=True)
    return files


def _write_megatron(sources: dict[str, Source], tmp: Path, out: Path) -> tuple[dict[str, Any], list[str]]:
    """Each source's rows × their factor, token ids from its tokenize stage; the weighted ``--data-path``
    (``megatron-data-path.txt`` names the prefixes where the mixture will be, ``out``; mixture.json relative)."""
    from stages.tokenize.megatron import write_megatron

    files, entries = {}, []
    for n, s in sources.items():
        for (shard, t), f in zip(s.shards, s.factors):
            tokens, seq, lengths, starts = s.token_rows(shard)
            docs = []
            for i, factor in zip(t.column("id").to_pylist(), f):
                k = seq.get(i)
                if k is None:
                    raise ConfigError(f"source {n}: row {i!r} of {s.last.path.name}/{shard} is not in "
                                      f"{s.tokenize.path.name}/{shard}: its token ids cannot be found")
                doc = np.asarray(tokens[starts[k]:starts[k] + lengths[k]])
                docs += [doc] * int(factor)
            prefix = tmp / "megatron" / n / shard
            write_megatron(str(prefix), docs, tokens.dtype.type)
            for ext in (".bin", ".idx"):
                files[f"megatron/{n}/{shard}{ext}"] = file_seal(Path(str(prefix) + ext))
            entries.append((n, f"megatron/{n}/{shard}", int(sum(len(d) for d in docs))))
    data_path = []
    for n, rel, tok in entries:
        if tok:
            data_path += [f"{sources[n].spec.share * tok / sources[n].upsampled_tokens:.12g}", rel]
    write_atomic_bytes(tmp / "megatron-data-path.txt", (" ".join(
        w if j % 2 == 0 else str(out.resolve() / w) for j, w in enumerate(data_path)) + "\n").encode())
    files["megatron-data-path.txt"] = file_seal(tmp / "megatron-data-path.txt")
    return files, data_path


# -- the card --------------------------------------------------------------------------------------------------

def render_card(rec: dict[str, Any]) -> str:
    import yaml

    n_rows = sum(p["copies"] for p in rec["sources"].values())
    size = next(c for lim, c in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                                 (1e7, "1M<n<10M"), (1e8, "10M<n<100M"), (float("inf"), "n>100M")) if n_rows < lim)
    head = {"configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
            "size_categories": [size], "tags": ["pre-training", "mixture"]}
    lines = ["---", yaml.safe_dump(head, sort_keys=False).strip(), "---", "", "# Training mixture", "",
             f"{rec['mixture_tokens']:,} tokens in {n_rows:,} documents from {len(rec['sources'])} source runs "
             f"(target {rec['total_tokens_target']:,}; the largest mixture within every source's epoch cap: "
             f"{rec['largest_within_caps']:,}). Seed {rec['seed']}.", "",
             "![target and realised token shares](shares.png)", "",
             "| source | target share | share | tokens | epochs | rows | rows drawn | copies | upsampled |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for n, p in rec["sources"].items():
        up = "yes" if p["upsampled"] else ("off" if p["has_cluster_sizes"] else "no cluster sizes")
        lines.append(f"| {n} | {p['share']:.2%} | {p['mixture_share']:.2%} | {p['mixture_tokens']:,} | "
                     f"{p['epochs']:.2f} | {p['rows']:,} | {p['rows_drawn']:,} | {p['copies']:,} | {up} |")
    bands = ", ".join(f"{b['min']}{'+' if b['max'] is None else ('' if b['max'] == b['min'] else '-' + str(b['max']))}"
                      f" → {'N' if b['factor'] == 'size' else b['factor']}" for b in rec["upsample"])
    lines += ["", "## How it was drawn", "",
              f"Each kept row of a source counts as many times as its duplicate cluster's size gives ({bands}: "
              "FineWeb-2's re-hydration by default), then the source's tokens are repeated or subsampled to its share: "
              "a row's copies are the whole part of its expected copies and one more with the remaining probability, "
              "from a hash of the seed, the source and its id; copies are then added or removed in hash order until "
              "the source is within one document of its target. Rows with no copy are listed in `draws/`.", "",
              "Cluster sizes of the kept rows:", ""]
    for n, p in rec["sources"].items():
        sizes = ", ".join(f"{k}: {v:,}" for k, v in list(p["cluster_sizes"].items())[:12])
        lines.append(f"- {n}: {sizes}" + (" …" if len(p["cluster_sizes"]) > 12 else ""))
    lines += ["", "## Files", "",
              "- `data/train-*.parquet`: every copy, shuffled (columns `id`, `source`, `copy`, `text`, `n_tokens`).",
              "- `megatron/SOURCE/*.bin/.idx` and `megatron-data-path.txt`: each source's upsampled rows once, "
              "weighted `share × prefix tokens / source tokens`; Megatron's blending repeats and shuffles.",
              "- `draws/SOURCE.parquet`: every kept row of each source with its factor and copies.",
              "- `mixture.json`: the figures, each source run's root hash, and the seal of every file.", "",
              "## Source runs", "", "| source | run | root |", "|---|---|---|"]
    for n, p in rec["sources"].items():
        lines.append(f"| {n} | `{p['run']}` | `{p['root']}` |")
    lines += ["", "Each run's own card (`RUN/dataset/README.md`) says what was removed from it and why.", ""]
    return "\n".join(lines)


def _plot(rec: dict[str, Any], path: Path) -> None:
    try:
        from pipeline.draw.plots import pyplot

        plt = pyplot()
    except ImportError:
        return
    names = list(rec["sources"])
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    y = np.arange(len(names))
    ax.barh(y - 0.2, [rec["sources"][n]["share"] for n in names], 0.4, label="target", color="#9aa5b1")
    ax.barh(y + 0.2, [rec["sources"][n]["mixture_share"] for n in names], 0.4, label="realised", color="#4c9f70")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("share of the mixture's tokens")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- verify ----------------------------------------------------------------------------------------------------

def verify_mixture(out: str | Path, check_sources: bool = True) -> list[str]:
    """Problems of a mixture folder (empty: as written): every sealed file unchanged, no file or link beyond them,
    the draws cover each source run's kept rows exactly once (where the run is still there, and unchanged), the
    Parquet rows are the draws' copies, the figures and card are what the files give."""
    out = Path(out)
    try:
        rec = json.loads((out / MIXTURE_FILE).read_text())
        files = rec["files"]
        sources = rec["sources"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{out / MIXTURE_FILE}: unreadable ({type(exc).__name__})"]
    import re

    if not all(isinstance(n, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in sources):
        return ["mixture: mixture.json names a source that is no plain name (not read)"]
    problems = check_seal(out, files, "mixture")
    known = set(files) | {MIXTURE_FILE, "README.md", "shares.png"}
    for p in sorted(out.rglob("*")):
        rel = str(p.relative_to(out))
        if p.is_symlink():
            problems.append(f"mixture: {rel} is a symbolic link (nothing is read through it)")
        elif p.is_file() and rel not in known:
            problems.append(f"mixture: {rel} is no file of the mixture")
    if problems:
        return problems
    if (out / "README.md").is_file() and (out / "README.md").read_text(encoding="utf-8", errors="replace") != \
            render_card(rec):
        problems.append("mixture: README.md differs from what mixture.json gives (edited?)")
    copies: Counter = Counter()
    for n, p in sources.items():
        d = pq.read_table(out / "draws" / f"{n}.parquet")
        if len(d) != p["rows"] or int(pc.sum(d.column("copies")).as_py() or 0) != p["copies"]:
            problems.append(f"mixture: draws/{n}.parquet holds {len(d)} rows, {p['rows']} recorded")
        if len(set(d.column("id").to_pylist())) != len(d):
            problems.append(f"mixture: draws/{n}.parquet lists a row twice")
        for i, c in zip(d.column("id").to_pylist(), d.column("copies").to_pylist()):
            if c:
                copies[(n, i)] = c
        tokens = int(pc.sum(pc.multiply(d.column("copies"), d.column("n_tokens"))).as_py() or 0)
        if tokens != p["mixture_tokens"]:
            problems.append(f"mixture: source {n} gives {tokens:,} tokens by its draws, {p['mixture_tokens']:,} "
                            f"recorded")
        if p["target_tokens"] and abs(tokens - p["target_tokens"]) > max(SHARE_TOLERANCE * p["target_tokens"],
                                                                          p["largest_document"]):
            problems.append(f"mixture: source {n} gives {tokens:,} tokens, target {p['target_tokens']:,}")
        if check_sources and Path(p["run"]).is_dir():
            problems += _check_source(n, p, d)
    seen: Counter = Counter()
    for f in sorted(k for k in files if k.startswith("data/")):
        t = pq.read_table(out / f, columns=["id", "source", "copy"])
        for n, i, c in zip(t.column("source").to_pylist(), t.column("id").to_pylist(), t.column("copy").to_pylist()):
            seen[(n, i)] += 1
            if not 0 <= c < copies.get((n, i), 0):
                problems.append(f"mixture: {f} holds copy {c} of {n}/{i}, which has {copies.get((n, i), 0)}")
                break
    if seen != copies:
        diff = [k for k in set(seen) | set(copies) if seen[k] != copies[k]]
        problems.append(f"mixture: data/ holds {sum(seen.values()):,} rows, the draws {sum(copies.values()):,} "
                        f"({len(diff)} rows differ, e.g. {diff[0]})")
    return problems


def verify_folder(folder: str | Path) -> list[str] | None:
    """``swallow verify`` of a mixture folder (None: not a mixture)."""
    return verify_mixture(folder) if (Path(folder) / MIXTURE_FILE).is_file() else None


def _check_source(n: str, p: dict, d: pa.Table) -> list[str]:
    from pipeline.store.ledger import list_stages
    from pipeline.store.run_tree import leaves, root_of

    run = Path(p["run"])
    if root_of(leaves(run)) != p["root"]:
        return [f"mixture: source run {run} changed since the mixture was made (its root differs); mix again"]
    last = list_stages(run)[-1]
    ids: list[str] = []
    for shard in last.done_shards():
        ids += pq.read_table(last.verified(KEPT, shard), columns=["id"]).column("id").to_pylist()
    if Counter(ids) != Counter(d.column("id").to_pylist()):
        return [f"mixture: draws/{n}.parquet does not list exactly the kept rows of {run}"]
    return []


# -- command line ----------------------------------------------------------------------------------------------

def add_command(sub) -> None:
    """``swallow mix MIX.yaml OUT``: registered through the ``swallow.commands`` entry point."""
    mp = sub.add_parser("mix", help="combine finished runs into one training mixture by token shares",
                        description=__doc__.split("What it does")[0].replace("``", "").strip() + "\n\nThe "
                        "output folder gets data/ (shuffled Parquet), megatron/ and megatron-data-path.txt, draws/ "
                        "(every source row's copies), mixture.json and README.md (the card); `swallow verify OUT` "
                        "checks it.",
                        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    mp.add_argument("mixture", help="the mixture file (YAML: sources with run and share, total_tokens, seed, ...)")
    mp.add_argument("output", help="folder of the mixture (created; replaced when the mixture changed)")
    mp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the mixture file (e.g. total_tokens=1000000, sources.code.share=0.2)")
    mp.add_argument("--dry-run", action="store_true", help="print each source's tokens and epochs; write nothing")
    mp.set_defaults(func=cmd_mix)


def cmd_mix(args) -> int:
    cfg = load_mix(args.mixture, args.set)
    rec = make_mixture(cfg, args.output, dry_run=args.dry_run, say=lambda m: print(m, file=sys.stderr))
    if args.dry_run:
        print(f"mixture: {rec['total_tokens']:,} tokens (the largest within every cap: "
              f"{rec['largest_within_caps']:,})")
        for n, s in rec["sources"].items():
            print(f"  {n}: {s['rows']:,} rows, {s['tokens']:,} tokens, {s['upsampled_tokens']:,} upsampled; "
                  f"target {rec['targets'][n]:,} = {rec['epochs'][n]:.2f} epochs")
        return 0
    problems = verify_mixture(args.output)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"mixture: {args.output}: {rec['mixture_tokens']:,} tokens; card {Path(args.output) / 'README.md'}")
    return 1 if problems else 0
