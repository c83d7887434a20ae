"""The rewrite stage with real vLLM (CPU build) and a tiny random-weight model made in the test session.

The model's text is meaningless, so structured outputs (a regex) force the shapes each check must see: a valid
rewrite, code that does not compile, no code block, a repetition; truncation and over-long prompts need nothing.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.rewrite.checks import repeated_substring
from stages.rewrite.prompts import extract, load_prompt
from tests.conftest import CPU_ENGINE

# ----------------------------------------------------------------------------------------------- pure parts

@pytest.mark.fast
def test_shipped_prompts_load_and_render():
    for name in ("code_sgcr", "code_scor", "code_v2_single", "math_rewrite"):
        p = load_prompt(name)
        assert p.name == name and len(p.sha256) == 64
        msgs = p.messages("def f(): return {1: 2}")
        assert msgs[-1]["role"] == "user" and "def f(): return {1: 2}" in msgs[-1]["content"]
    assert load_prompt("code_sgcr").sampling == {"temperature": 0.2, "top_p": 0.7, "max_tokens": 8192}
    assert load_prompt("math_rewrite").few_shot


@pytest.mark.fast
def test_user_prompt_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\nuser: 'Summarise: {text}'\nextract: {mode: whole}\n")
    assert load_prompt(str(f)).messages("x")[-1]["content"] == "Summarise: x"
    f.write_text("name: mine\nuser: x\nextract: {mode: fenced}\n")
    with pytest.raises(ValueError, match="mine.yaml: extract.mode"):
        load_prompt(str(f))


@pytest.mark.fast
def test_extract_rules():
    p = load_prompt("code_sgcr")
    gen = "### Score\nScore: 6/10\n```python\nold = 1\n```\n### Improved code\n```python\nnew = 2\n```\n"
    assert extract(gen, p.extract) == "new = 2\n"
    assert extract("no block here", p.extract) is None
    m = load_prompt("math_rewrite").extract
    assert extract("Rewritten: **Problem.** x", m) == "**Problem.** x"
    assert extract("nothing", m) is None


def brute_force_square(text: str, min_len: int) -> bool:
    n = len(text)
    return any(text[i:i + p] == text[i + p:i + 2 * p] for p in range(min_len, n // 2 + 1) for i in range(n - 2 * p + 1))


@pytest.mark.shared_data
def test_repetition_detector_equals_brute_force(corpus_rows):
    import random

    rng = random.Random(0)
    samples = [r["content"][:700] for r in corpus_rows[:60]]
    chunk = "for item in range(10):\n    print(item * 2)  # doubled value shown to the user\n" * 2
    for s in list(samples):
        k = rng.randrange(0, len(s) + 1)
        samples.append(s[:k] + chunk[:rng.randrange(100, len(chunk))] * 2 + s[k:])
    samples += ["a" * 199, "a" * 200, "ab" * 100, ("x" * 99 + "y") * 2, "abc" * 40 + "abd" * 40]
    for s in samples:
        assert (repeated_substring(s, 100) is not None) == brute_force_square(s, 100), s[:60]


# ----------------------------------------------------------------------------------------------- engine

VALID = r"### Score\nScore: 7/10\n### Improved code\n```python\ndef add\(a: int, b: int\) -> int:\n    return a \+ b\n```\n"  # noqa: E501
BROKEN = r"### Improved code\n```python\ndef add\(a, b:\n    return a \+\n```\n"
NO_BLOCK = r"Score: 3/10 and nothing else"
REPEAT = r"### Improved code\n```python\n(# the same long comment line that the model keeps repeating again\n){4}```\n"
LOOP = r"### Improved code\n```python\n(value = compute\(value\)\n){400}```\n"  # cut off long before it ends


@pytest.fixture(scope="module")
def sgcr(tiny_model):
    from stages.rewrite.stage import Rewrite

    # the answers are forced by a regex whatever the input, so no answer is the input's program: fidelity (its own
    # tests: test_fidelity.py) is off here, the other rules are what these tests check
    stage = Rewrite(prompt="code_sgcr", model=str(tiny_model), check_syntax=True, fidelity=False, max_tokens=200,
                    **CPU_ENGINE)
    stage.setup()
    yield stage
    stage.teardown()


def run(stage, texts, **changes):
    for k, v in changes.items():
        setattr(stage, k, v)
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    return stage.process(table)


@pytest.mark.vllm
def test_valid_rewrite_is_kept_with_columns(sgcr):
    v = run(sgcr, ["x=1\nprint(x)\n", "def f(a,b): return a+b\n"], guided_regex=VALID, max_tokens=200)
    assert v.reasons == [None, None]
    assert v.columns["text"][0] == "def add(a: int, b: int) -> int:\n    return a + b\n"
    assert v.columns["text_before_rewrite"][0] == "x=1\nprint(x)\n"
    assert v.columns["rewrite_self_score"].to_pylist() == [7.0, 7.0]
    assert v.columns["rewrite_prompt"][0] == "code_sgcr" and len(v.columns["rewrite_prompt_sha256"][0]) == 64
    assert v.columns["rewrite_finish_reason"][0] == "stop"
    assert "### Improved code" in v.columns["rewrite_generation"][0]
    assert sgcr.shard_info()["engine_started"] == "at setup"  # a small model: its start is in no shard's time
    assert v.counters["generate_s"] > 0 and v.counters["output_tokens"] > 0


@pytest.mark.vllm
def test_each_rejection_reason(sgcr):
    assert run(sgcr, ["x = 1\n"], guided_regex=BROKEN).reasons == ["rewrite_syntax_error"]
    assert run(sgcr, ["x = 1\n"], guided_regex=NO_BLOCK).reasons == ["no_code_block"]
    assert run(sgcr, ["x = 1\n"], guided_regex=REPEAT).reasons == ["repetition"]
    v = run(sgcr, ["x = 1\n"], guided_regex=None, max_tokens=8)  # random weights never stop within 8 tokens
    assert v.reasons == ["truncated"] and v.columns["rewrite_finish_reason"][0] == "length"
    v = run(sgcr, ["x = 1\n"], guided_regex=LOOP, max_tokens=400)  # cut off while looping: the loop is the cause
    assert v.reasons == ["repetition"] and v.columns["rewrite_finish_reason"][0] == "length"
    assert v.details[0].startswith("cut off at max_tokens while a ")
    v = run(sgcr, ["x = 1\n" * 30, "x = 1\n"], guided_regex=VALID, max_tokens=200, min_length_ratio=0.5)
    assert v.reasons == ["shrunk", None] and v.details[0] == "49 characters from 180 (0.27 < 0.5)"
    sgcr.min_length_ratio = 0.0
    long_text = "value = compute(value)\n" * 400
    v = run(sgcr, ["x = 1\n", long_text], guided_regex=VALID, max_tokens=200)
    assert v.reasons == [None, "prompt_too_long"] and "max_model_len" in v.details[1]
    assert v.columns["text"][1] == long_text  # a rejected row keeps its input


@pytest.mark.vllm
def test_an_inline_engine_that_cannot_start_names_the_setting(tiny_model, monkeypatch):
    """engine_process: inline whose engine fails to start (vLLM 0.32 fails so where llvmlite was imported first) is
    one SetupError naming the stage and the way out; vLLM was asked for its in-process engine."""
    import vllm

    from pipeline.core.errors import SetupError
    from stages.rewrite.stage import Rewrite

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # restored after the test: setup() sets it
    asked = {}

    def broken(**kwargs):
        asked.update(kwargs, multiprocessing=os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"])
        raise AttributeError("'_lib_fn_wrapper' object has no attribute 'get'")

    monkeypatch.setattr(vllm, "LLM", broken)
    stage = Rewrite(name="sgcr", prompt="code_sgcr", model=str(tiny_model), engine_process="inline", **CPU_ENGINE)
    with pytest.raises(SetupError, match=r"stage 'sgcr': vLLM's engine did not start inside .*_lib_fn_wrapper.*"
                                         r"set engine_process: separate"):
        stage.setup()
    assert asked["multiprocessing"] == "0" and asked["distributed_executor_backend"] == "uni"


@pytest.mark.fast
def test_batch_invariance_without_a_gpu_is_one_error_naming_the_key(monkeypatch):
    """batch_invariant: true where no NVIDIA GPU is visible (the CPU build: vLLM's batch-invariant kernels would
    replace torch's matrix products with Triton ones that cannot run there) stops the stage's set-up with one line
    naming the stage, the key and the way out, before vLLM is imported and without touching the environment."""
    from pipeline.core.errors import SetupError
    from stages.rewrite import engine_settings as es
    from stages.rewrite.stage import Rewrite

    # setenv, not delenv: pytest's delenv of an unset variable records nothing to undo, and a variable the stage set
    # then outlived the test (the next engines of the test process ran vLLM's batch-invariant Triton kernels)
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "0")
    monkeypatch.setattr(es, "gpu_memory_bytes", lambda: None)
    stage = Rewrite(name="sgcr", prompt="code_sgcr", model="nowhere", batch_invariant=True)
    with pytest.raises(SetupError, match=r"^stage 'sgcr': batch_invariant: true needs an NVIDIA GPU .* remove the "
                                         r"key to run here$"):
        stage.setup()
    assert os.environ["VLLM_BATCH_INVARIANT"] == "0"


@pytest.mark.vllm
def test_batch_invariance_reaches_the_engine_on_a_gpu(tmp_path, monkeypatch):
    """With a GPU (its memory as NVML reports it, made to hold on the CPU build) batch_invariant: true sets
    VLLM_BATCH_INVARIANT=1 before vLLM builds the engine, which reads it then (and its engine-core process inherits
    it); left off, the stage leaves the variable as it was, and teardown() puts it, and the stage's ``env``, back
    as it found them."""
    import vllm

    from stages.rewrite import engine_settings as es
    from stages.rewrite.stage import Rewrite

    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "0")  # unset again after the test (the stage sets it: see above)
    monkeypatch.setattr(es, "gpu_memory_bytes", lambda: 80 * 2**30)
    seen = []

    def engine(**kwargs):
        seen.append(os.environ.get("VLLM_BATCH_INVARIANT"))
        raise RuntimeError("no engine in this test")

    monkeypatch.setattr(vllm, "LLM", engine)
    assert "SWALLOW_TEST_STAGE_ENV" not in os.environ
    for invariant in (False, True):
        stage = Rewrite(prompt="code_sgcr", model=str(tmp_path), batch_invariant=invariant,
                        env={"SWALLOW_TEST_STAGE_ENV": "set"})
        with pytest.raises(RuntimeError, match="no engine in this test"):
            stage.setup()
        assert os.environ["SWALLOW_TEST_STAGE_ENV"] == "set"
        stage.teardown()  # the stage's end
        assert os.environ["VLLM_BATCH_INVARIANT"] == "0"  # as it was: the next stage of an inline run is not changed
        assert "SWALLOW_TEST_STAGE_ENV" not in os.environ  # the stage's env too
    assert seen == ["0", "1"]


@pytest.mark.vllm
def test_a_large_model_on_a_gpu_starts_its_engine_on_the_first_shard_sized_for_its_prompts(tiny_model, monkeypatch):
    """The rule's conditions (>= 1 B parameters, a GPU) made to hold for the tiny model on the CPU build: setup()
    leaves the engine unstarted; the first shard starts it, sized for requests of that shard's mean prompt plus
    max_tokens, and the stats say so. An engine that cannot start stops the run (SetupError); it never turns into
    rejections of the shard's rows."""
    from pipeline.core.errors import SetupError
    from pipeline.phases.apply import safe_process
    from stages.rewrite import engine_settings as es
    from stages.rewrite.stage import Rewrite

    monkeypatch.setattr(es, "TINY_PARAMS", 0)
    monkeypatch.setattr(es, "gpu_memory_bytes", lambda: 141 * 10**9)
    monkeypatch.setattr(es, "LARGE_SEQS", (8, 16))  # within what the CPU build's 256 MiB KV cache holds
    engine = {k: v for k, v in CPU_ENGINE.items() if k != "max_num_seqs"}
    stage = Rewrite(prompt="code_sgcr", model=str(tiny_model), check_syntax=True, fidelity=False, max_tokens=200,
                    **engine)  # (forced answers: see the sgcr fixture)
    stage.setup()
    try:
        assert stage._llm is None  # nothing started before the work is seen
        v = run(stage, ["x=1\nprint(x)\n", "def f(a,b): return a+b\n"], guided_regex=VALID)
        assert v.reasons == [None, None]
        assert v.columns["text"][1] == "def add(a: int, b: int) -> int:\n    return a + b\n"
        prompts = v.columns["rewrite_prompt_tokens"].to_pylist()
        info = stage.shard_info()
        tokens = round(sum(prompts) / 2) + 200
        assert f"requests of {tokens} tokens: the first shard's 2 prompts" in info["engine_why"]
        assert info["engine_chosen"].startswith("max_num_seqs=16,") and "max_num_seqs=16" in info["engine"]
        # the start ran inside this shard: a throughput divides by generate_s (or the span less engine_init_s)
        assert info["engine_started"] == "on the first shard" and info["engine_init_s"] > 0
        assert v.counters["generate_s"] > 0
        assert run(stage, ["y = 2\n"], guided_regex=VALID).reasons == [None]  # the same engine goes on
    finally:
        stage.teardown()
    broken = Rewrite(prompt="code_sgcr", model=str(tiny_model), max_tokens=20,
                     engine_args={"no_such_engine_argument": 1}, **engine)
    broken.setup()
    table = pa.table({"id": ["0", "1"], "text": ["x = 1\n", "y = 2\n"]})
    with pytest.raises(SetupError, match="did not start on the first shard.*no_such_engine_argument"):
        safe_process(broken, table)


# ----------------------------------------------------------------------------------------------- pipelines on Ray

SCOR_OK = r"The program is now complete\.\n### Rewritten code\n```python\ndef main\(\) -> None:\n    print\(\"done\"\)\n```\n"  # noqa: E501


@pytest.mark.shared_data
@pytest.mark.vllm
def test_sgcr_then_scor_pipeline_on_ray(tmp_path, corpus_rows, tiny_model, ray_session):
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats
    from tests.conftest import write_sample

    rows = [r for r in corpus_rows if 50 < len(r["content"]) < 400][:10]
    rows.append(dict(rows[0], content="value = compute(value)\n" * 300, blob_id="long"))  # too long a prompt
    src = write_sample(rows, tmp_path / "in.parquet", row_group_size=6)
    common = {"type": "rewrite", "model": str(tiny_model), "concurrency": 1, "check_syntax": True, "fidelity": False,
              "max_tokens": 120, **CPU_ENGINE}
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 1},
           "stages": [{"type": "syntax_filter"},
                      {**common, "name": "sgcr", "prompt": "code_sgcr", "guided_regex": VALID},
                      {**common, "name": "scor", "prompt": "code_scor", "guided_regex": SCOR_OK}],
           "export": {"enabled": True, "license": "mit"}}
    run_pipeline(load_config(None, raw=raw), tmp_path / "run", progress=False)
    assert verify(tmp_path / "run") == []
    stats = {s["stage"]: s for s in collect_stats(tmp_path / "run")["stages"]}
    rej = [r for f in (tmp_path / "run" / "stages" / "02-sgcr" / "rejected").glob("*.parquet")
           for r in pq.read_table(f).to_pylist()]
    assert {r["blob_id"]: r["reason"] for r in rej}.get("long") == "prompt_too_long"
    assert stats["scor"]["in"] == stats["sgcr"]["kept"] > 0 and stats["scor"]["kept"] == stats["scor"]["in"]
    assert stats["sgcr"]["counters"]["output_tokens"] > 0
    assert "engine_process=inline" in stats["sgcr"]["info"]["engine"]  # a Ray actor on the CPU build: "auto"
    final = pq.read_table(next((tmp_path / "run" / "dataset" / "data").glob("*.parquet"))).to_pylist()
    assert all(r["text"] == 'def main() -> None:\n    print("done")\n' for r in final)
    r = final[0]
    assert r["sgcr_self_score"] == 7.0 and r["sgcr_prompt"] == "code_sgcr" and r["scor_prompt"] == "code_scor"
    assert r["text_before_scor"] == "def add(a: int, b: int) -> int:\n    return a + b\n"
    assert r["repo"] and r["path"] and r["blob_id"]  # provenance survives both rewrites
    card = (tmp_path / "run" / "dataset" / "README.md").read_text()
    assert "code_sgcr" in card and "code_scor" in card


MATH_OK = r"Rewritten: \*\*Problem\.\*\* Compute the value\.\n\n\*\*Solution\.\* [a-z ]{30,60}\."


@pytest.mark.shared_data
@pytest.mark.vllm
def test_math_rewrite_pipeline_on_ray(tmp_path, tiny_model, ray_session):
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats
    from tests.conftest import SHARED

    sample = SHARED / "samples" / "redpajama_stackexchange_sample.jsonl.gz"
    raw = {"kind": "web", "source": {"type": "documents", "paths": [str(sample)], "license": "cc-by-sa-4.0"},
           "stages": [{"type": "rewrite", "name": "math", "prompt": "math_rewrite", "model": str(tiny_model),
                       "concurrency": 1, "max_tokens": 200, "guided_regex": MATH_OK, **CPU_ENGINE,
                       "max_model_len": 2048}],
           "export": {"enabled": False}}
    run_pipeline(load_config(None, raw=raw), tmp_path / "run", progress=False)
    assert verify(tmp_path / "run") == []
    ingest, math = collect_stats(tmp_path / "run")["stages"]
    assert ingest["in"] == 70 and math["in"] == ingest["kept"]
    assert math["kept"] > 0 and set(math["reasons"]) <= {"prompt_too_long", "truncated"}
    kept = pa.concat_tables([pq.read_table(f) for f in (tmp_path / "run" / "stages" / "01-math" / "kept").glob("*.parquet")])  # noqa: E501
    assert all(t.startswith("**Problem.** Compute the value.") for t in kept.column("text").to_pylist())
    assert set(kept.column("license").to_pylist()) == {"cc-by-sa-4.0"}
    assert all(kept.column("text_before_math").to_pylist())  # the page text is kept beside its rewrite
