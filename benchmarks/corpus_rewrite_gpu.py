"""The SwallowCode recipe at corpus scale on one GPU, beside raw vLLM on the same prompts (issue 41, item 6).

Three steps, each its own process (a device call runs one or two of them):

* ``run``: ``configs/swallow_code.yaml`` over ``--data`` (the shared Python corpus, 6,771 files) with ``--model``
  (Qwen2.5-Coder-1.5B-Instruct imported by ``swallow model import``) on one replica: syntax -> pylint -> near dedup
  -> decontamination -> SGCR -> SCOR -> pylint of the rewrites -> decontamination -> near dedup -> tokens, through
  Ray (``swallow run``), shards small enough that the 16 CPUs share the pylint work.
* ``raw --stage NAME``: the same requests as that rewrite stage of the run, built the stage's way (its prompt file,
  the model's chat template, the rows the stage sent: the previous stage's kept rows whose prompt fits), in ONE
  ``LLM.generate`` with the engine settings the stage chose for itself and the prompt's sampling; engine start
  excluded, as the stage's throughput excludes it.
* ``summary``: the table for docs/benchmarks.md: per stage rows in, kept and reasons; per rewrite stage output
  tokens and tok/s (generation window: the first shard's start after the engine was up -> the last shard's end)
  beside raw's, files per GPU-hour, GPU-hours per billion output tokens; mean tokens per file before SGCR, after
  SGCR and after SCOR (the paper: 836 -> 548 -> 835); SwallowCode's pylint score before and after; fidelity findings.

    python benchmarks/corpus_rewrite_gpu.py run --model /root/q15 --data python_corpus.parquet --out /root/runs/code
    python benchmarks/corpus_rewrite_gpu.py raw --run /root/runs/code --stage sgcr --json $OUT/raw_sgcr.json
    python benchmarks/corpus_rewrite_gpu.py summary --run /root/runs/code --raw $OUT/raw_*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cmd_run(args) -> int:
    model = str(Path(args.model).resolve())
    sets = {"source.paths": json.dumps([str(Path(args.data).resolve())]), "source.repo_column": "repo",
            "source.license_column": "license", "source.shard_bytes": str(args.shard_bytes),
            "stages.tokenize.tokenizer": f"{model}/tokenizer.json"}
    for stage in ("sgcr", "scor"):
        sets.update({f"stages.{stage}.model": model, f"stages.{stage}.tensor_parallel_size": "1",
                     f"stages.{stage}.num_gpus": "1", f"stages.{stage}.num_cpus": "2",
                     f"stages.{stage}.max_model_len": str(args.max_model_len),
                     f"stages.{stage}.max_tokens": str(args.max_tokens),
                     f"stages.{stage}.shards_in_flight": str(args.in_flight)})
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(ROOT / "configs" / "swallow_code.yaml"), "--output",
           args.out, "--no-progress", "--no-export"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    t0 = time.time()
    rc = subprocess.call(cmd, cwd=str(ROOT))
    print(f"RUN rc={rc} wall {time.time() - t0:.0f} s", flush=True)
    return rc


def stage_dir(run: Path, name: str) -> Path:
    found = [p for p in (run / "stages").iterdir() if p.name.split("-", 1)[1] == name]
    if not found:
        raise SystemExit(f"{run}: no stage {name!r}")
    return found[0]


def previous_dir(run: Path, name: str) -> Path:
    dirs = sorted((run / "stages").iterdir())
    i = [p.name.split("-", 1)[1] for p in dirs].index(name)
    return dirs[i - 1]


def stage_config(run: Path, name: str) -> dict:
    import yaml

    config = yaml.safe_load((run / "run.yaml").read_text())  # the resolved config the run recorded
    return next(s for s in config["stages"] if s.get("name", s["type"]) == name)


def shard_stats(d: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((d / "stats").glob("*.json"))]


def cmd_raw(args) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from vllm import LLM
    from vllm.inputs import TokensPrompt

    from stages.rewrite.llm import chat_token_ids_batch
    from stages.rewrite.stage import Rewrite

    run = Path(args.run)
    cfg = {k: v for k, v in stage_config(run, args.stage).items() if k != "type"}
    stage = Rewrite(**cfg)
    from stages.rewrite.prompts import load_prompt

    stage._prompt = load_prompt(stage.prompt)
    prev = previous_dir(run, args.stage)
    table = pa.concat_tables([pq.read_table(p, columns=["id", stage.column]) for p in sorted((prev / "kept").glob("*.parquet"))])  # noqa: E501
    texts = [t for t in table.column(stage.column).to_pylist() if t]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(stage.model)
    ids = chat_token_ids_batch(tok, [stage._prompt.messages(t) for t in texts])
    params = stage.sampling()
    budget = stage.max_model_len - params.max_tokens
    ids = [x for x in ids if len(x) <= budget]
    choice = stage.choose_engine_settings([len(x) for x in ids])
    kwargs = dict(model=stage.model, dtype=stage.dtype, max_model_len=stage.max_model_len,
                  enable_prefix_caching=stage.enable_prefix_caching, seed=stage.engine_seed,
                  gpu_memory_utilization=stage.gpu_memory_utilization, **choice.settings)
    t0 = time.time()
    llm = LLM(**kwargs)
    t1 = time.time()
    outs = llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], params, use_tqdm=False)
    t2 = time.time()
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    result = {"stage": args.stage, "requests": len(ids), "output_tokens": tokens, "prompt_tokens": sum(map(len, ids)),
              "engine_init_s": round(t1 - t0, 1), "generate_s": round(t2 - t1, 2),
              "output_tok_s": round(tokens / (t2 - t1), 1), "settings": {k: str(v) for k, v in kwargs.items()},
              "why": choice.why}
    Path(args.json).write_text(json.dumps(result, indent=1))
    print("RAW", json.dumps({k: result[k] for k in ("stage", "requests", "output_tokens", "generate_s",
                                                     "output_tok_s", "engine_init_s")}), flush=True)
    return 0


def rows(d: Path, part: str, columns=None) -> list[dict]:
    import pyarrow.parquet as pq

    files = sorted((d / part).glob("*.parquet"))
    out = []
    for f in files:
        t = pq.read_table(f)
        keep = [c for c in (columns or t.column_names) if c in t.column_names]
        out += t.select(keep).to_pylist()
    return out


def sessions(stats: list[dict]) -> list[list[dict]]:
    """Shards grouped by the engine that ran them: a run cut by a call's time limit and resumed in the next call
    starts a new engine (measured: 35 s between the last shard of one call and the first of the next, so no gap
    rule tells them apart), and the time between the calls is no generation time. An engine is known by its host
    and its start's duration, which every shard it ran records."""
    groups: dict[tuple, list[dict]] = {}
    for s in stats:
        info = s.get("info", s)
        groups.setdefault((s.get("host"), info.get("engine_init_s")), []).append(s)
    return sorted(groups.values(), key=lambda g: min(s["started"] for s in g))


def generation_window(group: list[dict]) -> float:
    """Seconds one engine generated: its shards' span, less the engine's start where the first shard paid it.
    Shards cut in flight when a call ended are lost with their tokens (their redo is counted in the next
    session), so a cut session's figure is a lower bound."""
    info = [s.get("info", s) for s in group]
    init = max((i.get("engine_init_s") or 0) for i in info)
    span = max(s["finished"] for s in group) - min(s["started"] for s in group)
    return span - (init if any(i.get("engine_started") == "on the first shard" for i in info) else 0)


def cmd_summary(args) -> int:
    run = Path(args.run)
    raw = {json.loads(Path(p).read_text())["stage"]: json.loads(Path(p).read_text()) for p in args.raw or []}
    print(f"## {run}\n")
    print("| stage | in | kept | rejected: reasons |\n|---|---:|---:|---|")
    for d in sorted((run / "stages").iterdir()):
        st = shard_stats(d)
        n_in, kept = sum(s["in"] for s in st), sum(s["kept"] for s in st)
        reasons = Counter()
        for s in st:
            reasons.update(s.get("reasons", {}))
        print(f"| {d.name} | {n_in:,} | {kept:,} | " + ", ".join(f"{r} {c}" for r, c in reasons.most_common()) + " |")
    tok = None
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer or stage_config(run, "sgcr")["model"])
    except Exception as exc:  # noqa: BLE001 - the table without token counts
        print(f"(no tokenizer: {exc})")
    print("\n| rewrite stage | requests | output tokens | stage tok/s | raw tok/s | stage / raw | files per GPU-hour "
          "| GPU-hours per 1e9 output tokens |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    engines = []
    for name in ("sgcr", "scor"):
        st = shard_stats(stage_dir(run, name))
        if not st:
            continue
        out_tokens = sum(s.get("counters", s).get("output_tokens", 0) for s in st)
        requests = sum(s.get("counters", s).get("requests", 0) for s in st)
        groups = sessions(st)
        window = sum(generation_window(group) for group in groups)
        for i, group in enumerate(groups):
            t = sum(s.get("counters", s).get("output_tokens", 0) for s in group)
            engines.append(f"- {name} engine {i + 1}: {len(group)} shards, {t:,.0f} output tokens in "
                  f"{generation_window(group):.1f} s of generation ({t / max(generation_window(group), 1e-9):,.0f} "
                  f"tok/s), engine start {max((s.get('info', s).get('engine_init_s') or 0) for s in group)} s")
        tps = out_tokens / window if window > 0 else 0
        r = raw.get(name)
        ratio = f"{tps / r['output_tok_s']:.3f}" if r else "-"
        files_h = requests / window * 3600 if window > 0 else 0
        print(f"| {name} | {requests:,} | {out_tokens:,} | {tps:,.0f} | {r['output_tok_s']:,.0f} | {ratio} | "
              f"{files_h:,.0f} | {1e9 / tps / 3600:,.1f} |" if r else
              f"| {name} | {requests:,} | {out_tokens:,} | {tps:,.0f} | - | - | {files_h:,.0f} | "
              f"{1e9 / max(tps, 1e-9) / 3600:,.1f} |")
    print("\n" + "\n".join(engines))
    if tok is not None:
        sg = rows(stage_dir(run, "sgcr"), "kept", ["id", "text", "text_before_sgcr"])
        sc = {r["id"]: r["text"] for r in rows(stage_dir(run, "scor"), "kept", ["id", "text"])}
        both = [r for r in sg if r["id"] in sc]
        if both:
            def mean_tokens(texts):
                return statistics.mean(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"])

            print(f"\nmean tokens per file (the {len(both):,} files kept by both rewrites): before SGCR "
                  f"{mean_tokens([r['text_before_sgcr'] for r in both]):.0f}, after SGCR "
                  f"{mean_tokens([r['text'] for r in both]):.0f}, after SCOR "
                  f"{mean_tokens([sc[r['id']] for r in both]):.0f} (SwallowCode: 836 -> 548 -> 835)")
    lint = []
    if list((run / "stages").glob("*-lint_rewritten")):  # a run cut before it has none
        lint = rows(stage_dir(run, "lint_rewritten"), "kept", ["lint_score", "rewritten_lint_score", "pylint_score",
                                                               "rewritten_pylint_score"])
    pairs = [(r["lint_score"], r["rewritten_lint_score"]) for r in lint
             if r.get("lint_score") is not None and r.get("rewritten_lint_score") is not None]
    if pairs:
        before, after = [a for a, _ in pairs], [b for _, b in pairs]
        print(f"\nSwallowCode's pylint score of {len(pairs):,} final rewrites (formatted by ruff) beside their "
              f"inputs: median {statistics.median(before):.2f} -> {statistics.median(after):.2f}, mean "
              f"{statistics.mean(before):.2f} -> {statistics.mean(after):.2f}; higher {sum(b > a for a, b in pairs):,}"
              f", >= 7.0 after: {sum(b >= 7 for b in after):,}")
        hist = Counter(min(9, int(b)) for b in after)
        print("  after, by whole points:", dict(sorted(hist.items())))
    from stages.rewrite.fidelity import CHECKS

    for name in ("sgcr", "scor"):
        d = stage_dir(run, name)
        found = rows(d, "kept", [f"{name}_{c}" for c in CHECKS]) + rows(d, "rejected", [f"{name}_{c}" for c in CHECKS])
        counts = {c: sum(1 for r in found if r.get(f"{name}_{c}")) for c in CHECKS}
        print(f"\n{name} fidelity findings (answers that compiled, kept or rejected): {counts}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--shard-bytes", type=int, default=1_000_000)
    r.add_argument("--max-model-len", type=int, default=16384)
    r.add_argument("--max-tokens", type=int, default=8192)
    r.add_argument("--in-flight", type=int, default=12,
                   help="the rewrite stages' shards_in_flight: ~65-row shards x 12 keep 256 sequences running")
    w = sub.add_parser("raw")
    w.add_argument("--run", required=True)
    w.add_argument("--stage", required=True)
    w.add_argument("--json", required=True)
    s = sub.add_parser("summary")
    s.add_argument("--run", required=True)
    s.add_argument("--raw", nargs="*")
    s.add_argument("--tokenizer", help="the model's folder where the run's path is not here")
    args = ap.parse_args()
    return {"run": cmd_run, "raw": cmd_raw, "summary": cmd_summary}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
