"""vLLM engine settings chosen for the shape of the work: model size, GPU memory, prompt and output lengths.

vLLM's defaults are made for serving many users at once, not for one offline batch of long rewrites; what pays
differs with the model's size (docs/benchmarks.md, "Engine settings for the shape", and datatrove's published sweep
on H100s agree on the direction):

* **Tiny models (< 1 B parameters)** are bound by the per-step overhead (scheduling, kernel launches), not by
  the GPU's arithmetic or memory: fewer, fuller steps with bigger prefill chunks amortise it (``max_num_seqs``
  512, ``max_num_batched_tokens`` 32768). SmolLM2-135M rewriting 1,000 real Python files on an H200 (vLLM 0.26):
  35,275 output tok/s against 27,602 with vLLM's defaults (1,024 / 16,384), 1.28x.
* **n-gram speculation** (prompt lookup: a rewrite copies much of its input) is an option, not chosen: on that
  same run it accepted 67 % of its drafts and still ran at 0.91x of the same batch without it (32,267 tok/s): at
  512 sequences a step is already full, and verifying drafts costs more than the steps it saves. datatrove's
  sweep (H100, vLLM 0.15) found it paid for this model; with vLLM 0.26 on an H200 it did not, so ``speculation:
  ngram`` turns it on where a user measures otherwise. It is lossless: with greedy decoding the CPU build gives
  identical tokens with and without it (tests); on the GPU greedy outputs differ between *any* two runs (two runs
  of the same settings: 308 of 1,000 identical), so identity is not a test there.
* **Larger models** are bound by the GPU's arithmetic at a large batch; the batch is bounded by what the KV cache
  holds for requests of ``max_model_len`` tokens (settings are fixed when the engine starts, before the first
  shard), between 256 and 1,024 sequences, with ``max_num_batched_tokens`` 16384. Llama-3.1-8B shapes on an H200,
  1,000 x 1,024/1,024: 9,435 tok/s against 8,694 with vLLM's defaults (1,024 / 16,384), 1.085x.

Whatever the configuration sets itself is kept; the choice and its reasons go to the stage's stats and the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Below this many parameters a model is "tiny": step overhead, not arithmetic, bounds it.
TINY_PARAMS = 1.0e9
#: Settings for tiny models (the sweep: SmolLM2-135M on an H200, docs/benchmarks.md).
TINY = {"max_num_seqs": 512, "max_num_batched_tokens": 32768}
#: n-gram speculation (``speculation: ngram``): tokens proposed per step, and the n-gram sizes looked up in the
#: prompt (datatrove's sweep: 6 tokens).
NGRAM = {"method": "ngram", "num_speculative_tokens": 6, "prompt_lookup_max": 4, "prompt_lookup_min": 2}
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
        """One line, e.g. ``max_num_seqs=512, max_num_batched_tokens=32768, speculative_config=ngram(6)``."""
        def value(v: Any) -> str:
            return speculation_label(v["method"], v["num_speculative_tokens"]) if isinstance(v, dict) else str(v)

        return ", ".join(f"{k}={value(v)}" for k, v in self.settings.items()) or "vLLM's defaults"


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
    ``tokens_per_request``: prompt plus output tokens a request may hold in the KV cache; ``speculation``:
    "auto" (the rule: off, see the module docstring), "off", or "ngram" (on)."""
    ch = Choice()

    def put(key: str, value: Any, why: str) -> None:
        if key in fixed:
            ch.why.append(f"{key}: set by the configuration")
        else:
            ch.settings[key] = value
            ch.why.append(why)

    if speculation == "ngram":
        put("speculative_config", dict(NGRAM), "speculation: ngram (set by the configuration)")
    if shape is None or not gpu_bytes:
        ch.why.append("no local config.json: vLLM's defaults" if shape is None else "no GPU: vLLM's defaults")
        return ch
    billions = shape.parameters / 1e9
    if shape.parameters < TINY_PARAMS:
        for key, value in TINY.items():
            put(key, value, f"{key}={value}: a {billions:.2f} B model is bound by per-step overhead")
        if speculation == "auto":
            ch.why.append("speculation off: at a full batch n-gram speculation measured 0.91x (H200, vLLM 0.26)")
        return ch
    free = gpu_bytes * memory_fraction - shape.weight_bytes - 4 * 2**30  # activations, CUDA graphs: ~4 GiB
    fits = int(max(free, 0) // max(shape.kv_bytes_per_token * tokens_per_request, 1))
    seqs = 1 << max(fits, 1).bit_length() - 1  # a power of two, at most what fits
    seqs = min(max(seqs, LARGE_SEQS[0]), LARGE_SEQS[1])
    put("max_num_seqs", seqs, f"max_num_seqs={seqs}: the KV cache holds ~{fits} requests of "
                              f"{tokens_per_request} tokens ({billions:.1f} B model, {gpu_bytes / 2**30:.0f} GiB GPU)")
    put("max_num_batched_tokens", LARGE_BATCHED_TOKENS,
        f"max_num_batched_tokens={LARGE_BATCHED_TOKENS}: bigger prefill chunks")
    if speculation == "auto":
        ch.why.append("speculation off: a model this size is compute-bound at a full batch")
    return ch


def gpu_memory_bytes() -> int | None:
    """Total memory of the first GPU this process may use, or None without one. Read through NVML (vLLM's own
    dependency), not torch: initialising CUDA here would force vLLM to spawn its engine process instead of forking."""
    import os

    try:
        try:
            import pynvml
        except ImportError:  # vLLM carries its own copy
            from vllm.third_party import pynvml
        pynvml.nvmlInit()
        try:
            first = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip()
            handle = (pynvml.nvmlDeviceGetHandleByIndex(int(first)) if first.isdigit()
                      else pynvml.nvmlDeviceGetHandleByUUID(first))
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML, no GPU: nothing to choose from
        return None
