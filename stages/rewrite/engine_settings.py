"""vLLM engine settings chosen for the shape of the work: model size, GPU memory, prompt and output lengths.

vLLM's defaults are made for serving many users at once, not for one offline batch of long rewrites; what pays
differs with the model's size (docs/benchmarks.md, "Engine settings for the shape", and datatrove's published sweep
on H100s agree on the direction):

* **Tiny models (< 1 B parameters)** are bound by the per-step overhead (scheduling, kernel launches), not by
  the GPU's arithmetic or memory: fewer, fuller steps with bigger prefill chunks amortise it, and every decode
  step should replay a CUDA graph (vLLM captures graphs up to 512 sequences by default; a bigger batch launches
  every kernel anew): ``max_num_seqs`` 1024, ``max_num_batched_tokens`` 65536, graphs captured up to 1024.
  SmolLM2-135M rewriting 1,000 real Python files on an H200 (vLLM 0.26, one machine, 2026-12-03): 37,695 output
  tok/s against 20,680-22,061 with vLLM's defaults (1,024 / 16,384, graphs to 512), 1.71-1.82x; 512 / 32,768
  (the rule before) 35,186; 2,048 / 131,072 with graphs to 2,048 37,974 (the same within a run's spread, 20 s
  more to start).
* **n-gram speculation** (prompt lookup: a rewrite copies much of its input) is an option, not chosen, for two
  measured reasons. Its speed depends on the machine: vLLM 0.26 runs it without its asynchronous scheduler, which
  is what a tiny model's steps need most; on an H200 at the batch above it accepted 76 % of its drafts and ran at
  0.745x of the same batch without it (28,068 tok/s; the day before, 512 sequences, 67 % and 0.91x), on an H100
  (2026-12-06) 1.08x (37,857 against 35,003 tok/s, 68 %). And it is not lossless in a GPU's bf16: with vLLM's
  batch-invariant kernels two runs without it gave the same 1,000 greedy outputs, and the run with it changed 332
  of them (its verification steps round differently); in float32 it changed 43-49, as many as a second run
  without it did (42). With greedy decoding the CPU build gives identical tokens with and without it (tests).
  datatrove's sweep (H100, vLLM 0.15, before asynchronous scheduling) found it paid for this model, so
  ``speculation: ngram`` turns it on where a user measures otherwise and accepts the changed outputs.
* **suffix speculation** (``speculation: suffix``: suffix trees over the prompt and the outputs so far, from
  ``arctic-inference``) is an option for the same reasons: vLLM 0.26 also runs it without the asynchronous
  scheduler; on an H100 (2026-12-06, the same 1,000 files) it accepted 82 % of its drafts and ran at 0.79x
  (23,447 against 29,564 tok/s). Token-identical greedy outputs on the CPU build (tests).
* **Larger models** are bound by the GPU's arithmetic at a large batch; the batch is bounded by what the KV cache
  holds for requests as long as the work's: the first shard's mean prompt plus ``max_tokens`` (at most
  ``max_model_len``), between 256 and 1,024 sequences (graphs captured up to the batch above 512), with
  ``max_num_batched_tokens`` 16384. Llama-3.1-8B shapes on an H200, 1,000 x 1,024/1,024 (2,048 tokens a request:
  256 sequences): 9,435 tok/s against 8,694 with vLLM's defaults (1,024 / 16,384), 1.085x; 1,000 x 512/512
  (1,024 tokens: 512 sequences): 14,761 against 12,331, 1.197x, where sizing for ``max_model_len`` 4,096 (256
  sequences, the rule before) ran at 0.966x of the defaults.

Whatever the configuration sets itself is kept; the choice and its reasons go to the stage's stats and the report.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Below this many parameters a model is "tiny": step overhead, not arithmetic, bounds it.
TINY_PARAMS = 1.0e9
#: Settings for tiny models (the sweep: SmolLM2-135M on an H200, docs/benchmarks.md).
TINY = {"max_num_seqs": 1024, "max_num_batched_tokens": 65536}
#: vLLM's largest CUDA-graph batch by default: a decode step of more sequences runs without graphs.
GRAPH_DEFAULT = 512
#: n-gram speculation (``speculation: ngram``): tokens proposed per step, and the n-gram sizes looked up in the
#: prompt (datatrove's sweep: 6 tokens).
NGRAM = {"method": "ngram", "num_speculative_tokens": 6, "prompt_lookup_max": 4, "prompt_lookup_min": 2}
#: suffix speculation (``speculation: suffix``, Arctic Inference's suffix trees over the prompt and earlier outputs):
#: vLLM's defaults, up to 24 tokens a step (the trees' depth), fewer where the trees are less sure.
SUFFIX = {"method": "suffix", "num_speculative_tokens": 24}
#: What each ``speculation`` value turns on.
SPECULATIVE = {"ngram": NGRAM, "suffix": SUFFIX}
#: Prefill chunk for larger models.
LARGE_BATCHED_TOKENS = 16384
#: Bounds of max_num_seqs for larger models (the KV cache decides in between).
LARGE_SEQS = (256, 1024)


@dataclass
class Shape:
    """What the rules need to know about a model, from its config.json."""
    parameters: float
    kv_bytes_per_token: int
    weight_bytes: int


@dataclass
class Choice:
    """The engine keyword arguments chosen (only those the configuration left open) and why."""
    settings: dict[str, Any] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line, e.g. ``max_num_seqs=1024, max_num_batched_tokens=65536, max_cudagraph_capture_size=1024``."""
        def item(k: str, v: Any) -> str:
            if isinstance(v, dict) and "method" in v:
                return f"{k}={speculation_label(v['method'], v['num_speculative_tokens'])}"
            if isinstance(v, dict):  # compilation_config: its keys as they are
                return ", ".join(f"{key}={x}" for key, x in v.items())
            return f"{k}={v}"

        return ", ".join(item(k, v) for k, v in self.settings.items()) or "vLLM's defaults"


def speculation_label(method: str, tokens: int) -> str:
    """How a speculative setting is written in stats and reports: ``ngram(6)``."""
    return f"{method}({tokens})"


def model_shape(model: str, dtype_bytes: int = 2) -> Shape | None:
    """Parameters, KV-cache bytes per token and weight bytes of a local model folder (None if it has no
    config.json, e.g. a Hub name: then nothing is chosen)."""
    path = Path(model) / "config.json"
    if not path.is_file():
        return None
    c = json.loads(path.read_text())
    c = c.get("text_config", c)
    try:
        h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    except KeyError:
        return None
    heads = c.get("num_attention_heads", 1)
    kv_heads = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or h // heads
    inter = c.get("intermediate_size", 4 * h)
    attn = h * heads * head_dim * 2 + h * kv_heads * head_dim * 2  # q, o; k, v
    mlp = 3 * h * inter  # gate, up, down
    embed = vocab * h * (1 if c.get("tie_word_embeddings", False) else 2)
    params = float(layers * (attn + mlp) + embed)
    return Shape(parameters=params, kv_bytes_per_token=2 * layers * kv_heads * head_dim * dtype_bytes,
                 weight_bytes=int(params * dtype_bytes))


def choose(shape: Shape | None, gpu_bytes: int | None, memory_fraction: float, tokens_per_request: int,
           fixed: set[str], speculation: str = "auto") -> Choice:
    """Engine settings for this shape. ``fixed``: the keys the configuration set (never overridden);
    ``tokens_per_request``: prompt plus output tokens a request holds in the KV cache (the caller measures the
    first shard); ``speculation``: "auto" (the rule: off, see the module docstring), "off", "ngram" or "suffix"
    (on)."""
    ch = Choice()

    def put(key: str, value: Any, why: str) -> None:
        if key in fixed:
            ch.why.append(f"{key}: set by the configuration")
        else:
            ch.settings[key] = value
            ch.why.append(why)

    if speculation in SPECULATIVE:
        put("speculative_config", dict(SPECULATIVE[speculation]), f"speculation: {speculation} (set by the "
                                                                   f"configuration)")
    if shape is None or not gpu_bytes:
        ch.why.append("no local config.json: vLLM's defaults" if shape is None else "no GPU: vLLM's defaults")
        return ch
    billions = shape.parameters / 1e9
    if shape.parameters < TINY_PARAMS:
        for key, value in TINY.items():
            put(key, value, f"{key}={value}: a {billions:.2f} B model is bound by per-step overhead")
        graphs(put, ch.settings.get("max_num_seqs", 0))
        if speculation == "auto":
            ch.why.append("speculation off: in bf16 it changes greedy outputs (332 of 1,000, H100) and its speed "
                          "follows the machine (n-gram 0.745x on an H200, 1.08x on an H100; suffix 0.79x on an "
                          "H100; vLLM 0.26)")
        return ch
    free = gpu_bytes * memory_fraction - shape.weight_bytes - 4 * 2**30  # activations, CUDA graphs: ~4 GiB
    fits = int(max(free, 0) // max(shape.kv_bytes_per_token * tokens_per_request, 1))
    seqs = 1 << max(fits, 1).bit_length() - 1  # a power of two, at most what fits
    seqs = min(max(seqs, LARGE_SEQS[0]), LARGE_SEQS[1])
    put("max_num_seqs", seqs, f"max_num_seqs={seqs}: the KV cache holds ~{fits} requests of "
                              f"{tokens_per_request} tokens ({billions:.1f} B model, {gpu_bytes / 2**30:.0f} GiB GPU)")
    graphs(put, ch.settings.get("max_num_seqs", 0))
    put("max_num_batched_tokens", LARGE_BATCHED_TOKENS,
        f"max_num_batched_tokens={LARGE_BATCHED_TOKENS}: bigger prefill chunks")
    if speculation == "auto":
        ch.why.append("speculation off: a model this size is compute-bound at a full batch")
    return ch


def reads_request_length(shape: Shape | None, gpu_bytes: int | None, fixed: set[str]) -> bool:
    """Whether ``choose`` sizes the batch by ``tokens_per_request`` here (a model of TINY_PARAMS or more, on a GPU,
    max_num_seqs left open): the caller then measures its requests before the engine starts."""
    return shape is not None and bool(gpu_bytes) and shape.parameters >= TINY_PARAMS and "max_num_seqs" not in fixed


def graphs(put, seqs: int) -> None:
    """CUDA graphs up to the chosen batch when it is above vLLM's default capture size."""
    if seqs > GRAPH_DEFAULT:
        put("compilation_config", {"max_cudagraph_capture_size": seqs},
            f"CUDA graphs up to {seqs} sequences (vLLM's default: {GRAPH_DEFAULT})")


def request_tokens(prompt_tokens: list[int], max_tokens: int, max_model_len: int) -> int:
    """Tokens a request of this work holds in the KV cache: the mean prompt plus the output cap, at most
    max_model_len (max_model_len itself when nothing was measured)."""
    if not prompt_tokens:
        return max_model_len
    return min(max_model_len, round(sum(prompt_tokens) / len(prompt_tokens)) + max_tokens)


def gpu_memory_bytes() -> int | None:
    """Total memory of the first GPU this process may use, or None without one. Read through NVML (vLLM's own
    dependency), not torch: initialising CUDA here would force vLLM to spawn its engine process instead of forking.
    Asked once per process and first visible device (an engine's start asked three times: its sizing, the engine
    process and the settings)."""
    import os

    return _gpu_memory_bytes((os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip())


@functools.lru_cache(maxsize=8)
def _gpu_memory_bytes(first: str) -> int | None:
    try:
        try:
            import pynvml
        except ImportError:  # vLLM carries its own copy
            from vllm.third_party import pynvml
        pynvml.nvmlInit()
        try:
            handle = (pynvml.nvmlDeviceGetHandleByIndex(int(first)) if first.isdigit()
                      else pynvml.nvmlDeviceGetHandleByUUID(first))
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML, no GPU: nothing to choose from
        return None


#: CPU flags of native bfloat16 arithmetic (AVX-512 BF16, AMX). Without them vLLM's CPU build emulates bf16:
#: the same six greedy SmolLM2 rewrites took 100.3 s in bf16 and 27.4 s in float32 on an AVX2-only VM
#: (docs/benchmarks.md); on a VM with AVX-512 BF16 bf16 is the faster of the two.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The flags of this machine's first processor (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_dtype() -> tuple[str, str]:
    """The dtype ``dtype: auto`` runs in on a CPU, and why."""
    native = sorted(set(NATIVE_BF16_FLAGS) & cpu_flags())
    if native:
        return "bfloat16", f"dtype bfloat16: the CPU has native bf16 ({', '.join(native)})"
    return "float32", "dtype float32: the CPU has no native bf16 (no avx512_bf16 or amx_bf16), so bf16 is emulated"
