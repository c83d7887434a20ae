"""The corpus is never executed: no module of the data, or of the folder a command runs in, is ever imported.

Ray puts the folder ``ray.init`` runs in on every worker's ``sys.path``; a run from a folder holding a ``numpy.py``
(``swallow minhash_dedup --input .``) used to import it inside the workers. Here the working folder *and* the input
folder hold a module named after every top-level package that any stage imports (the project's own, the libraries
they load in ``setup()``, and the standard-library modules among them), each of which leaves a marker file when
imported. Every stage type then runs, on Ray, from that folder, on that folder: no marker may appear.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import CPU_ENGINE, LID, ROOT, WARC

SWALLOW = str(Path(sys.executable).with_name("swallow"))

#: what the stages load lazily (in setup(), or in their helper processes), beside the stage modules themselves
LAZY = ["vllm", "torch", "transformers", "trafilatura", "fasttext", "lxml", "tokenizers", "regex", "scipy", "numba",
        "datasketch", "fastwarc", "resiliparse", "charset_normalizer", "pylint", "astroid", "megatron.core",
        "datasets", "brotli", "py_asciimath", "spacy", "fsspec", "matplotlib", "huggingface_hub", "pyarrow",
        "numpy", "multiprocessing", "concurrent.futures", "json", "http.client", "email", "sqlite3", "ssl"]

PROBE = """
import importlib, json, sys
from pipeline.run import plugins
for role in ("source", "stage", "output"):
    plugins.load_all(role)
for m in json.loads(sys.argv[1]):
    try:
        importlib.import_module(m)
    except Exception:
        pass
print(json.dumps(sorted({n.split(".")[0] for n in sys.modules})))
"""


def imported_packages() -> list[str]:
    """Every top-level module name the stages and their libraries import (measured, not listed by hand)."""
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(LAZY)], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=600)
    names = json.loads(out.stdout.strip().splitlines()[-1])
    return [n for n in names if n.isidentifier() and not n.startswith("__") and n not in sys.builtin_module_names
            and not n.startswith("_sysconfigdata")]


def plant(folder: Path, names: list[str], markers: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.py").write_text(
            "import os as _os, sys as _sys\n"
            f"open(_os.path.join({str(markers)!r}, {name!r} + '-' + str(_os.getpid())), 'w')"
            ".write(' '.join(_sys.argv))\n")


def run_from(folder: Path, config: Path, out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", VLLM_CPU_KVCACHE_SPACE="1")
    return subprocess.run([SWALLOW, "run", str(config), "--output", str(out), "--no-progress", "--no-export"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    markers = root / "markers"
    markers.mkdir()
    names = imported_packages()
    assert {"numpy", "scipy", "pyarrow", "vllm", "trafilatura", "fasttext", "pipeline", "stages"} <= set(names)
    work = root / "work"  # the folder the command runs in: also the code input (``paths: [.]``)
    plant(work, names, markers)
    (work / "good.py").write_text("def add(a: int, b: int) -> int:\n    \"\"\"Add.\"\"\"\n    return a + b\n")
    return work, markers, names


def test_no_corpus_module_imported_on_the_code_path(hostile, tiny_model, tmp_path):
    work, markers, names = hostile
    stages = [{"type": "exact_dedup"}, {"type": "syntax_filter"}, {"type": "ruff_format"}, {"type": "ruff_gate"},
              {"type": "lint_filter", "min_score": 0.0}, {"type": "script_filter"},
              {"type": "minhash_dedup", "shingle": "code", "threshold": 0.7, "num_perm": 32, "partitions": 2},
              {"type": "length_filter", "max_chars": 4000},
              {"type": "decontaminate", "benchmarks": [{"recipe": "humaneval"}], "tokens": "code", "near_copy": True},
              # (only the shortest files are rewritten; the others pass through to the scorer)
              {"type": "rewrite", "prompt": "code_sgcr", "model": str(tiny_model), "max_tokens": 8,
               "where": "n_chars < 100", "concurrency": 1, **CPU_ENGINE},
              {"type": "llm_score", "model": str(tiny_model), "max_tokens": 24, "concurrency": 1, "min_score": 0,
               **CPU_ENGINE},
              {"type": "tokenize", "tokenizer": str(Path(tiny_model) / "tokenizer.json")}]
    raw = {"kind": "code", "source": {"type": "code", "paths": ["."], "shard_bytes": 20_000},
           "stages": stages, "ray": {"num_cpus": 2, "object_store_memory": 300_000_000}}
    config = tmp_path / "code.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = run_from(work, config, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in markers.iterdir()) == []
    stats = json.loads((tmp_path / "run" / "stages" / "00-ingest" / "stats" / "00000.json").read_text())
    assert stats["in"] > 0


def test_no_corpus_module_imported_on_the_web_path(hostile, tmp_path):
    work, markers, _ = hostile
    stages = [{"type": "language_prefilter", "languages": ["en", "ja"], "model": str(LID)},
              {"type": "extract"}, {"type": "language_id", "model": str(LID), "min_score": 0.0},
              {"type": "math_score", "min_score": 0.0}, {"type": "gopher_quality"}, {"type": "gopher_repetition"},
              {"type": "c4_filter"}, {"type": "fineweb_filter"}, {"type": "exact_dedup"},
              {"type": "minhash_dedup"}, {"type": "japanese_quality"}]
    raw = {"kind": "web", "source": {"type": "warc", "paths": [str(WARC / "dolma_sample-0000.warc.gz")]},
           "stages": stages, "ray": {"num_cpus": 2, "object_store_memory": 300_000_000}}
    config = tmp_path / "web.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = run_from(work, config, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in markers.iterdir()) == []
