"""``swallow mix``: token shares within 1 % of the targets, FineWeb-2's upsampling by cluster size, epochs, draws
that are a function of the rows and the mixture file, a Parquet mixture ``datasets`` loads, Megatron files and a
``--data-path`` that megatron-core's BlendedMegatronDatasetBuilder blends with the expected weights, and ``verify``
catching every edit. Real runs (inline executor, real MinHash dedup and tokenizer) on synthetic code."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.core.errors import ConfigError
from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from stages.outputs.mix import FINEWEB2, Band, factor_of, load_mix, make_mixture, verify_mixture


def _program(rng: random.Random, i: int) -> str:
    names = ["alpha", "beta", "gamma", "delta", "total", "items", "value", "result", "count", "index"]
    body = "\n".join(f"    {rng.choice(names)}_{j} = {rng.randint(0, 999)} * {rng.choice(names)}_{max(j - 1, 0)}"
                     f" + {rng.randint(1, 50)}" for j in range(rng.randint(3, 30)))
    return f"def function_{i}(alpha_0=1, beta_0=2):\n    {names[i % 10]}_0 = {i}\n{body}\n    return {i}\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs: ``code`` with near-duplicate clusters of sizes 1-6 (MinHash), ``prose`` without
    cluster sizes; both tokenized with a tokenizer trained here."""
    from pipeline.tiny import stdlib_sample, train_tokenizer

    tmp = tmp_path_factory.mktemp("mix")
    lib = stdlib_sample(tmp / "lib", ["textwrap.py", "bisect.py", "heapq.py", "colorsys.py"])
    tok = train_tokenizer(sorted(str(p) for p in lib.rglob("*.py")), tmp / "tok", vocab_size=600)
    rng = random.Random(7)
    rows = []
    for i in range(120):
        text = _program(rng, i)
        size = 1 if i < 60 else (i % 6) + 1  # near copies: a trailing comment changed
        for k in range(size):
            rows.append({"content": text + ("" if k == 0 else f"# copy {k}\n"), "path": f"r{i}/m{k}.py",
                         "repo": f"org/r{i}-{k}", "license": "mit"})
    rng.shuffle(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp / "code.parquet")
    code = {"kind": "code", "source": {"type": "code", "paths": [str(tmp / "code.parquet")], "shard_bytes": 20_000},
            "stages": [{"type": "minhash_dedup", "shingle": "code", "ngram": 3, "threshold": 0.7},
                       {"type": "tokenize", "tokenizer": str(tok)}], "export": {"license": "mit"}}
    run_pipeline(load_config(None, raw=code), tmp / "code", progress=False, executor="inline")
    prose = [{"content": _program(rng, 1000 + i).replace("def ", "# def "), "path": f"p{i}.py", "repo": "org/p",
              "license": "mit"} for i in range(50)]
    pq.write_table(pa.Table.from_pylist(prose), tmp / "prose.parquet")
    other = {"kind": "code", "source": {"type": "code", "paths": [str(tmp / "prose.parquet")]},
             "stages": [{"type": "tokenize", "tokenizer": str(tok)}], "export": {"license": "mit"}}
    run_pipeline(load_config(None, raw=other), tmp / "prose", progress=False, executor="inline")
    return tmp


def _mix_file(tmp: Path, runs: Path, **extra) -> Path:
    spec = {"sources": {"code": {"run": str(runs / "code"), "share": 0.3, "max_epochs": 20},
                        "prose": {"run": str(runs / "prose"), "share": 0.7, "max_epochs": 20}}, **extra}
    path = tmp / "mix.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _rows(out: Path) -> pa.Table:
    return pq.read_table(out / "data")


@pytest.mark.fast
def test_fineweb2_table():
    bands = [Band(min=a, max=b, factor=f) for a, b, f in FINEWEB2]
    assert [factor_of(n, bands) for n in (1, 2, 3, 4, 5, 99, 100, 999, 1000, 50_000)] == \
        [1, 2, 3, 3, 5, 5, 8, 8, 1, 1]


def test_shares_upsampling_and_verify(runs, tmp_path):
    out = tmp_path / "mixture"
    # ~100k upsampled code tokens, ~21k prose tokens: the code is drawn about once (its clusters upsampled), the
    # prose about ten times
    cfg = load_mix(_mix_file(tmp_path, runs, total_tokens=300_000))
    rec = make_mixture(cfg, out, say=lambda m: None)
    assert verify_mixture(out) == []
    data = _rows(out)
    tokens = {n: sum(t for s, t in zip(data.column("source").to_pylist(), data.column("n_tokens").to_pylist())
                     if s == n) for n in ("code", "prose")}
    total = sum(tokens.values())
    assert abs(total - 300_000) <= 0.01 * 300_000
    assert abs(tokens["code"] / total - 0.3) < 0.01 and abs(tokens["prose"] / total - 0.7) < 0.01
    assert rec["sources"]["code"]["mixture_tokens"] == tokens["code"]
    # upsampling: the code run's kept rows carry cluster sizes 1..6, and their factors are FineWeb-2's
    draws = pq.read_table(out / "draws" / "code.parquet").to_pylist()
    assert {d["cluster_size"] for d in draws} == {1, 2, 3, 4, 5, 6}
    bands = [Band(min=a, max=b, factor=f) for a, b, f in FINEWEB2]
    assert all(d["factor"] == factor_of(d["cluster_size"], bands) for d in draws)
    epochs = rec["sources"]["code"]["epochs"]
    for d in draws:  # copies: the expectation rounded, give or take the correction of a few rows
        assert abs(d["copies"] - epochs * d["factor"]) < 2
    big = [d["copies"] for d in draws if d["cluster_size"] == 5]
    one = [d["copies"] for d in draws if d["cluster_size"] == 1]
    assert sum(big) / len(big) > 3 * sum(one) / len(one)
    assert not rec["sources"]["prose"]["upsampled"] and rec["sources"]["prose"]["has_cluster_sizes"] is False
    # every kept row of each run is in the draws once
    from tests.helpers import kept_ids

    assert sorted(d["id"] for d in draws) == sorted(kept_ids(runs / "code"))
    # shuffled: the sources interleave
    sources = data.column("source").to_pylist()
    assert sum(a != b for a, b in zip(sources, sources[1:])) > len(sources) / 4
    card = (out / "README.md").read_text()
    assert "| code | 30.00% |" in card and "FineWeb-2" in card and rec["sources"]["code"]["root"] in card


def test_draws_are_a_function_of_rows_and_config(runs, tmp_path):
    cfg = load_mix(_mix_file(tmp_path, runs, total_tokens=20_000))
    make_mixture(cfg, tmp_path / "a", say=lambda m: None)
    make_mixture(cfg, tmp_path / "b", say=lambda m: None)
    assert [(f.name, f.read_bytes()) for f in sorted((tmp_path / "a" / "data").iterdir())] == \
        [(f.name, f.read_bytes()) for f in sorted((tmp_path / "b" / "data").iterdir())]
    other = load_mix(_mix_file(tmp_path, runs, total_tokens=20_000, seed=5))
    make_mixture(other, tmp_path / "c", say=lambda m: None)
    a = pq.read_table(tmp_path / "a" / "draws" / "code.parquet").column("copies").to_pylist()
    c = pq.read_table(tmp_path / "c" / "draws" / "code.parquet").column("copies").to_pylist()
    assert a != c  # another seed, other draws
    said = []
    make_mixture(cfg, tmp_path / "a", say=said.append)  # unchanged: nothing written
    assert said and "up to date" in said[0]


def test_default_total_is_the_largest_within_caps_and_caps_are_enforced(runs, tmp_path):
    spec = {"sources": {"code": {"run": str(runs / "code"), "share": 0.5},
                        "prose": {"run": str(runs / "prose"), "share": 0.5}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    rec = make_mixture(load_mix(tmp_path / "m.yaml"), tmp_path / "m", dry_run=True)
    limiting = min(rec["sources"].values(), key=lambda s: s["upsampled_tokens"])
    assert rec["total_tokens"] == int(2 * limiting["upsampled_tokens"])
    assert max(rec["epochs"].values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match=r"source \w+ would be repeated .* over its max_epochs 1; lower "
                                          r"total_tokens \(at most"):
        load = load_mix(tmp_path / "m.yaml", ["total_tokens=10000000", "sources.code.max_epochs=1",
                                              "sources.prose.max_epochs=1"])
        make_mixture(load, tmp_path / "m", dry_run=True)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"sources": {"code": {"run": str(runs / "code"),
                                                                            "share": 0.5, "epochs": 2}}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: sources.code.epochs: unknown key"):
        load_mix(tmp_path / "bad.yaml")
    (tmp_path / "sum.yaml").write_text(yaml.safe_dump({"sources": {"code": {"run": str(runs / "code"),
                                                                            "share": 0.5}}}))
    with pytest.raises(ConfigError, match="shares add up to 0.5, not 1"):
        load_mix(tmp_path / "sum.yaml")
    (tmp_path / "notrun.yaml").write_text(yaml.safe_dump({"sources": {"x": {"run": str(tmp_path), "share": 1}}}))
    with pytest.raises(ConfigError, match=r"source x .*not a run folder"):
        make_mixture(load_mix(tmp_path / "notrun.yaml"), tmp_path / "n")


def test_verify_catches_edits(runs, tmp_path):
    from pipeline.cli import main

    out = tmp_path / "mixture"
    make_mixture(load_mix(_mix_file(tmp_path, runs, total_tokens=10_000)), out, say=lambda m: None)
    assert main(["verify", str(out)]) == 0
    first = sorted((out / "data").glob("*.parquet"))[0]
    t = pq.read_table(first)
    pq.write_table(t.slice(1), first)  # a row removed
    assert any("changed after" in p for p in verify_mixture(out))
    assert main(["verify", str(out)]) == 1
    rec = json.loads((out / "mixture.json").read_text())
    from pipeline.store.shards import file_seal

    rec["files"][f"data/{first.name}"] = file_seal(first)  # the seal forged to match: the rows still disagree
    (out / "mixture.json").write_text(json.dumps(rec))
    problems = verify_mixture(out)
    assert any("data/ holds" in p and "the draws" in p for p in problems), problems
    (out / "data" / "extra.parquet").write_bytes(b"x")
    assert any("extra.parquet is no file of the mixture" in p for p in verify_mixture(out))


def test_megatron_blend_loads_with_the_weights(runs, tmp_path):
    """megatron-core's BlendedMegatronDatasetBuilder reads the data path: its blend weights are the shares of
    each source spread over the source's prefixes, and the samples it draws come from each source by share."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import get_blend_from_list

    out = tmp_path / "mixture"
    rec = make_mixture(load_mix(_mix_file(tmp_path, runs, total_tokens=30_000)), out, say=lambda m: None)
    words = (out / "megatron-data-path.txt").read_text().split()
    weights, prefixes = [float(w) for w in words[0::2]], words[1::2]
    by_source = {n: sum(w for w, p in zip(weights, prefixes) if f"/megatron/{n}/" in p) for n in rec["sources"]}
    assert by_source["code"] == pytest.approx(0.3) and by_source["prose"] == pytest.approx(0.7)
    # the upsampled documents: the code source's Megatron files hold each kept row factor times
    draws = pq.read_table(out / "draws" / "code.parquet")
    docs = sum(len(IndexedDataset(p)) for p in prefixes if "/megatron/code/" in p)
    assert docs == sum(draws.column("factor").to_pylist())
    seq = 64

    class Tok:  # what GPTDataset asks of a tokenizer: its ids of end of document and padding
        eod, pad, bos, vocab_size = 0, 1, None, 600
        unique_identifiers = {"class": "tests"}

    config = GPTDatasetConfig(random_seed=1, sequence_length=seq, blend=get_blend_from_list(words),
                              split="1,0,0", tokenizer=Tok(), reset_position_ids=False, reset_attention_mask=False,
                              eod_mask_loss=False, path_to_cache=str(tmp_path / "cache"), mid_level_dataset_surplus=0.1)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)  # one process
    try:
        train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [400, 0, 0], lambda: True, config).build()
    finally:
        dist.destroy_process_group()
    assert list(train.weights) == pytest.approx([w / sum(weights) for w in weights])
    counts = np.bincount(np.asarray(train.dataset_index), minlength=len(prefixes))
    drawn_code = sum(c for c, p in zip(counts, prefixes) if "/megatron/code/" in p) / counts.sum()
    assert drawn_code == pytest.approx(0.3, abs=0.01)


def test_command_line(runs, tmp_path, capsys):
    from pipeline.cli import main

    mix = _mix_file(tmp_path, runs)
    assert main(["mix", str(mix), str(tmp_path / "out"), "--dry-run", "--set", "total_tokens=12000"]) == 0
    said = capsys.readouterr().out
    assert "mixture: 12,000 tokens" in said and "code:" in said and "epochs" in said
    assert not (tmp_path / "out").exists()
    assert main(["mix", str(mix), str(tmp_path / "out"), "--set", "total_tokens=12000"]) == 0
    assert "tokens; card" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "out")]) == 0
    assert main(["mix", str(tmp_path / "missing.yaml"), str(tmp_path / "o2")]) == 2
    assert "error: mixture file" in capsys.readouterr().err
    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out" / "data"), split="train")
    assert set(ds.column_names) == {"id", "source", "copy", "text", "n_tokens"}
    assert ds.num_rows == sum(json.loads((tmp_path / "out" / "mixture.json").read_text())["sources"][n]["copies"]
                              for n in ("code", "prose"))


@pytest.mark.fast
def test_shipped_mixture_files_validate():
    for path in sorted((Path(__file__).parents[3] / "configs" / "mixtures").glob("*.yaml")):
        cfg = load_mix(path)
        assert abs(sum(s.share for s in cfg.sources.values()) - 1) < 1e-9
