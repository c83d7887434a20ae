"""llm_score (SwallowCode-v2 quality scoring) on the CPU build of vLLM with the tiny random model, and the v2
tiers through ``where:``: drop below 3, rewrite 3-7, keep 8-10 as they are."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.rewrite.score import parse_score
from tests.conftest import CPU_ENGINE, write_sample

SHORT = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10},
                                          "reason": {"type": "string", "maxLength": 12}},
         "required": ["score", "reason"], "additionalProperties": False}


@pytest.mark.fast
def test_parse_score():
    assert parse_score('{"score": 7, "reason": "clear"}') == (7.0, "clear")
    assert parse_score('{"score": 7.5}') == (7.5, None)
    for bad in (None, "", "7", "[7]", '{"score": 11}', '{"score": -1}', '{"score": "7"}', '{"score": true}',
                '{"reason": "x"}', '{"score": 7', "Score: 7/10"):
        assert parse_score(bad) == (None, None), bad
    # a 0-5 rubric (FineMath, educational value): 5 is the top, 6 is off the scale
    assert parse_score('{"reason": "x", "score": 5}', max_score=5) == (5.0, "x")
    assert parse_score('{"reason": "x", "score": 6}', max_score=5) == (None, None)
    from stages.rewrite.score import schema

    assert schema(5)["properties"]["score"]["maximum"] == 5 and list(schema()["properties"]) == ["reason", "score"]


@pytest.fixture(scope="module")
def scorer(tiny_model):
    from stages.rewrite.score import LlmScore

    stage = LlmScore(model=str(tiny_model), json_schema=SHORT, max_tokens=60, **CPU_ENGINE)
    stage.setup()
    yield stage
    stage.teardown()


def score(stage, texts, **changes):
    for k, v in changes.items():
        setattr(stage, k, v)
    return stage.process(pa.table({"id": [f"r{i}" for i in range(len(texts))], "text": texts}))


@pytest.mark.vllm
def test_scores_follow_the_schema_and_every_failure_is_a_reason(scorer):
    texts = [f"def f{i}(x):\n    return x * {i}\n" for i in range(6)]
    v = score(scorer, texts)
    assert v.reasons == [None] * 6  # the schema holds the random model to a parsable answer
    s = v.columns["llm_score"].to_pylist()
    assert all(isinstance(x, float) and 0 <= x <= 10 for x in s)
    assert all(isinstance(r, str) and len(r) <= 12 for r in v.columns["llm_score_reason"].to_pylist())
    assert v.columns["llm_score_prompt"][0] == "code_quality_score"
    assert score(scorer, texts[:2], guided_regex="Score: [0-9]/10").reasons == ["unparsable_score"] * 2
    assert score(scorer, texts[:2], guided_regex=None, max_tokens=3).reasons == ["truncated"] * 2
    v = score(scorer, texts, max_tokens=60, min_score=11.0)  # every grade is below 11
    assert v.reasons == ["low_llm_score"] * 6 and "< 11" in v.details[0]
    assert score(scorer, [""]).reasons == ["empty_input"]
    # max_input_chars: the model reads the document's beginning (fewer prompt tokens), the row keeps all of it
    long = ["x = 1\n" * 400]
    whole = score(scorer, long, min_score=None).columns["llm_score_prompt_tokens"][0].as_py()
    cut = score(scorer, long, max_input_chars=60).columns["llm_score_prompt_tokens"][0].as_py()
    scorer.max_input_chars = None
    assert cut < whole - 500


#: Two grades per tier (low < 3, mid 3-7, high >= 8): with the digits' logits tied (below) each tier is 1/3 a row.
TIER = r'\{"score": (1|2|5|6|8|9), "reason": "[a-z]{3,8}"\}'
REWRITE = r"### Score\nScore: 6/10\n### Improved code\n```python\ndef main\(\) -> None:\n    print\(\"tier\"\)\n```\n"


@pytest.fixture(scope="module")
def fair_grader(tiny_model, tmp_path_factory):
    """The tiny model with the embedding rows of the digits zeroed (tied embeddings: they are its output rows too),
    so the digits' logits are exactly 0 whatever the hidden state and, under ``TIER``, a sampled grade is a fair draw
    of the row's seed on any CPU. With plain random weights the draw leant on the weights and on the machine's
    kernels: here every tier got rows, on CI 16 rows gave 8 low, 8 mid, none high."""
    import shutil

    from safetensors.torch import load_file, save_file
    from tokenizers import Tokenizer

    model = tmp_path_factory.mktemp("fair") / "model"
    shutil.copytree(tiny_model, model)
    weights = load_file(model / "model.safetensors")
    digits = [Tokenizer.from_file(str(model / "tokenizer.json")).token_to_id(d) for d in "0123456789"]
    assert None not in digits and "lm_head.weight" not in weights  # single-digit tokens, output tied to input
    weights["model.embed_tokens.weight"][digits] = 0.0
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    return model


@pytest.mark.shared_data
@pytest.mark.vllm
def test_v2_tiers_with_where(tmp_path, corpus_rows, tiny_model, fair_grader, ray_session):
    from pipeline.run.config import load_config
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats
    from pipeline.view.report import run_with_report

    # 54 short files, of which ~48 reach the grader: a tier is left empty with probability 3 * (2/3)**48 ~ 1e-8
    rows = [r for r in corpus_rows if 50 < len(r["content"]) < 300][:54]
    src = write_sample(rows, tmp_path / "in.parquet", row_group_size=18)
    cfg = load_config("configs/swallow_code_v2.yaml", overrides=[
        f"source.paths=['{src}']", "source.shard_bytes=1",
        # the tiny random model stands in for the real one, held to grades drawn fairly over the three tiers
        f"stages.llm_score.model={fair_grader}", f"stages.llm_score.guided_regex='{TIER}'",
        f"stages.rewrite.model={tiny_model}", f"stages.rewrite.guided_regex='{REWRITE}'",
        "stages.llm_score.max_tokens=40", "stages.rewrite.max_tokens=150",
        # sampled, one seed per row (greedy would pick one grade for all)
        "stages.llm_score.temperature=1.0", "stages.llm_score.seed=7", "stages.llm_score.max_num_batched_tokens=16384",
        *(f"stages.{s}.{k}={v}" for s in ("llm_score", "rewrite") for k, v in CPU_ENGINE.items() if k != "env"),
        *(f"stages.{s}.num_gpus=0" for s in ("llm_score", "rewrite")),
        *(f"stages.{s}.concurrency=1" for s in ("llm_score", "rewrite")),
        *(f"stages.{s}.env={{VLLM_CPU_KVCACHE_SPACE: '1'}}" for s in ("llm_score", "rewrite")),
        f"stages.tokenize.tokenizer={tiny_model}",
    ])
    run_with_report(cfg, tmp_path / "run", progress=False, export=False)
    assert verify(tmp_path / "run") == []
    page = (tmp_path / "run" / "report.html").read_text()
    assert "llm_score (n=" in page and "min_score 3" in page and "rewrite where 8" in page  # the tiers drawn
    st = {s["stage"]: s for s in collect_stats(tmp_path / "run")["stages"]}
    sd = {p.name.split("-", 1)[1]: p for p in (tmp_path / "run" / "stages").iterdir()}
    scored = [r for part in ("kept", "rejected") for f in (sd["llm_score"] / part).glob("*.parquet")
              for r in pq.read_table(f).to_pylist()]
    tiers = {"low": lambda x: x < 3, "mid": lambda x: 3 <= x < 8, "high": lambda x: x >= 8}
    by_score = {t: {r["id"] for r in scored if f(r["llm_score"])} for t, f in tiers.items()}
    assert len(scored) >= 40  # the odds above
    assert all(by_score.values()), f"every tier got documents: { {t: len(v) for t, v in by_score.items()} }"
    assert st["llm_score"]["reasons"] == {"low_llm_score": len(by_score["low"])}  # < 3: dropped
    kept = pa.concat_tables([pq.read_table(f) for f in (sd["rewrite"] / "kept").glob("*.parquet")],
                            promote_options="default").to_pylist()
    assert st["rewrite"]["counters"]["passed_through"] == len(by_score["high"])  # >= 8: as they are
    assert st["rewrite"]["counters"]["requests"] == len(by_score["mid"])  # 3-7: rewritten
    assert st["rewrite"]["reasons"] == {}, st["rewrite"]["reasons"]  # the forced rewrite always passes its checks
    before = {r["id"]: r["text"] for r in scored}
    assert {r["id"] for r in kept} == by_score["mid"] | by_score["high"]
    for r in kept:
        if r["id"] in by_score["high"]:  # untouched: no generation, the text as it was scored
            assert r["rewrite_generation"] is None and r["text"] == before[r["id"]]
        else:
            assert r["text"] == 'def main() -> None:\n    print("tier")\n'
