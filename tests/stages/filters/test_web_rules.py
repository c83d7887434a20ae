"""Web rule filters: the same verdicts as datatrove's on real extracted documents; math-aware settings; math
score; language ID."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pytest

from stages.filters.c4 import C4Filter
from stages.filters.fineweb import FineWebFilter
from stages.filters.gopher import GopherQuality, GopherRepetition
from stages.filters.math_score import MathScore, measure
from tests.conftest import LID, SHARED

shared = pytest.mark.shared_data


def sample_texts() -> list[str]:
    """Text documents of existing corpora in ../shared/data/samples (Dolma CC, RedPajama arXiv/StackExchange)."""
    out = []
    for f in sorted((SHARED / "samples").glob("*.jsonl.gz")):
        out += [json.loads(line)["text"] for line in gzip.open(f) if line.strip()]
    return out


@shared
def test_same_verdicts_as_datatrove(extracted_pages):
    """datatrove 0.10's four filters and ours, same parameters (both defaults), on >= 500 real documents: the
    same verdict for every document, and for C4 the same kept text. Our symbol and sentence-terminal characters
    come from Unicode properties, datatrove's from its own lists; on these documents the two never disagree."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    texts = [p["text"] for p in extracted_pages if p["text"].strip()] + sample_texts()
    assert len(texts) >= 500
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    pairs = [(GopherQualityFilter(), GopherQuality()), (GopherRepetitionFilter(), GopherRepetition()),
             (C4QualityFilter(), C4Filter()), (FineWebQualityFilter(), FineWebFilter())]
    for theirs, ours in pairs:
        v = ours.process(table)
        differ = []
        kept = 0
        for i, text in enumerate(texts):
            doc = Document(text=text, id=str(i))
            verdict = theirs.filter(doc)
            passed = verdict is True or (isinstance(verdict, tuple) and verdict[0])
            kept += passed
            if passed != (v.reasons[i] is None):
                differ.append((i, verdict, v.reasons[i]))
            elif passed and ours.type == "c4_filter" and doc.text != v.columns["text"][i].as_py():
                differ.append((i, "kept text differs", None))
        assert not differ, f"{ours.type}: {differ[:3]}"
        assert 0 < kept < len(texts)  # the rules bite on this data, both ways


@pytest.mark.fast
def test_math_aware_rules_keep_latex():
    """C4's curly-bracket rule and Gopher's letter rule reject LaTeX-heavy text; the math-aware settings do not."""
    para = ("We compute the integral of the function over the interval and find the value below. "
            "Then we check the bound $\\frac{a_{1}}{b^{2}} \\leq \\sum_{k=1}^{n} x_k$ for all $n \\geq 1$. ")
    text = "\n".join([para] * 6 + ["$$\\int_0^1 f(x)\\,dx = \\frac{1}{2}$$"] + [para] * 3)
    t = pa.table({"id": ["a"], "text": [text]})
    assert C4Filter().process(t).reasons == ["c4_curly_bracket"]
    assert C4Filter(math_aware=True).process(t).reasons == [None]
    dense = " ".join(f"Then ${c}_{{{i}}} = {i} + 2^{{{i}}} - {i}/3$ holds for the value of the sum." for i, c in
                     enumerate("abcdefghijklmnopqrstuvwxyz" * 2))
    t2 = pa.table({"id": ["b"], "text": [dense]})
    assert GopherQuality().process(t2).reasons == ["gopher_below_alpha_threshold"]
    assert GopherQuality(math_aware=True).process(t2).reasons == [None]


@shared
def test_math_score_separates_math_from_other_pages(extracted_pages):
    """Math benchmark pages score high; the non-math ones (code pages with $var and ${...}, the "$60 million"
    news page) stay below the default threshold."""
    by = {p["name"]: p for p in extracted_pages}
    math_pages = [p for n, p in by.items() if n.startswith("math/webkit_bench/") and len(p["text"]) > 200]
    other = [p for n, p in by.items() if n.startswith("general/webkit_bench_nonmath/")]
    other.append(by["math/webkit_test_assets/math_dollar.html"])
    hi = [measure(p["text"], p["math_formulas"])["math_score"] for p in math_pages]
    lo = [measure(p["text"], p["math_formulas"])["math_score"] for p in other]
    assert len(other) >= 30 and max(lo) < 0.5
    assert sum(s >= 0.5 for s in hi) >= 0.9 * len(hi)
    v = MathScore().process(pa.table({"id": ["m", "o"], "text": [math_pages[0]["text"], other[0]["text"]]}))
    assert v.reasons == [None, "not_math"] and v.columns["math_score"][0].as_py() >= 0.5


@shared
def test_language_id_with_lid176():
    from stages.extract.langid import LanguageId

    stage = LanguageId(model=str(LID), languages=["en"], min_score=0.5)
    stage.setup()
    t = pa.table({"id": ["1", "2", "3"], "text": ["The cat sat on the mat and looked at the garden for a while.",
                                                 "猫はマットの上に座って、しばらく庭を眺めていた。", ""]})
    v = stage.process(t)
    assert v.columns["language"].to_pylist()[:2] == ["en", "ja"]
    assert v.reasons == [None, "other_language", "empty"]
    assert v.columns["language_score"][0].as_py() > 0.5


@pytest.mark.fast
def test_word_rules_pass_languages_they_cannot_judge_and_count_them():
    """Gopher, C4 and FineWeb count words between spaces and look for ``.`` at line ends: on a Japanese document
    every rule would reject it. A row that language_id labelled ``ja`` is kept unjudged (measurements null) and
    counted as ``unjudged_ja``; the same text labelled ``en`` or with no label is judged (and rejected); with
    ``skip_languages: []`` every row is judged."""
    ja = "\n".join(["吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"] * 3)
    table = pa.table({"id": ["a", "b", "c"], "text": [ja, ja, ja], "language": ["ja", "en", None]})
    for stage in (GopherQuality(name="gq"), GopherRepetition(name="gr"), C4Filter(name="c4"),
                  FineWebFilter(name="fw")):
        v = stage.process(table)
        assert v.reasons[0] is None and v.reasons[1] is not None and v.reasons[2] is not None, (stage.type, v.reasons)
        assert v.counters == {"unjudged_ja": 1}
        first = next(iter(stage.measurement_types()))
        col = v.columns[stage.column_name(first)]
        assert col[0].as_py() is None and col[1].as_py() is not None
        if stage.rewrites_text():  # C4 keeps an unjudged document's text as it is
            assert v.columns["text"][0].as_py() == ja
        strict = type(stage)(name=stage.name, skip_languages=[]).process(table)
        assert all(r is not None for r in strict.reasons) and not strict.counters


@pytest.mark.fast
def test_word_counting_loads_spacy_without_torch_and_counts_the_same():
    """spaCy's thinc imports torch when installed (180 MB and 1.1 s per worker): ``nlp()`` refuses it while spaCy
    loads, torch stays importable after, and the words and sentences are those of spaCy loaded with torch."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    text = "Dr. Smith's cat (aged 3.5) didn't eat... Then: e-mail me at a@b.co! 100% sure? «Oui» — fin.\n\nNext."
    ours = ("import sys, json; from stages.text.units import nlp, words, sentences; nlp(); "
            "no_torch = 'torch' not in sys.modules; import torch; "
            f"print(json.dumps([no_torch, words({text!r}), sentences({text!r})]))")
    plain = ("import json, torch, spacy; p = spacy.blank('en'); p.add_pipe('sentencizer'); d = p(" + repr(text)
             + "); print(json.dumps([True, [t.text.strip() for t in d if t.text.strip()], "
             "[s.text.strip() for s in d.sents if s.text.strip()]]))")
    a, b = (json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout) for code in (ours, plain))
    assert a[0], "spaCy imported torch"
    assert a == b and len(a[1]) > 20


@pytest.mark.fast
def test_chained_word_filters_tokenize_a_text_once_and_judge_the_same(tmp_path, monkeypatch):
    """Within one shard's scope the words of a text are kept for the filters after the first (a chain: Gopher
    quality, Gopher repetition, FineWeb), outside it they are not; the verdicts and columns are those of filters
    that tokenize every text afresh; past the memo's budget texts are tokenized again."""
    from pipeline.core.task import ShardContext, StageContext
    from stages.text import units as text_units

    texts = [t for t in sample_texts() if 200 < len(t) < 20_000][:40]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    stages = [GopherQuality(), GopherRepetition(), FineWebFilter()]

    def run(ctx_of, budget):
        monkeypatch.setattr(text_units, "WORDS_MEMO_CHARS", budget)
        tokenized = []
        real = text_units.nlp

        class Counting:  # spaCy's pipeline, counting the tokenizer's calls
            def __getattr__(self, name):
                return getattr(real(), name)

            @property
            def tokenizer(self):
                return lambda text: tokenized.append(text) or real().tokenizer(text)

        monkeypatch.setattr(text_units, "nlp", lambda: Counting())
        verdicts = [s.process(table, ctx_of(s)) for s in stages]
        monkeypatch.setattr(text_units, "nlp", real)
        return verdicts, tokenized

    def shard(i):
        return lambda s: ShardContext(StageContext(str(tmp_path), str(tmp_path / s.name), None, "web", 1), f"{i:05d}")

    def no_shard(stage):  # a new scope before every stage, then none: nothing is kept from one to the next
        text_units.words_scope(object())
        return None

    chained, once = run(shard(1), 4_000_000)
    fresh, every = run(no_shard, 4_000_000)
    starved, again = run(shard(2), 0)
    assert sorted(once) == sorted(set(texts)) and len(every) == len(again) == 3 * len(texts)
    for a, b, c in zip(chained, fresh, starved):
        assert a.reasons == b.reasons == c.reasons
        assert all(a.columns[k].equals(b.columns[k]) and a.columns[k].equals(c.columns[k]) for k in a.columns)
    assert len({r for v in chained for r in v.reasons}) > 2  # kept and rejected for more than one reason
