"""MinHash near-deduplication on any Ray cluster, on CPUs, with memory bounded by configuration.

Four phases, each a set of resumable tasks (``pipeline.core.global_stage``):

1. **scan**, per shard: shingle each row (word n-grams of the lowercased text, ASCII punctuation separating words,
   or, for code, n-grams of identifier/number/symbol tokens), compute its MinHash signature (bit-identical
   to ``datasketch.MinHash``, see ``minhash_kernels``), cut it into ``bands`` bands of ``rows`` values and hash each
   band. It writes (band, bucket, row key) partitioned by bucket over ``partitions`` files, and the rows'
   survivor attributes (id, length, value; the shingle hashes when ``verify_jaccard``). A row key is
   ``shard_index << 32 | row`` — exact, 8 bytes, no string ids in the heavy phases.
2. **reduce**, per partition: rows sharing a (band, bucket) are candidates; each bucket becomes a star of edges
   to its smallest key. Without verification the partition's connected components are found (scipy) and written
   as (key, local root) for every key in a multi-row bucket; with ``verify_jaccard`` the candidate edges themselves
   are written (unique; every pair of a bucket of up to ``CLIQUE`` rows, the star of a larger one), since
   verification must judge each edge, not a component. Only this partition's edges are in memory.
3. **merge**, one task: connected components again, over the union of the partitions' edges — what links
   components across partitions. With ``verify_jaccard``, each candidate edge's true Jaccard similarity (over the
   two rows' shingle hashes) is computed first and edges below ``verify_threshold`` (LSH false positives) are
   dropped, so a cluster is a connected component of verified near-duplicate pairs: the clusters are a property of
   the texts alone, whichever row later survives. Each cluster gets one deterministic survivor (``lowest_id``,
   ``longest``, or ``highest`` ``survivor_column``, ties to the lowest id). Decisions are written only for rows in
   clusters.
4. **apply**, per shard: the per-shard ledger; rows with a survivor elsewhere are rejected as ``near_duplicate``
   with ``duplicate_of``; every row gets ``minhash_cluster`` (its survivor's id, its own when alone) and
   ``minhash_cluster_size``.

Memory: a scan holds one shard; a reduce one partition of the band rows (``bands × rows / partitions``); the
merge the keys that collided somewhere and the attributes of those keys only. Peak RSS per task is in each phase
marker (``work/PHASE/done/KEY.json``).

Defaults: FineWeb's (5-word shingles, 14 bands × 8 rows = 112 permutations, seed 1). The Stack's near-dedup used
Jaccard 0.7 on 5-grams: ``threshold: 0.7`` chooses bands and rows the way datasketch's ``MinHashLSH`` does.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from pipeline.core.global_stage import Step, StepInputs
from pipeline.core.stage import Verdict
from pipeline.store.shards import StageDir
from stages.dedup.minhash_kernels import CHARS, CODE, WORDS, band_hashes, datasketch_permutations, shingles, signatures
from stages.dedup.survivors import DedupStage, choose_survivors, verify_duplicates

MERGE = "merge"
#: Buckets of up to this many rows give every pair to verification, larger ones a star (see ``reduce``).
CLIQUE = 20
#: Candidate edges verified per sparse product: 10k edges x 2 rows x ~500 hashes (a code file) x 8 bytes = 80 MB.
EDGE_CHUNK = 10_000


class MinhashDedup(DedupStage):
    """Near-duplicate removal with MinHash LSH over all shards (see the module docstring)."""

    type: ClassVar[str] = "minhash_dedup"
    not_measured: ClassVar[frozenset[str]] = frozenset({"minhash_cluster"})
    requires: ClassVar[tuple[str, ...]] = ("datasketch", "numba", "scipy")
    extra: ClassVar[str] = "dedup"
    #: reduce per partition (components, or candidate edges), then one merge over them: the decisions
    steps: ClassVar[tuple[Step, ...]] = (Step("reduce", "reduce"), Step(MERGE, "merge", per_partition=False))
    #: only rows in clusters have a decision
    decides: ClassVar[str] = "some"
    column: str = "text"
    #: words: word n-grams of normalised text (prose); code: n-grams of code tokens; chars: character n-grams
    #: (Japanese, Chinese: no spaces between words).
    shingle: Literal["words", "code", "chars"] = "words"
    ngram: int = Field(5, ge=1)
    #: Bands x rows of the LSH; their product is the number of permutations. Ignored when ``threshold`` is set.
    bands: int = Field(14, ge=1, le=1024)
    rows: int = Field(8, ge=1)
    #: A Jaccard threshold: bands and rows are then chosen as datasketch's MinHashLSH does (for num_perm).
    threshold: float | None = Field(None, gt=0, lt=1)
    num_perm: int = Field(112, ge=2, le=4096)
    seed: int = 1
    #: sha1 (bit-identical to datasketch.MinHash) or fast64 (FNV-1a: faster, not datasketch-identical).
    hash: Literal["sha1", "fast64"] = "sha1"
    #: Drop LSH false positives: members whose true Jaccard with the survivor is below verify_threshold.
    verify_jaccard: bool = False
    verify_threshold: float | None = Field(None, gt=0, le=1)
    partitions: int = Field(8, ge=1, le=1_048_576)

    @model_validator(mode="after")
    def _check(self):
        if self.threshold is None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} > num_perm {self.num_perm}")
        return self

    def makes(self) -> set[str]:
        return {"minhash_cluster", "minhash_cluster_size", "duplicate_of"}

    # -- parameters -----------------------------------------------------------------------------------------
    def lsh_params(self) -> tuple[int, int]:
        if self.threshold is None:
            return self.bands, self.rows
        from datasketch.lsh import _optimal_param

        return _optimal_param(self.threshold, self.num_perm, 0.5, 0.5)

    def jaccard_threshold(self) -> float:
        if self.verify_threshold is not None:
            return self.verify_threshold
        if self.threshold is not None:
            return self.threshold
        b, r = self.lsh_params()
        return (1 / b) ** (1 / r)  # where the LSH's S-curve rises through one half

    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        """datasketch's own (a, b) for this num_perm and seed."""
        return datasketch_permutations(self.num_perm, self.seed)

    @property
    def mode(self) -> int:
        return {"code": CODE, "chars": CHARS}.get(self.shingle, WORDS)

    def signatures(self, texts: list[str | None], shingle_sets: bool = False):
        a, b = self.permutations()
        return signatures(texts, self.ngram, a, b, mode=self.mode, fast=self.hash == "fast64",
                          shingle_sets=shingle_sets)

    def shingles(self, text: str | None) -> list[bytes]:
        """This stage's shingles of one text, in plain Python (the definition the kernel follows)."""
        return shingles(text, self.ngram, self.mode)

    # -- phases ---------------------------------------------------------------------------------------------
    def scan(self, table: pa.Table, ctx) -> pa.Table:
        texts = table.column(self.column).to_pylist()
        sig, sets = self.signatures(texts, shingle_sets=self.verify_jaccard)
        bands, rows = self.lsh_params()
        bh = band_hashes(sig, bands, rows)  # [n, bands]
        n = len(texts)
        keys = (np.uint64(ctx.shard_index) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
        attrs = {"key": pa.array(keys), "id": table.column("id"),
                 "length": pa.array([len(t or "") for t in texts], pa.int64())}
        if self.survivor == "highest":
            attrs["value"] = table.column(self.survivor_column).cast(pa.float64())
        if self.verify_jaccard:
            attrs["shingles"] = pa.array([s.tolist() for s in sets], pa.list_(pa.uint32()))
        flat = bh.reshape(-1)
        return pa.table({"band": pa.array(np.tile(np.arange(bands, dtype=np.uint8), n)),
                         "bucket": pa.array(flat), "key": pa.array(np.repeat(keys, bands)),
                         "partition": pa.array((flat % np.uint64(self.partitions)).astype(np.int32))}), \
            {"attrs": pa.table(attrs)}

    def reduce(self, partition: int, tables: list[pa.Table]) -> pa.Table:
        empty = pa.table({"key": pa.array([], pa.uint64()), "root": pa.array([], pa.uint64())})
        if not tables:
            return empty
        t = pa.concat_tables([x.select(["band", "bucket", "key"]) for x in tables])
        band = t.column("band").to_numpy()
        bucket = t.column("bucket").to_numpy()
        key = t.column("key").to_numpy()
        order = np.lexsort((key, bucket, band))
        band, bucket, key = band[order], bucket[order], key[order]
        new = np.r_[True, (band[1:] != band[:-1]) | (bucket[1:] != bucket[:-1])]
        group = np.cumsum(new) - 1
        sizes = np.bincount(group)
        multi = sizes[group] > 1
        if not multi.any():
            return empty
        first = np.flatnonzero(new)
        hub = key[first][group]  # each bucket's smallest key (sorted by key inside the bucket)
        u, v = hub[multi], key[multi]
        keep = u != v
        u, v = u[keep], v[keep]
        if not self.verify_jaccard:
            return components(u, v)
        # Verification judges edges, so a row that fails against its bucket's smallest key may still pass against
        # another member: in buckets of up to CLIQUE rows every pair is a candidate edge (at most 190 per bucket),
        # larger ones (boilerplate shared by thousands of rows) keep the star.
        us, vs = [u], [v]
        for size in range(3, min(int(sizes.max()), CLIQUE) + 1):
            starts = first[sizes == size]
            if len(starts):
                i, j = np.triu_indices(size, 1)
                inner = i > 0  # pairs with the hub are in the star already
                us.append(key[(starts[:, None] + i[inner]).ravel()])
                vs.append(key[(starts[:, None] + j[inner]).ravel()])
        edges = np.unique(np.stack([np.concatenate(vs), np.concatenate(us)], axis=1), axis=0)
        return pa.table({"key": pa.array(edges[:, 0], pa.uint64()), "root": pa.array(edges[:, 1], pa.uint64())})

    def merge(self, inputs: StepInputs) -> tuple[pa.Table, dict]:
        tables = inputs.tables()
        pairs = pa.concat_tables(tables) if tables else None
        info: dict[str, Any] = {"candidate_keys": 0, "clusters": 0, "edges_dropped": 0}
        cols = {"id": pa.string(), "shard": pa.string(), "cluster": pa.string(), "cluster_size": pa.int64(),
                "duplicate_of": pa.string()}
        empty = pa.table({k: pa.array([], t) for k, t in cols.items()})
        if pairs is None or len(pairs) == 0:
            return empty, info
        u, v = pairs.column("key").to_numpy(), pairs.column("root").to_numpy()
        attrs = None
        if self.verify_jaccard:  # one judgement per pair, though several partitions may have found it
            edges = np.unique(np.stack([u, v], axis=1), axis=0)
            u, v = edges[:, 0], edges[:, 1]
            attrs = self.member_attrs(inputs, pa.array(np.unique(edges), pa.uint64()))
            u, v, info["edges_dropped"] = self.verified_edges(u, v, attrs)
        comp = components(u, v)
        info["candidate_keys"] = len(comp)
        if len(comp) == 0:
            return empty, info
        if attrs is None:
            attrs = self.member_attrs(inputs, comp.column("key"))
        else:
            attrs = attrs.drop_columns(["shingles"])
            attrs = attrs.filter(pc.is_in(attrs.column("key"), value_set=comp.column("key")))
        ckeys = comp.column("key").to_numpy()  # sorted (np.unique)
        where = np.searchsorted(ckeys, attrs.column("key").to_numpy())
        t = attrs.append_column("root", pa.array(comp.column("root").to_numpy()[where], pa.uint64()))
        decided = choose_survivors(t, "root", self.survivor)
        decided = decided.filter(pc.greater(decided.column("group_size"), 1))
        cluster = pc.coalesce(decided.column("duplicate_of"), decided.column("id"))
        info["clusters"] = int(pc.count_distinct(cluster).as_py()) if len(decided) else 0
        out = pa.table({"id": decided.column("id"), "shard": decided.column("shard"), "cluster": cluster,
                        "cluster_size": decided.column("group_size"), "duplicate_of": decided.column("duplicate_of")})
        return out.sort_by([("shard", "ascending"), ("id", "ascending")]), info

    def member_attrs(self, inputs: StepInputs, keys: pa.ChunkedArray | pa.Array) -> pa.Table:
        """The attributes of the given keys only, read shard by shard (never every row's at once)."""
        wanted = pa.chunked_array([keys]) if isinstance(keys, pa.Array) else keys
        by_shard = pc.shift_right(wanted, 32).to_numpy()
        shards = inputs.shards()
        parts = []
        columns = ["key", "id", "length"] + (["value"] if self.survivor == "highest" else []) + \
            (["shingles"] if self.verify_jaccard else [])
        for idx in np.unique(by_shard):
            shard = shards[int(idx)]
            t = inputs.side("attrs", shard, columns)
            t = t.filter(pc.is_in(t.column("key"), value_set=pa.array(wanted.to_numpy()[by_shard == idx])))
            parts.append(t.append_column("shard", pa.array([shard] * len(t), pa.string())))
        return pa.concat_tables(parts)

    def verified_edges(self, u: np.ndarray, v: np.ndarray, attrs: pa.Table) -> tuple[np.ndarray, np.ndarray, int]:
        """The candidate edges whose true Jaccard similarity (over the two rows' shingle hashes) reaches the
        threshold, and how many were dropped. Each edge is judged on its own two texts, so the result does not
        depend on row ids or on which row later survives. The sets are one sparse row x hash matrix (8 bytes a
        hash; a Python set of a code file's ~500 hashes takes ~48 KB) and the intersections of EDGE_CHUNK edges are
        one row-wise product."""
        from scipy.sparse import csr_matrix

        keys = attrs.column("key").to_numpy()
        lists = attrs.column("shingles").combine_chunks()
        row = pc.list_parent_indices(lists).to_numpy()
        values = pc.list_flatten(lists).to_numpy()
        pairs = np.unique((row.astype(np.uint64) << np.uint64(32)) | values.astype(np.uint64))  # a repeat counts once
        row = (pairs >> np.uint64(32)).astype(np.int64)
        _, col = np.unique(pairs & np.uint64(0xFFFFFFFF), return_inverse=True)
        width = int(col.max()) + 1 if len(col) else 1
        x = csr_matrix((np.ones(len(row), np.int32), (row, col)), shape=(len(keys), width))
        sizes = np.bincount(row, minlength=len(keys))
        pos = np.argsort(keys)
        iu, iv = pos[np.searchsorted(keys[pos], u)], pos[np.searchsorted(keys[pos], v)]
        limit = self.jaccard_threshold()
        ok = np.empty(len(u), bool)
        for s in range(0, len(u), EDGE_CHUNK):
            a, b = iu[s:s + EDGE_CHUNK], iv[s:s + EDGE_CHUNK]
            inter = np.asarray(x[a].multiply(x[b]).sum(axis=1)).ravel()
            ok[s:s + EDGE_CHUNK] = inter / np.maximum(sizes[a] + sizes[b] - inter, 1) >= limit  # two empty: 0
        return u[ok], v[ok], int((~ok).sum())

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        d = self.decided(table, ctx, ["cluster", "cluster_size", "duplicate_of"])
        ids = table.column("id")
        dup_of = d["duplicate_of"].cast(pa.string())
        return Verdict([None if x is None else "near_duplicate" for x in dup_of.to_pylist()],
                       columns={"minhash_cluster": pc.coalesce(d["cluster"].cast(pa.string()), ids),
                                "minhash_cluster_size": pc.coalesce(d["cluster_size"].cast(pa.int64()), 1),
                                "duplicate_of": dup_of})

    def invariants(self, stage_dir: StageDir) -> list[str]:
        return verify_duplicates(stage_dir)


def components(u: np.ndarray, v: np.ndarray) -> pa.Table:
    """(key, root): every key of the edges (u, v) and the smallest key of its connected component (scipy)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keys, inverse = np.unique(np.concatenate([u, v]), return_inverse=True)
    n = len(keys)
    if n == 0:
        return pa.table({"key": pa.array([], pa.uint64()), "root": pa.array([], pa.uint64())})
    iu, iv = inverse[: len(u)], inverse[len(u):]
    graph = coo_matrix((np.ones(len(iu), np.int8), (iu, iv)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1, np.iinfo(np.uint64).max, np.uint64)
    np.minimum.at(smallest, labels, keys)  # keys are sorted, so this is each component's first key
    return pa.table({"key": pa.array(keys, pa.uint64()), "root": pa.array(smallest[labels], pa.uint64())})

