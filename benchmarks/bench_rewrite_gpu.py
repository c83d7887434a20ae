"""Rewrite throughput on one GPU: raw vLLM (its defaults, or given settings), the rewrite stage (settings chosen
for the shape), and datatrove's inference runner, on identical prompts (identical token ids).

Two workloads:

* ``--model DIR --docs corpus:FILE.parquet``: a real model (SmolLM2-135M-Instruct imported with
  ``swallow model import``) rewriting real Python files with the real ``code_sgcr`` prompt, greedy (temperature 0),
  outputs ending where the model stops (or at ``--output-len``). Files are taken in ``blob_id`` order among those
  whose prompt fits ``max_model_len - output_len``: the same prompts in every process.
* ``--tokenizer DIR`` (no ``--model``): Llama-3.1-8B shapes with dummy weights and the real Llama 3 tokenizer;
  documents are random words from the tokenizer's vocabulary **in sorted order** (a set's order changes per
  process: the prompts of two processes differed by a few tokens before), sized so each prompt is about
  ``--input-len`` tokens; every request generates exactly ``--output-len`` tokens (``ignore_eos``).

Modes (one process each; a device call runs several, then ``compare``):

* ``raw``: one ``LLM.generate`` over all prompts. ``--settings defaults`` passes no batch settings (vLLM's own),
  ``chosen`` the stage's rule (``stages/rewrite/engine_settings.py``), or a JSON of ``vllm.LLM`` arguments.
* ``stage``: the pipeline (Parquet -> Ray actor holding the engine -> validation -> Parquet), settings left to
  the stage's rule unless ``--settings`` gives JSON; time from its first shard's start to its last shard's end.
* ``datatrove``: datatrove's ``InferenceRunner`` (a ``vllm serve`` process fed over HTTP, as datatrove runs it)
  with the same settings as ``--settings`` (JSON or ``chosen``) and the same token ids (completions endpoint);
  time from the first request's start to the last answer.
* ``compare``: a table of the JSON results, each against the first, with how many outputs are identical to the
  first's (token ids where both have them, else text).

Engine start is excluded everywhere. Per request the results keep a hash of the output (text and, for raw, token
ids), so speculation's losslessness is counted, not assumed.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LLAMA_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "torch_dtype": "bfloat16", "bos_token_id": 128000,
            "eos_token_id": 128009, "tie_word_embeddings": False,
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
LLAMA3_CHAT = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
               "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
PROMPT = "code_sgcr"


def make_model_dir(tokenizer_src: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(json.dumps(LLAMA_8B))
    src = Path(tokenizer_src)
    tok = src / "tokenizer.json.gz" if src.is_dir() else src
    data = gzip.decompress(tok.read_bytes()) if tok.suffix == ".gz" else tok.read_bytes()
    (dest / "tokenizer.json").write_bytes(data)
    (dest / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
        "chat_template": LLAMA3_CHAT, "model_max_length": 131072}))
    (dest / "generation_config.json").write_text(json.dumps({"eos_token_id": [128001, 128009]}))
    return dest


def random_documents(tok, n: int, input_len: int, seed: int = 0) -> list[str]:
    """Random-word documents sized so that the prompt around each is ~input_len tokens; the same in every
    process (the vocabulary is sorted: its dict order is not stable across processes)."""
    from stages.rewrite.prompts import load_prompt
    from stages.rewrite.stage import chat_token_ids

    base = len(chat_token_ids(tok, load_prompt(PROMPT).messages("")))
    rng = random.Random(seed)
    words = sorted(w for w in tok.get_vocab() if w.isalpha() and 3 <= len(w) <= 9)[:20000]
    docs = []
    for _ in range(n):
        target = max(16, input_len - base + rng.randint(-32, 32))
        text = " ".join(rng.choice(words) for _ in range(target))
        ids = tok(text, add_special_tokens=False)["input_ids"][:target]
        docs.append(tok.decode(ids))
    return docs


def corpus_documents(tok, path: str, n: int, budget: int) -> list[str]:
    """The first ``n`` Python files (by blob_id) whose prompt fits ``budget`` tokens."""
    import pyarrow.parquet as pq

    from stages.rewrite.prompts import load_prompt
    from stages.rewrite.stage import chat_token_ids_batch

    t = pq.read_table(path, columns=["blob_id", "content"]).to_pylist()
    t.sort(key=lambda r: r["blob_id"])
    prompt = load_prompt(PROMPT)
    docs: list[str] = []
    for i in range(0, len(t), 500):
        chunk = [r["content"] for r in t[i:i + 500] if r["content"] and r["content"].strip()]
        ids = chat_token_ids_batch(tok, [prompt.messages(c) for c in chunk])
        docs += [c for c, x in zip(chunk, ids) if len(x) <= budget]
        if len(docs) >= n:
            break
    if len(docs) < n:
        raise SystemExit(f"{path}: only {len(docs)} files fit {budget} prompt tokens, {n} asked")
    return docs[:n]


def prompt_ids(tok, docs: list[str]) -> list[list[int]]:
    from stages.rewrite.prompts import load_prompt
    from stages.rewrite.stage import chat_token_ids_batch

    prompt = load_prompt(PROMPT)
    return chat_token_ids_batch(tok, [prompt.messages(d) for d in docs])


def sampling_kwargs(a) -> dict:
    if a.model:  # real model: greedy, the model decides where to stop
        return dict(temperature=0.0, max_tokens=a.output_len)
    return dict(temperature=0.2, top_p=0.7, max_tokens=a.output_len, ignore_eos=True, seed=0)


def base_engine(a) -> dict:
    kw = dict(dtype=a.dtype, max_model_len=a.max_model_len, gpu_memory_utilization=0.9,
              enable_prefix_caching=True, seed=0)
    if not a.model:
        kw["load_format"] = "dummy"
    if a.cpu:
        kw["enforce_eager"] = True
    return kw


def chosen_settings(a, model_dir: Path, ids: list[list[int]]) -> tuple[dict, list[str]]:
    """The stage's rule, sized as the stage sizes it: for the mean prompt plus the output cap (the stage measures
    its first shard; here every prompt)."""
    from stages.rewrite import engine_settings as es

    tokens = es.request_tokens([len(x) for x in ids], a.output_len, a.max_model_len)
    ch = es.choose(es.model_shape(str(model_dir)), es.gpu_memory_bytes() or a.assume_gpu_bytes, 0.9,
                   tokens, set(), a.speculation)
    return ch.settings, ch.why


def settings_of(a, model_dir: Path, ids: list[list[int]]) -> tuple[dict, list[str]]:
    if a.settings == "defaults":
        return {}, ["vLLM's defaults"]
    if a.settings == "chosen":
        return chosen_settings(a, model_dir, ids)
    return json.loads(a.settings), ["given"]


def digest(x) -> str:
    return hashlib.sha1(json.dumps(x).encode() if not isinstance(x, str) else x.encode()).hexdigest()[:16]


def spec_metrics(llm) -> dict:
    """Draft and accepted token counts of speculation (vLLM's metrics), if it ran."""
    try:
        out = {}
        for m in llm.get_metrics():
            if m.name in ("vllm:spec_decode_num_draft_tokens", "vllm:spec_decode_num_accepted_tokens"):
                out[m.name.split(":")[1]] = getattr(m, "value", None)
        if out.get("spec_decode_num_draft_tokens"):
            out["acceptance_rate"] = round(out["spec_decode_num_accepted_tokens"]
                                           / out["spec_decode_num_draft_tokens"], 3)
        return out
    except Exception as exc:  # noqa: BLE001 - metrics are extra
        return {"metrics_error": repr(exc)[:200]}


def run_raw(a, model_dir: Path, ids: list[list[int]]) -> dict:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    settings, why = settings_of(a, model_dir, ids)
    t0 = time.time()
    llm = LLM(model=str(model_dir), disable_log_stats=False, **base_engine(a), **settings)
    init_s = time.time() - t0
    sched = llm.llm_engine.vllm_config.scheduler_config
    comp = llm.llm_engine.vllm_config.compilation_config
    resolved = {"max_num_seqs": sched.max_num_seqs, "max_num_batched_tokens": sched.max_num_batched_tokens,
                # step overhead bounds a tiny model: whether the scheduler overlaps the GPU, and up to which batch
                # size decode steps replay a CUDA graph (above it they launch every kernel anew)
                "async_scheduling": getattr(sched, "async_scheduling", None),
                "max_cudagraph_capture_size": getattr(comp, "max_cudagraph_capture_size", None),
                "batch_invariant": os.environ.get("VLLM_BATCH_INVARIANT", "0") == "1"}
    params = SamplingParams(**sampling_kwargs(a))
    llm.generate([TokensPrompt(prompt_token_ids=i[:64]) for i in ids[:8]], SamplingParams(max_tokens=8),
                 use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
    gen_s = time.perf_counter() - t0
    out_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"mode": "raw", "settings": settings, "why": why, "resolved": resolved,
            "engine_init_s": round(init_s, 1), "seconds": round(gen_s, 2), "output_tokens": out_tokens,
            "prompt_tokens": sum(map(len, ids)), "output_tok_s": round(out_tokens / gen_s, 1),
            "requests": len(ids), "truncated": sum(o.outputs[0].finish_reason == "length" for o in outs),
            "spec": spec_metrics(llm),
            "ids_sha": [digest(list(o.outputs[0].token_ids)) for o in outs],
            "text_sha": [digest(o.outputs[0].text) for o in outs]}


def run_stage(a, model_dir: Path, docs: list[str]) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats, list_stages

    work = Path(tempfile.mkdtemp(prefix="bench-rewrite-"))
    n = len(docs)
    table = pa.table({"id": [f"d{i:06d}" for i in range(n)], "text": docs, "source_file": ["bench"] * n,
                      "source_offset": list(range(n)), "repo": ["bench"] * n, "path": ["x.py"] * n,
                      "license": ["mit"] * n, "blob_id": [None] * n, "language": ["python"] * n})
    per = -(-n // a.shards)
    pq.write_table(table, work / "in.parquet", row_group_size=per)
    gpus = 0 if a.cpu else a.gpus
    ray.init(num_gpus=gpus, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    s = sampling_kwargs(a)
    engine = base_engine(a)
    # vllm.LLM's seed is the stage's engine_seed; the stage's own `seed` gives every row a seed of (seed, row id),
    # so passing it as `seed` sampled with other seeds than raw's seed 0 per request (the 8B runs' 0 of 1,000)
    engine["engine_seed"] = engine.pop("seed")
    stage = {"type": "rewrite", "prompt": PROMPT, "model": str(model_dir), "num_gpus": 1 if gpus else 0,
             "num_cpus": 1, "concurrency": 1, **engine, "temperature": s["temperature"],
             "max_tokens": a.output_len, "check_syntax": True, "shards_in_flight": a.in_flight,
             "sampling_args": {k: v for k, v in s.items() if k not in ("temperature", "max_tokens")}}
    if a.settings not in ("chosen", "defaults"):
        stage.update(json.loads(a.settings))
    if a.batch_invariant:
        stage["batch_invariant"] = True
    if a.speculation != "auto":
        stage["speculation"] = a.speculation
    # vLLM's 10-second lines (running / waiting requests, KV use), as raw's LLM(disable_log_stats=False) prints
    # them: the two runs' batches can then be compared step by step
    stage.setdefault("engine_args", {})["disable_log_stats"] = False
    if a.cpu:
        stage["env"] = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    raw = {"kind": "code", "source": {"type": "records", "paths": [str(work / "in.parquet")], "shard_bytes": 1},
           "stages": [stage], "export": {"enabled": False}}
    t0 = time.perf_counter()
    run_pipeline(load_config(None, raw=raw), work / "run", progress=False)
    wall = time.perf_counter() - t0
    problems = verify(work / "run")
    st = collect_stats(work / "run")["stages"][1]
    name = st["stage"]
    gens = {}
    for part in ("kept", "rejected"):
        for f in sorted((work / "run" / "stages" / st["dir"] / part).glob("*.parquet")):
            t = pq.read_table(f, columns=["id", f"{name}_generation"]).to_pylist()
            gens.update({r["id"]: r[f"{name}_generation"] for r in t})
    # the shards' span, less the engine's start where it ran inside the first shard (a model of >= 1 B parameters
    # is sized by its first shard's prompts): raw's and datatrove's clocks start with an engine that is up
    started_in_shard = st["info"].get("engine_started") == "on the first shard"
    shard_s = st["span_s"] - ((st["info"].get("engine_init_s") or 0) if started_in_shard else 0)
    out_tokens = st["counters"]["output_tokens"]
    generate_s = st["counters"].get("generate_s")  # with one shard: the generations alone, as raw times them
    # each shard's start and end, seconds from the first start, in the order they started: where the engine waited
    sd = next(d for d in list_stages(work / "run") if d.path.name == st["dir"])
    times = sorted((v["started"], v["finished"], v.get("counters", {}).get("generate_s"))
                   for v in (sd.verified_stats(s) for s in sd.done_shards()))
    t_first = times[0][0] if times else 0.0
    timeline = [[round(b - t_first, 2), round(e - t_first, 2), g and round(g, 2)] for b, e, g in times]
    # raw's clock in the stage: the first request handed to the running engine -> the last shard's outputs back
    # (each shard's end less its generate_s: its requests' hand-over; the shards' reading, tokenizing and
    # writing around that, and the engine's start, fall outside)
    window = (max(e for _, e, _ in times) - min(e - g for _, e, g in times)) if times and all(
        g is not None for *_, g in times) else None
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    return {"mode": "stage", "shards": a.shards, "shards_in_flight": a.in_flight, "pipeline_wall_s": round(wall, 1),
            "engine_init_s": st["info"].get("engine_init_s"), "sum_of_shard_walls_s": st["wall_s"],
            "settings": st["info"].get("engine_chosen"), "why": st["info"].get("engine_why"),
            "resolved": st["info"].get("engine"),
            "engine_started": st["info"].get("engine_started"), "span_s": st["span_s"],
            "seconds": round(shard_s, 2), "output_tokens": int(out_tokens),
            "output_tok_s": round(out_tokens / shard_s, 1), "generate_s": generate_s,
            "output_tok_s_generating": round(out_tokens / generate_s, 1) if a.shards == 1 and generate_s else None,
            "generating_window_s": window and round(window, 2),
            "output_tok_s_window": window and round(out_tokens / window, 1),
            "requests": n, "reasons": st["reasons"], "shards_started_finished_generate_s": timeline,
            "verify_ok": not problems,
            "text_sha": [digest(gens.get(f"d{i:06d}") or "") for i in range(n)]}


def run_datatrove(a, model_dir: Path, ids: list[list[int]]) -> dict:
    """datatrove's InferenceRunner as its own benchmark runs it: a vLLM server, requests over HTTP, up to
    5,000 in flight; same model, same settings, same token ids."""
    import importlib.metadata

    from datatrove.data import Document
    from datatrove.pipeline.inference.run_inference import (
        InferenceConfig,
        InferenceRunner,
    )
    from datatrove.pipeline.inference.servers import vllm_server
    from datatrove.pipeline.writers import JsonlWriter

    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:  # the CPU build is the distribution "vllm-cpu": same module
        vllm_server.check_required_dependencies = lambda *args, **kwargs: None

    settings, why = settings_of(a, model_dir, ids)
    eng = {**base_engine(a), **settings}
    eng.pop("max_model_len")
    model_kwargs = {k.replace("_", "-"): (json.dumps(v) if isinstance(v, dict) else v) for k, v in eng.items()}
    s = sampling_kwargs(a)
    times: dict[str, tuple[float, float]] = {}
    texts: dict[str, str] = {}
    out_tokens = [0]

    async def rollout(doc, generate):
        t0 = time.perf_counter()
        res = await generate({"prompt": doc.metadata["ids"], **s})
        times[doc.id] = (t0, time.perf_counter())
        texts[doc.id] = res.text
        out_tokens[0] += res.usage.get("completion_tokens", 0)
        return {"finish_reason": res.finish_reason}

    from loguru import logger

    ready: list[float] = []  # requests wait inside datatrove until its server is up: time from then
    logger.add(lambda msg: ready.append(time.perf_counter()) if "server startup complete" in msg else None,
               level="INFO")
    out = Path(tempfile.mkdtemp(prefix="bench-dt-"))
    cfg = InferenceConfig(server_type="vllm", model_name_or_path=str(model_dir), model_max_context=a.max_model_len,
                          use_chat=False, max_concurrent_generations=5000, metric_interval=10_000,
                          model_kwargs=model_kwargs, server_start_timeout_sec=600, server_ready_delay_sec=1.0)
    runner = InferenceRunner(rollout_fn=rollout, config=cfg, output_writer=JsonlWriter(str(out / "out")))
    docs = [Document(text="", id=f"d{i:06d}", metadata={"ids": x}) for i, x in enumerate(ids)]
    t0 = time.time()
    runner.run(docs, rank=0, world_size=1)
    whole = time.time() - t0
    first = max(min(v[0] for v in times.values()), ready[0] if ready else 0.0)
    last = max(v[1] for v in times.values())
    shutil.rmtree(out, ignore_errors=True)
    return {"mode": "datatrove", "settings": settings, "why": why, "model_kwargs": model_kwargs,
            "seconds": round(last - first, 2), "run_with_server_start_s": round(whole, 1),
            "output_tokens": out_tokens[0], "output_tok_s": round(out_tokens[0] / (last - first), 1),
            "requests": len(ids), "answered": len(texts),
            "text_sha": [digest(texts.get(f"d{i:06d}", "")) for i in range(len(ids))]}


def compare(paths: list[str]) -> None:
    rows = [json.loads(Path(p).read_text()) for p in paths]
    base = rows[0]
    print(f"{'run':<34} {'output tok/s':>12} {'x first':>8} {'seconds':>8} {'identical':>10}  settings")
    for p, r in zip(paths, rows):
        key = "ids_sha" if "ids_sha" in r and "ids_sha" in base else "text_sha"
        same = sum(x == y for x, y in zip(r.get(key, []), base.get(key, [])))
        acc = (r.get("spec") or {}).get("acceptance_rate")
        print(f"{Path(p).stem:<34} {r['output_tok_s']:>12,.0f} {r['output_tok_s'] / base['output_tok_s']:>8.3f} "
              f"{r['seconds']:>8} {same:>5}/{len(r.get(key, [])):<4}  {r.get('settings')} {r.get('resolved') or ''}"
              + (f" acceptance {acc}" if acc is not None else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["raw", "stage", "datatrove", "compare"], required=True)
    ap.add_argument("--model", help="a real model folder (else Llama-3.1-8B shapes with dummy weights)")
    ap.add_argument("--tokenizer", help="folder holding the Llama 3 tokenizer.json(.gz) (dummy 8B)")
    ap.add_argument("--docs", default="random", help="'random' or 'corpus:FILE.parquet' (a content column)")
    ap.add_argument("--num-prompts", type=int, default=1000)
    ap.add_argument("--input-len", type=int, default=1024)
    ap.add_argument("--output-len", type=int, default=1024)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--dtype", default="bfloat16",
                    help="the engine's dtype; float32 makes greedy outputs comparable across batch settings on a GPU "
                         "(bf16's rounding follows the batch's composition)")
    ap.add_argument("--settings", default="defaults", help="'defaults', 'chosen' or a JSON of vllm.LLM arguments")
    ap.add_argument("--speculation", default="auto", choices=["auto", "off", "ngram", "suffix"],
                    help="the stage's speculation option (raw and datatrove: with --settings chosen; ngram and "
                         "suffix need no --settings chosen in stage mode)")
    ap.add_argument("--batch-invariant", action="store_true",
                    help="vLLM's batch-invariant kernels: VLLM_BATCH_INVARIANT=1 for raw and datatrove, the stage's "
                         "own option (batch_invariant: true) for stage")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--in-flight", type=int, default=4, help="the stage's shards_in_flight")
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--cpu", action="store_true", help="the CPU build (a rehearsal; eager, small KV cache)")
    ap.add_argument("--assume-gpu-bytes", type=int, default=0, help="GPU memory for 'chosen' without a GPU")
    ap.add_argument("--json", nargs="+", required=True)
    a = ap.parse_args()
    if a.mode == "compare":
        compare(a.json)
        return
    if a.cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    if a.batch_invariant and a.mode != "stage":  # read when the engine (or datatrove's server) starts
        os.environ["VLLM_BATCH_INVARIANT"] = "1"
    from transformers import AutoTokenizer

    model_dir = Path(a.model) if a.model else make_model_dir(a.tokenizer, Path(tempfile.gettempdir()) / "llama8b")
    tok = AutoTokenizer.from_pretrained(model_dir)
    if a.docs.startswith("corpus:"):
        docs = corpus_documents(tok, a.docs.split(":", 1)[1], a.num_prompts, a.max_model_len - a.output_len)
    else:
        docs = random_documents(tok, a.num_prompts, a.input_len)
    ids = prompt_ids(tok, docs)
    if a.mode == "raw":
        result = run_raw(a, model_dir, ids)
    elif a.mode == "stage":
        result = run_stage(a, model_dir, docs)
    else:
        result = run_datatrove(a, model_dir, ids)
    try:
        import torch

        result["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    import vllm

    result.update(vllm=vllm.__version__, model=str(a.model or "llama-3.1-8b shapes, dummy"), docs=a.docs,
                  num_prompts=a.num_prompts, output_len=a.output_len, max_model_len=a.max_model_len,
                  dtype=a.dtype, prompts_sha=digest(ids))
    Path(a.json[0]).write_text(json.dumps(result, indent=1))
    short = {k: v for k, v in result.items() if not k.endswith("_sha")}
    print("RESULT", json.dumps(short), flush=True)
    gc.collect()
    try:  # vLLM's engine process must not outlive us (it would hold the device call open)
        import psutil

        for child in psutil.Process().children(recursive=True):
            child.kill()
    except Exception:  # noqa: BLE001
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
