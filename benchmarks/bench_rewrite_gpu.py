"""Rewrite stage vs raw vLLM on one GPU: same model shape, same prompts (identical token ids), same lengths.

Model: Llama-3.1-8B shapes with dummy (random) weights and the real Llama 3 tokenizer; prompts are the real
``code_sgcr`` prompt (its instructions are a prefix shared by every request) around random-word documents sized
so each prompt is about ``--input-len`` tokens; every request generates exactly ``--output-len`` tokens
(``ignore_eos``). ``raw`` times one ``LLM.generate`` over all the token-id prompts; ``stage`` runs the pipeline
(Parquet in -> Ray actor holding the engine -> validation -> Parquet out) and times its shards' processing, from
the first shard's start to the last shard's end (reading, chat-templating, generation, validation, writing;
engine start excluded on both sides). ``--shards N`` splits the prompts into N shards; the stage holds
``--in-flight`` of them at once on its one engine.

    python benchmarks/bench_rewrite_gpu.py --mode raw   --tokenizer DIR --json OUT/raw.json
    python benchmarks/bench_rewrite_gpu.py --mode stage --tokenizer DIR --json OUT/stage.json
    python benchmarks/bench_rewrite_gpu.py --mode compare --json OUT/raw.json OUT/stage.json
"""

from __future__ import annotations

import argparse
import gc
import gzip
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


def make_documents(model_dir: Path, n: int, input_len: int, seed: int = 0) -> list[str]:
    """Random-word documents sized so that the code_sgcr prompt around each is ~input_len tokens."""
    from transformers import AutoTokenizer

    from stages.rewrite.prompts import load_prompt
    from stages.rewrite.stage import chat_token_ids

    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt = load_prompt("code_sgcr")
    base = len(chat_token_ids(tok, prompt.messages("")))
    rng = random.Random(seed)
    words = [w for w in tok.get_vocab() if w.isalpha() and 3 <= len(w) <= 9][:20000]
    docs = []
    for _ in range(n):
        target = max(16, input_len - base + rng.randint(-32, 32))
        text = " ".join(rng.choice(words) for _ in range(target))
        ids = tok(text, add_special_tokens=False)["input_ids"][:target]
        docs.append(tok.decode(ids))
    return docs


def engine_kwargs(a) -> dict:
    kw = dict(dtype="bfloat16", max_model_len=a.max_model_len, gpu_memory_utilization=0.9,
              enable_prefix_caching=True, max_num_seqs=a.max_num_seqs, load_format="dummy")
    kw.update(json.loads(a.engine))
    return kw


def sampling_kwargs(a) -> dict:
    return dict(temperature=0.2, top_p=0.7, max_tokens=a.output_len, ignore_eos=True, seed=0)


def run_raw(a, model_dir: Path, docs: list[str]) -> dict:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from stages.rewrite.prompts import load_prompt
    from stages.rewrite.stage import chat_token_ids

    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt = load_prompt("code_sgcr")
    ids = [chat_token_ids(tok, prompt.messages(d)) for d in docs]
    t0 = time.time()
    llm = LLM(model=str(model_dir), **engine_kwargs(a))
    init_s = time.time() - t0
    params = SamplingParams(**sampling_kwargs(a))
    llm.generate([TokensPrompt(prompt_token_ids=i[:64]) for i in ids[:8]], SamplingParams(max_tokens=8),
                 use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
    gen_s = time.perf_counter() - t0
    out_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"mode": "raw", "engine_init_s": round(init_s, 1), "seconds": round(gen_s, 2), "output_tokens": out_tokens,
            "prompt_tokens": sum(map(len, ids)), "output_tok_s": round(out_tokens / gen_s, 1), "requests": len(ids)}


def run_stage(a, model_dir: Path, docs: list[str]) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from pipeline.config import load_config
    from pipeline.ledger import collect_stats, verify
    from pipeline.runner import run_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench-rewrite-"))
    n = len(docs)
    table = pa.table({"id": [f"d{i}" for i in range(n)], "text": docs, "source_file": ["bench"] * n,
                      "source_offset": list(range(n)), "repo": ["bench"] * n, "path": ["x.py"] * n,
                      "license": ["mit"] * n, "blob_id": [None] * n, "language": ["python"] * n})
    per = -(-n // a.shards)
    pq.write_table(table, work / "in.parquet", row_group_size=per)
    gpus = 0 if a.model else a.gpus
    replicas = max(1, gpus // a.tp) if gpus else 1
    ray.init(num_gpus=gpus, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    stage = {"type": "rewrite", "prompt": "code_sgcr", "model": str(model_dir), "num_gpus": a.tp if gpus else 0,
             "num_cpus": 1, "concurrency": replicas, "tensor_parallel_size": a.tp,
             **engine_kwargs(a), "temperature": 0.2, "top_p": 0.7, "max_tokens": a.output_len, "seed": 0,
             "sampling_args": {"ignore_eos": True}, "check_syntax": True, "shards_in_flight": a.in_flight}
    raw = {"kind": "code", "source": {"type": "records", "paths": [str(work / "in.parquet")], "shard_bytes": 1},
           "stages": [stage], "export": {"enabled": False}}
    t0 = time.perf_counter()
    run_pipeline(load_config(None, raw=raw), work / "run", progress=False)
    wall = time.perf_counter() - t0
    problems = verify(work / "run")
    st = collect_stats(work / "run")["stages"][1]
    shard_s = st["span_s"]  # first shard's start to last shard's end (shards overlap on one engine)
    out_tokens = st["counters"]["output_tokens"]
    init_s = st["info"].get("engine_init_s") or 0
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    return {"mode": "stage", "shards": a.shards, "shards_in_flight": a.in_flight, "gpus": gpus, "tp": a.tp,
            "replicas": replicas, "pipeline_wall_s": round(wall, 1),
            "engine_init_s": init_s, "sum_of_shard_walls_s": st["wall_s"],
            "seconds": round(shard_s, 2), "output_tokens": int(out_tokens), "output_tok_s": round(out_tokens / shard_s, 1),
            "requests": n, "reasons": st["reasons"], "verify_ok": not problems}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["raw", "stage", "compare"], required=True)
    ap.add_argument("--tokenizer", help="folder holding the Llama 3 tokenizer.json(.gz)")
    ap.add_argument("--num-prompts", type=int, default=1000)
    ap.add_argument("--input-len", type=int, default=1024)
    ap.add_argument("--output-len", type=int, default=1024)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--in-flight", type=int, default=4, help="the stage's shards_in_flight")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs given to Ray: replicas = gpus / tp")
    ap.add_argument("--tp", type=int, default=1, help="tensor_parallel_size of each replica")
    ap.add_argument("--json", nargs="+", required=True)
    ap.add_argument("--model", help="use this model directory instead of Llama-3.1-8B shapes (CPU dry runs)")
    ap.add_argument("--engine", default="{}", help="JSON of vllm.LLM keyword overrides")
    a = ap.parse_args()
    if a.mode == "compare":
        raw, stage = (json.loads(Path(p).read_text()) for p in a.json)
        print(f"raw   {raw['output_tok_s']:>9,.0f} output tok/s ({raw['output_tokens']:,} tokens in {raw['seconds']} s)")
        print(f"stage {stage['output_tok_s']:>9,.0f} output tok/s ({stage['output_tokens']:,} tokens in {stage['seconds']} s)")
        print(f"ratio stage/raw: {stage['output_tok_s'] / raw['output_tok_s']:.3f}")
        return
    model_dir = Path(a.model) if a.model else make_model_dir(a.tokenizer, Path(tempfile.gettempdir()) / "llama8b-dummy")
    docs = make_documents(model_dir, a.num_prompts, a.input_len)
    result = run_raw(a, model_dir, docs) if a.mode == "raw" else run_stage(a, model_dir, docs)
    try:
        import torch

        result["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    result.update(num_prompts=a.num_prompts, input_len=a.input_len, output_len=a.output_len,
                  max_num_seqs=a.max_num_seqs)
    Path(a.json[0]).write_text(json.dumps(result, indent=1))
    print("RESULT", json.dumps(result), flush=True)
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
