"""A quality classifier beside its LLM teacher (issue 45), in one run: agreement on held-out labels, and documents
per second per core of the ``quality_classifier`` stage against ``llm_score`` on the same machine.

Given a finished labelling run (e.g. configs/label_code.yaml, whose llm_score stage graded a sample):

1. trains a classifier on its grades (``swallow classifier train``'s function; split 80/20 by id hash) and prints
   the held-out agreement: F1 / precision / recall at every grade threshold, Spearman, the confusion matrix;
2. times the classifier stage on one core over the labelled texts and over web pages (the extracted text of
   trafilatura's 300 evaluation pages, repeated to --web-docs documents; extraction is not timed);
3. times ``llm_score`` with the run's own stage configuration (model, prompt, engine) on --llm-rows of the labelled
   texts, on this machine now (the engine's start is not timed), and prints the ratio.

    python benchmarks/bench_classifier.py RUN [--out DIR] [--llm-rows 24] [--web-docs 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def web_texts(n: int) -> list[str]:
    """Extracted text of trafilatura's evaluation pages (not timed), repeated to ``n`` documents."""
    import trafilatura

    from benchmarks.extract_quality import pages

    texts = [t for t in (trafilatura.extract(raw.decode("utf-8", "replace")) for _, raw in pages()) if t]
    return (texts * (n // max(1, len(texts)) + 1))[:n]


def docs_per_s(stage, texts: list[str], rounds: int = 3) -> float:
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        stage.process(table)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--out", help="classifier folder (default: a temporary one)")
    ap.add_argument("--stage", help="the grading stage (default: the last with llm_score)")
    ap.add_argument("--llm-rows", type=int, default=24)
    ap.add_argument("--web-docs", type=int, default=3000)
    ap.add_argument("--tiers-of", help="a stage of the run whose kept rows the classifier grades, to count the "
                    "rows of each tier (e.g. syntax_filter: the whole corpus before the sample)")
    a = ap.parse_args()
    from stages.classify.stage import QualityClassifier
    from stages.classify.train import find_stage, labelled_rows, train_classifier

    out = Path(a.out or tempfile.mkdtemp())
    t0 = time.perf_counter()
    meta = train_classifier(a.run, out, stage=a.stage, command="benchmarks/bench_classifier.py")
    train_s = time.perf_counter() - t0
    v, sp = meta["validation"], meta["split"]
    print("machine:", os.uname().nodename, os.cpu_count(), "cores;", time.strftime("%Y-%m-%d"))
    print(f"teacher: {meta['source']['teacher']}; labels: train {sp['train_labels']}, held out {sp['valid_labels']}; "
          f"trained in {train_s:.1f} s")
    print(f"Spearman {v['spearman']}; top-label accuracy {v['label_accuracy']} (commonest label: "
          f"{v['majority_label_accuracy']})")
    print("| keep grade >= | F1 | precision | recall | teacher positives | classifier positives |")
    print("|---:|---:|---:|---:|---:|---:|")
    for th, x in v["agreement"].items():
        print(f"| {th} | {x['f1']:.3f} | {x['precision']:.3f} | {x['recall']:.3f} | {x['positives']} | "
              f"{x['predicted']} |")
    print("confusion (rows teacher, columns classifier):", json.dumps(v["confusion"]))

    os.sched_setaffinity(0, {0})
    clf = QualityClassifier(name="clf", model=str(out))
    clf.setup()
    sd = find_stage(Path(a.run), "llm_score", a.stage)
    _, texts, _, _ = labelled_rows(sd, "llm_score", "text")
    rate_rows = docs_per_s(clf, texts)
    web = web_texts(a.web_docs)
    rate_web = docs_per_s(clf, web)
    print(f"classifier, one core: {rate_rows:,.0f} docs/s on the {len(texts)} labelled documents "
          f"(mean {sum(map(len, texts)) / len(texts):,.0f} chars), {rate_web:,.0f} docs/s on {len(web)} web pages "
          f"(mean {sum(map(len, web)) / len(web):,.0f} chars)")
    if a.tiers_of:
        from collections import Counter

        import pyarrow.parquet as pq

        from pipeline.store.shards import KEPT

        src = find_stage(Path(a.run), "text", a.tiers_of)
        n, grades = 0, Counter()
        for shard in src.done_shards():
            t = pq.read_table(src.verified(KEPT, shard), columns=["id", "text"])
            v = clf.process(t)
            grades.update(v.columns["quality_grade"].to_pylist())
            n += len(t)
        print(f"tiers on the {n:,} kept rows of {a.tiers_of}: " + ", ".join(
            f"grade {g:g}: {c:,} ({c / n:.1%})" for g, c in sorted(grades.items(), key=lambda x: x[0] or -1)))
    if a.llm_rows:
        from stages.rewrite.score import LlmScore

        cfg = {k: v for k, v in (sd.config() or {}).items() if k not in ("type",)}
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # the engine uses what the run gave it
        llm = LlmScore(**cfg)
        try:
            llm.setup()
            llm.process(pa.table({"id": ["w"], "text": [texts[0]]}))  # the engine's start and warm-up, not timed
            rows = texts[: a.llm_rows]
            t0 = time.perf_counter()
            llm.process(pa.table({"id": [str(i) for i in range(len(rows))], "text": rows}))
            llm_s = time.perf_counter() - t0
        finally:  # the engine's processes go with the script
            llm.teardown()
        cores = len(os.sched_getaffinity(0))
        llm_rate = len(rows) / llm_s / cores
        print(f"llm_score ({cfg.get('model')}), {cores} cores: {len(rows) / llm_s:.3f} docs/s = {llm_rate:.4f} "
              f"docs/s per core on {len(rows)} of the same documents")
        print(f"classifier / llm_score per core: {rate_rows / llm_rate:,.0f}x on the same documents")


if __name__ == "__main__":
    main()
