"""The engine-settings rule (``stages/rewrite/engine_settings.py``) on model configs of known sizes: what it
chooses, that it never overrides what the configuration set, and that it chooses nothing without a GPU. Pure
functions: no vLLM, no GPU (the measured effect of the rule is in docs/benchmarks.md)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_rewrite_gpu import LLAMA_8B
from stages.rewrite import engine_settings as es

pytestmark = pytest.mark.fast

#: SmolLM2-135M-Instruct's config.json (as `swallow model import` writes it, the fields the rule reads).
SMOLLM2_135M = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}
H200 = 141 * 10**9


def shape_of(tmp_path, config: dict) -> es.Shape:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return es.model_shape(str(tmp_path))


def test_model_shapes_from_config(tmp_path):
    small = shape_of(tmp_path, SMOLLM2_135M)
    assert 130e6 < small.parameters < 140e6  # SmolLM2-135M: 134.5 M parameters
    assert small.kv_bytes_per_token == 2 * 30 * 3 * 64 * 2
    big = shape_of(tmp_path, LLAMA_8B)
    assert 7.9e9 < big.parameters < 8.1e9  # Llama-3.1-8B: 8.03 B
    assert big.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2  # 128 KiB per token in bf16
    assert es.model_shape(str(tmp_path / "nowhere")) is None  # a Hub name: nothing to read, nothing chosen


def test_a_tiny_model_gets_big_batches_and_speculation_only_when_asked(tmp_path):
    shape = shape_of(tmp_path, SMOLLM2_135M)
    auto = es.choose(shape, H200, 0.9, 8192, fixed=set())
    graphs = {"compilation_config": {"max_cudagraph_capture_size": es.TINY["max_num_seqs"]}}
    # n-gram speculation measured slower at a full batch: not chosen; CUDA graphs up to the whole batch
    assert auto.settings == {**es.TINY, **graphs}
    assert es.TINY["max_num_seqs"] > es.GRAPH_DEFAULT
    assert any("speculation off" in w for w in auto.why)
    assert auto.summary() == ("max_num_seqs=1024, max_num_batched_tokens=65536, "
                              "max_cudagraph_capture_size=1024")
    asked = es.choose(shape, H200, 0.9, 8192, fixed=set(), speculation="ngram")
    assert asked.settings == {"speculative_config": es.NGRAM, **es.TINY, **graphs}
    assert "ngram(6)" in asked.summary()
    suffix = es.choose(shape, H200, 0.9, 8192, fixed=set(), speculation="suffix")
    assert suffix.settings == {"speculative_config": es.SUFFIX, **es.TINY, **graphs}
    assert "speculative_config=suffix(24)" in suffix.summary()
    off = es.choose(shape, H200, 0.9, 8192, fixed=set(), speculation="off")
    assert off.settings == {**es.TINY, **graphs}


def test_what_the_configuration_set_is_never_chosen(tmp_path):
    shape = shape_of(tmp_path, SMOLLM2_135M)
    ch = es.choose(shape, H200, 0.9, 8192, fixed={"max_num_seqs", "speculative_config"}, speculation="ngram")
    assert ch.settings == {"max_num_batched_tokens": es.TINY["max_num_batched_tokens"]}  # no graphs: its batch
    assert sum("set by the configuration" in w for w in ch.why) == 2
    own = es.choose(shape, H200, 0.9, 8192, fixed={"compilation_config"})
    assert own.settings == es.TINY  # engine_args: {compilation_config: ...} is the user's


def test_a_large_model_is_bounded_by_its_kv_cache_and_does_not_speculate(tmp_path):
    shape = shape_of(tmp_path, LLAMA_8B)
    ch = es.choose(shape, H200, 0.9, 2048, fixed=set())
    # (141 GB x 0.9 - 16 GB weights - 4 GiB) / (128 KiB x 2048) = ~400 requests -> 256 (a power of two below)
    assert ch.settings == {"max_num_seqs": 256, "max_num_batched_tokens": es.LARGE_BATCHED_TOKENS}
    assert "speculative_config" not in ch.settings
    roomy = es.choose(shape, 8 * H200, 0.9, 2048, fixed=set())
    assert roomy.settings["max_num_seqs"] == es.LARGE_SEQS[1]  # capped
    assert roomy.settings["compilation_config"] == {"max_cudagraph_capture_size": es.LARGE_SEQS[1]}
    tight = es.choose(shape, 24 * 10**9, 0.9, 16384, fixed=set())
    assert tight.settings["max_num_seqs"] == es.LARGE_SEQS[0]  # floored: vLLM admits by free blocks anyway
    assert "compilation_config" not in tight.settings  # vLLM's graphs already cover 256


def test_a_large_model_is_sized_for_the_requests_of_the_work(tmp_path):
    """The measured case (H200, 8B shapes, 1,000 x 512/512): sized for max_model_len 4,096 the rule gave 256
    sequences (0.966x of vLLM's defaults); sized for the work's requests, 512 (1.197x)."""
    shape = shape_of(tmp_path, LLAMA_8B)
    prompts = [500, 512, 524]
    tokens = es.request_tokens(prompts, 512, 4096)
    assert tokens == 512 + 512
    assert es.choose(shape, H200, 0.9, tokens, fixed=set()).settings["max_num_seqs"] == 512
    assert es.choose(shape, H200, 0.9, 4096, fixed=set()).settings["max_num_seqs"] == 256
    assert es.request_tokens([], 512, 4096) == 4096  # nothing measured: requests of max_model_len
    assert es.request_tokens([8000], 1024, 4096) == 4096  # never above max_model_len
    # only where the rule reads the length does the stage wait for a shard to measure it
    assert es.reads_request_length(shape, H200, set())
    assert not es.reads_request_length(shape, H200, {"max_num_seqs"})
    assert not es.reads_request_length(shape, None, set())
    assert not es.reads_request_length(shape_of(tmp_path, SMOLLM2_135M), H200, set())
    assert not es.reads_request_length(None, H200, set())


def test_without_a_gpu_nothing_is_chosen_but_a_forced_speculation(tmp_path):
    shape = shape_of(tmp_path, SMOLLM2_135M)
    assert es.choose(shape, None, 0.9, 2048, fixed=set()).settings == {}
    forced = es.choose(shape, None, 0.9, 2048, fixed=set(), speculation="ngram")
    assert forced.settings == {"speculative_config": es.NGRAM}
    assert es.choose(None, H200, 0.9, 2048, fixed=set()).settings == {}


def test_suffix_speculation_without_its_package_is_one_preflight_line(tmp_path, monkeypatch):
    """``speculation: suffix`` needs arctic-inference (vLLM's suffix proposer): where it is missing the run stops
    before any work with one line naming the stage, the key and the install command. (The package is hidden from
    ``find_spec`` here: ``make install`` installs it.)"""
    import importlib.util

    from stages.rewrite.stage import Rewrite

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "arctic_inference"
                        else real(name, *a))
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2_135M))
    stage = Rewrite(name="sgcr", prompt="code_sgcr", model=str(tmp_path), speculation="suffix")
    problems = [p for p in stage.preflight() if "suffix" in p]
    assert len(problems) == 1 and "'sgcr'" in problems[0] and "arctic-inference==0.3.0" in problems[0]
    assert not [p for p in Rewrite(name="sgcr", prompt="code_sgcr", model=str(tmp_path),
                                   speculation="ngram").preflight() if "arctic" in p]
