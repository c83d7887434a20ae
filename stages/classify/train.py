"""``swallow classifier train``: a fastText classifier learned from the grades a run's LLM stage gave.

What it does: reads every row of one stage of a finished run (kept and rejected, verified shards only) that has a
value in the target column (``llm_score`` by default), turns the values into labels (integer grades as they are;
``--bins`` cuts a continuous target into ranges), splits the rows into training and validation by a hash of the
seed and the id (the same rows on every rerun and under any sharding), trains fastText supervised on the normalised
text with one thread and a fixed seed (the same model bytes from the same rows), and measures the model on the
held-out rows the way the ``quality_classifier`` stage decides: the grade is the most probable label's value, kept
when >= a threshold (a tier: ``min_grade: 3`` keeps FineMath-3+). The folder gets ``model.bin``,
``classifier.json`` (labels and values, split, per-threshold F1/precision/recall, confusion matrix, Spearman with
the teacher, the teacher's model and prompt, the command) and ``README.md`` (its card).
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipeline.core.errors import ConfigError
from pipeline.store.shards import KEPT, REJECTED, TamperedError
from stages.classify.model import LABEL, MAX_CHARS, grade_texts, label_name, normalise
from stages.filters.sample import sample_keys

#: fastText's settings: small enough that a model of a few thousand labelled rows is a few MB and trains in
#: seconds on one core (bucket x dim x 4 bytes: 100,000 x 64 x 4 = 26 MB before quantisation).
DEFAULTS = {"epoch": 25, "lr": 0.5, "dim": 64, "word_ngrams": 2, "min_count": 2, "bucket": 100_000}


def find_stage(run_dir: Path, target: str, stage: str | None):
    """The stage folder to read: ``stage`` by name, else the last stage whose shards carry ``target``."""
    from pipeline.store.ledger import list_stages

    stages = list_stages(run_dir)
    if not stages:
        raise ConfigError(f"{run_dir}: not a run folder (no stages/); give the folder of a finished `swallow run`")
    if stage is not None:
        for sd in stages:
            if sd.name == stage:
                return sd
        raise ConfigError(f"{run_dir}: no stage named {stage!r} (stages: {', '.join(s.name for s in stages)})")
    for sd in reversed(stages):
        for shard in sd.done_shards()[:1]:
            try:
                if target in pq.read_schema(sd.verified(KEPT, shard)).names:
                    return sd
            except (TamperedError, OSError, KeyError):
                continue
    raise ConfigError(f"{run_dir}: no stage has a column {target!r}; name the target with --target and the stage "
                      "with --stage")


def labelled_rows(sd, target: str, column: str) -> tuple[list[str], list[str], list[Any], dict[str, int]]:
    """ids, texts and target values of every row of the stage with a target value (kept and rejected rows alike:
    a grade is a grade whatever the stage decided); counts of what was read and left out."""
    ids, texts, values = [], [], []
    counts = Counter()
    shards = sd.done_shards()
    if not shards:
        raise ConfigError(f"stage {sd.name}: no finished shard; finish the run first")
    for shard in shards:
        for part in (KEPT, REJECTED):
            path = sd.verified(part, shard)  # TamperedError (one line) if a file changed after the stage sealed it
            names = pq.read_schema(path).names
            if target not in names or column not in names:
                if part == KEPT and pq.read_metadata(path).num_rows:
                    raise ConfigError(f"stage {sd.name}: shard {shard} has no column "
                                      f"{target if target not in names else column!r} (columns: {', '.join(names)})")
                continue
            t = pq.read_table(path, columns=["id", column, target])
            for i, text, v in zip(*(t.column(c).to_pylist() for c in ("id", column, target))):
                counts["rows"] += 1
                if v is None or (isinstance(v, float) and v != v):
                    counts["no_target"] += 1
                elif not text:
                    counts["no_text"] += 1
                else:
                    ids.append(str(i))
                    texts.append(text)
                    values.append(v)
    return ids, texts, values, dict(counts)


def make_labels(values: list[Any], bins: list[float] | None) -> tuple[list[str], dict[str, float]]:
    """A label per row and each label's numeric value. Integer grades are their own labels; ``bins`` (ascending
    edges) cut a number into ranges labelled by their lower edge; strings are categories valued by sorted order."""
    if all(isinstance(v, str) for v in values):  # a label is one fastText token: inner blanks become _
        labels = ["_".join(v.split()) or "_" for v in values]
        return labels, {n: float(k) for k, n in enumerate(sorted(set(labels)))}
    try:
        nums = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError("the target mixes numbers and text; give a numeric or a categorical column") from None
    if bins:
        edges = sorted(float(b) for b in bins)
        labels = []
        for x in nums:
            k = max((j for j, e in enumerate(edges) if x >= e), default=0)
            labels.append(label_name(edges[k]))
        return labels, {label_name(e): e for e in edges if label_name(e) in set(labels)}
    if any(x != int(x) for x in nums):
        raise ConfigError("the target has fractional values; cut it into grades with --bins (e.g. --bins 0,1,2,3)")
    labels = [label_name(x) for x in nums]
    return labels, {lab: float(lab) for lab in sorted(set(labels), key=float)}


def split(ids: list[str], valid: float, seed: int) -> np.ndarray:
    """True for the validation rows: a hash of the id below ``valid`` (no row's side depends on another row). The
    hash is salted apart from the ``sample`` stage's: with the same key, a sample of the 700 smallest keys of 3,047
    rows (all below 0.23) put 637 of its rows on the validation side of 0.2."""
    return np.array(sample_keys(ids, f"classifier-split-{seed}"), dtype=np.float64) < valid


#: Trains in a child process: fastText (0.9.2 and fasttext-numpy2 0.10.4) fills its input matrix in ten blocks, one
#: per training thread (DenseMatrix::uniformThread), so with ``thread=1`` nine tenths of it keep whatever memory the
#: allocator hands out: zero pages from a fresh mmap, or a freed earlier model's bytes from a reused heap block. In
#: one process, 4 of 8 trainings on the same 474 rows ended in "Encountered NaN" and the others may differ in bytes.
#: A child whose glibc mmap threshold is fixed (MALLOC_MMAP_THRESHOLD_, no dynamic raise after a free) gets fresh
#: zero pages for the matrix every time: 8 of 8 identical models (tests/stages/classify).
_CHILD = """
import json, sys
import fasttext
a = json.loads(sys.argv[1])
fasttext.FastText.eprint = lambda *x, **k: None
m = fasttext.train_supervised(input=a["input"], epoch=a["epoch"], lr=a["lr"], dim=a["dim"],
                              wordNgrams=a["word_ngrams"], minCount=a["min_count"], bucket=a["bucket"],
                              loss="softmax", thread=1, seed=a["seed"], verbose=0)
m.save_model(a["output"])
"""


def fit(texts: list[str], labels: list[str], folder: Path, seed: int, params: dict[str, Any]):
    """fastText supervised, one thread (fastText's threads race on the shared weights: only one is reproducible),
    in a child process (see ``_CHILD``); returns the loaded model."""
    import os
    import subprocess

    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        data, model = Path(tmp) / "train.txt", Path(tmp) / "model.bin"
        with open(data, "w", encoding="utf-8", errors="surrogatepass") as fh:
            for text, lab in zip(texts, labels):
                fh.write(f"{LABEL}{lab} {normalise(text)}\n")
        args = {**params, "seed": seed, "input": str(data), "output": str(model)}
        # -I: the child reads no configuration from the environment or the folder it runs in
        proc = subprocess.run([sys.executable, "-I", "-c", _CHILD, json.dumps(args)], capture_output=True, text=True,
                              env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}, cwd=tmp)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise ConfigError(f"fastText training failed: {tail[:300]} (try a lower --lr or fewer --epoch)")
        loaded = fasttext.load_model(str(model))
        (folder / "model.bin").write_bytes(model.read_bytes())
        return loaded


def agreement(teacher: list[float], grades: list[float], thresholds: list[float]) -> dict[str, Any]:
    """Per threshold t: precision, recall and F1 of ``grade >= t`` against ``teacher >= t``."""
    out = {}
    for t in thresholds:
        truth = np.array([v >= t for v in teacher])
        pred = np.array([g >= t for g in grades])
        tp, fp, fn = int((truth & pred).sum()), int((~truth & pred).sum()), int((truth & ~pred).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[label_name(t)] = {"f1": round(2 * p * r / (p + r), 4) if p + r else 0.0, "precision": round(p, 4),
                        "recall": round(r, 4), "positives": int(truth.sum()), "predicted": int(pred.sum()),
                        "accuracy": round(float((truth == pred).mean()), 4) if len(truth) else 0.0}
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return round(float(spearmanr(a, b).statistic), 4)


def teacher_of(sd) -> dict[str, Any]:
    """The stage's model and prompt as its stage.json records them (where the labels came from)."""
    cfg = sd.config() or {}
    comp = cfg.get("config", cfg) if isinstance(cfg, dict) else {}
    return {k: comp.get(k) for k in ("type", "model", "prompt", "temperature", "max_tokens") if comp.get(k) is not None}


def train_classifier(run_dir: str | Path, out: str | Path, target: str = "llm_score", stage: str | None = None,
                     column: str = "text", valid: float = 0.2, seed: int = 0, bins: list[float] | None = None,
                     thresholds: list[float] | None = None, command: str | None = None, **params) -> dict[str, Any]:
    run_dir, out = Path(run_dir), Path(out)
    if not 0 < valid < 1:
        raise ConfigError(f"--valid {valid}: the validation fraction is between 0 and 1 (e.g. 0.2)")
    params = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
    sd = find_stage(run_dir, target, stage)
    ids, texts, raw, counts = labelled_rows(sd, target, column)
    if len(ids) < 10:
        raise ConfigError(f"stage {sd.name}: {len(ids)} rows have a {target!r} value; a classifier needs more "
                          "(label a larger sample)")
    labels, values = make_labels(raw, bins)
    if len(values) < 2:
        raise ConfigError(f"stage {sd.name}: every labelled row has the grade {labels[0]}; nothing to learn")
    teacher = [values[lab] for lab in labels]
    is_valid = split(ids, valid, seed)
    tr = [k for k in range(len(ids)) if not is_valid[k]]
    va = [k for k in range(len(ids)) if is_valid[k]]
    if not tr or not va:
        raise ConfigError(f"{len(ids)} labelled rows leave one side of the split empty; change --valid or --seed")
    out.mkdir(parents=True, exist_ok=True)
    model = fit([texts[k] for k in tr], [labels[k] for k in tr], out, seed, params)
    scores, grades, top = grade_texts(model, [texts[k] for k in va], values)
    truth = [teacher[k] for k in va]
    names = list(values)
    confusion = [[sum(1 for k, p in zip(va, top) if labels[k] == a and p == b) for b in names] for a in names]
    thresholds = thresholds or [v for v in sorted(values.values())[1:]]
    majority = Counter(labels[k] for k in tr).most_common(1)[0][0]
    meta = {
        "kind": "fasttext", "values": values, "normalise": {"lower": True, "whitespace": "single spaces",
                                                            "max_chars": MAX_CHARS},
        "decision": "grade = the most probable label's value; a tier keeps grade >= its threshold; score = the "
                    "expected grade, Σ p x value (for ranking)",
        "source": {"run": str(run_dir.resolve()), "stage": sd.name, "target": target, "column": column,
                   "teacher": teacher_of(sd), "rows_read": counts},
        "split": {"seed": seed, "valid_fraction": valid, "train": len(tr), "valid": len(va),
                  "train_labels": _count(labels, tr, values), "valid_labels": _count(labels, va, values)},
        "params": params,
        "validation": {"agreement": agreement(truth, grades, thresholds),
                       "spearman": spearman(truth, scores),
                       "label_accuracy": round(sum(labels[k] == p for k, p in zip(va, top)) / len(va), 4),
                       "majority_label_accuracy": round(sum(labels[k] == majority for k in va) / len(va), 4),
                       "confusion": {"labels": names, "rows_teacher_columns_model": confusion}},
        "command": command,
    }
    (out / "classifier.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(render_card(meta))
    return meta


def _count(labels: list[str], rows: list[int], values: dict[str, float]) -> dict[str, int]:
    counts = Counter(labels[k] for k in rows)
    return {lab: counts[lab] for lab in values if counts[lab]}


def render_card(meta: dict[str, Any]) -> str:
    src, sp, v = meta["source"], meta["split"], meta["validation"]
    t = src.get("teacher") or {}
    lines = [
        "# Quality classifier", "",
        f"fastText supervised, taught by the grades in column `{src['target']}` of stage `{src['stage']}` "
        f"of the run `{src['run']}`" + (f" (teacher: `{t.get('model')}`, prompt `{t.get('prompt')}`)"
                                        if t.get("model") else "")
        + ".", "",
        f"Made by: `{meta['command']}`" if meta.get("command") else "", "",
        "## Labels", "",
        f"{sp['train']:,} rows to train, {sp['valid']:,} held out (hash of seed {sp['seed']} and the id below "
        f"{sp['valid_fraction']}). Rows read: " + ", ".join(f"{k} {n:,}" for k, n in src["rows_read"].items())
        + ".", "",
        "| label | value | train | valid |", "|---|---:|---:|---:|",
        *[f"| {lab} | {val:g} | {sp['train_labels'].get(lab, 0):,} | {sp['valid_labels'].get(lab, 0):,} |"
          for lab, val in meta["values"].items()],
        "", "## Agreement with the teacher on the held-out rows", "",
        f"Decision: {meta['decision']}. Spearman (the score vs the teacher): {v['spearman']}. "
        f"Top-label accuracy {v['label_accuracy']} (always the commonest training label: "
        f"{v['majority_label_accuracy']}).", "",
        "| keep grade >= | F1 | precision | recall | teacher positives | model positives |",
        "|---:|---:|---:|---:|---:|---:|",
        *[f"| {th} | {a['f1']:.3f} | {a['precision']:.3f} | {a['recall']:.3f} | {a['positives']} | {a['predicted']} |"
          for th, a in v["agreement"].items()],
        "", "Confusion (rows: the teacher's label, columns: the model's most probable label):", "",
        "| teacher \\ model | " + " | ".join(v["confusion"]["labels"]) + " |",
        "|---|" + "---:|" * len(v["confusion"]["labels"]),
        *[f"| {a} | " + " | ".join(str(n) for n in row) + " |"
          for a, row in zip(v["confusion"]["labels"], v["confusion"]["rows_teacher_columns_model"])],
        "", "## Use", "",
        "```yaml", "- type: quality_classifier", "  model: <this folder>",
        f"  min_grade: {next(iter(v['agreement']), 3)}", "```", "",
    ]
    return "\n".join(lines)


def add_command(sub) -> None:
    """``swallow classifier train``: registered through the ``swallow.commands`` entry point."""
    import argparse

    cp = sub.add_parser("classifier", help="learn a quality classifier from an LLM's grades in a run")
    csub = cp.add_subparsers(dest="classifier_command", required=True)
    tp = csub.add_parser("train", help="train a fastText classifier on a run's graded rows",
                         description=_capital(__doc__.split("What it does: ")[1].strip().replace("``", "`")),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    tp.add_argument("run_dir", help="a finished run whose stage graded rows (e.g. an llm_score stage)")
    tp.add_argument("--out", required=True, help="the classifier folder to write (model.bin, classifier.json, "
                    "README.md); use it as `model:` of a quality_classifier stage")
    tp.add_argument("--target", default="llm_score", help="the column of grades to learn (default llm_score)")
    tp.add_argument("--stage", help="the stage to read (default: the last stage that has the target column)")
    tp.add_argument("--column", default="text", help="the text column (default text)")
    tp.add_argument("--valid", type=float, default=0.2, help="fraction held out for validation (default 0.2)")
    tp.add_argument("--seed", type=int, default=0, help="seed of the split and of fastText (default 0)")
    tp.add_argument("--bins", help="ascending edges that cut a continuous target into grades, e.g. 0,1.5,3")
    tp.add_argument("--thresholds", help="grades at which to measure F1 (default: every grade above the lowest)")
    for k, v in DEFAULTS.items():
        tp.add_argument("--" + k.replace("_", "-"), type=type(v), default=None, help=f"fastText's {k} (default {v})")
    tp.set_defaults(func=cmd_train)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _floats(text: str | None, flag: str) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give numbers separated by commas, e.g. 0,1.5,3") from None


def cmd_train(args) -> int:
    params = {k: getattr(args, k) for k in DEFAULTS}
    command = "swallow " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    meta = train_classifier(args.run_dir, args.out, target=args.target, stage=args.stage, column=args.column,
                            valid=args.valid, seed=args.seed, bins=_floats(args.bins, "--bins"),
                            thresholds=_floats(args.thresholds, "--thresholds"), command=command, **params)
    v, sp = meta["validation"], meta["split"]
    print(f"classifier: {args.out}: {sp['train']:,} rows trained, {sp['valid']:,} held out; Spearman {v['spearman']}")
    for th, a in v["agreement"].items():
        print(f"  keep grade >= {th}: F1 {a['f1']:.3f} (precision {a['precision']:.3f}, recall {a['recall']:.3f}; "
              f"{a['positives']} of {sp['valid']} held-out rows positive)")
    return 0
