"""Megatron files byte-identical to megatron-core's builder, datasets round trip, card, publishing."""

from __future__ import annotations

import os
import struct

import numpy as np
import pyarrow as pa
import pytest

from pipeline.core.task import ShardContext, StageContext
from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats
from stages.tokenize.megatron import write_megatron
from stages.tokenize.stage import Tokenize, load_tokenizer
from tests.conftest import SHARED, write_sample

shared = pytest.mark.shared_data
TOKENIZERS = SHARED / "tokenizers"


def megatron_reference(prefix: str, docs: list[np.ndarray], dtype) -> None:
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for d in docs:
        builder.add_item(torch.from_numpy(d.astype(np.int64)))
        builder.end_document()
    builder.finalize(prefix + ".idx")


@shared
@pytest.mark.parametrize("name,dtype", [("gpt2", np.uint16), ("llama3", np.int32)])
def test_tokenize_byte_identical_to_megatron_builder(tmp_path, corpus_rows, name, dtype):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    texts = [r["content"] for r in corpus_rows[:150]] + ["", None]
    # slices of 16 documents: encoding of one slice overlaps the conversion of the previous one
    stage = Tokenize(tokenizer=str(TOKENIZERS / name / "tokenizer.json.gz"), encode_batch_size=16)
    stage.setup()
    assert stage._dtype is dtype
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    v = stage.process(table)
    assert v.reasons[-2:] == ["empty_document", "empty_document"]  # never written
    docs = [s for s in v.artifacts if s is not None]
    empty_in_corpus = sum(1 for t in texts[:150] if not t)
    assert len(docs) == 150 - empty_in_corpus
    eod = stage._eod
    # every document's ids, in input order, are the tokenizer's own ids one at a time, then the EOD
    plain = load_tokenizer(str(TOKENIZERS / name / "tokenizer.json.gz"))
    expected = [plain.encode(t, add_special_tokens=False).ids + [eod] for t in texts[:150] if t]
    assert [d.tolist() for d in docs] == expected
    assert all(d.dtype == dtype for d in docs)
    ctx = StageContext(str(tmp_path), str(tmp_path / "ours"), None, "code", 1)
    stage.write_artifacts(docs, ShardContext(ctx, "00000"))
    ours = tmp_path / "ours" / "megatron" / "00000"
    ref = str(tmp_path / "ref")
    megatron_reference(ref, docs, dtype)
    assert (str(ours) + ".bin") and open(str(ours) + ".bin", "rb").read() == open(ref + ".bin", "rb").read()
    assert open(str(ours) + ".idx", "rb").read() == open(ref + ".idx", "rb").read()
    n, tokens = len(docs), sum(len(d) for d in docs)
    assert os.path.getsize(str(ours) + ".bin") == tokens * np.dtype(dtype).itemsize
    assert os.path.getsize(str(ours) + ".idx") == 9 + 8 + 1 + 8 + 8 + 4 * n + 8 * n + 8 * (n + 1)
    header = open(str(ours) + ".idx", "rb").read(34)
    assert header[:9] == b"MMIDIDX\x00\x00" and struct.unpack("<Q", header[9:17])[0] == 1
    assert struct.unpack("<QQ", header[18:34]) == (n, n + 1)
    ds = IndexedDataset(str(ours))
    assert len(ds) == n
    for i in (0, n // 2, n - 1):
        assert np.array_equal(ds[i], docs[i].astype(dtype))


@shared
@pytest.mark.parametrize("name", ["gpt2", "llama3"])
def test_special_token_text_in_a_document_is_plain_text(name):
    """A document quoting ``<|endoftext|>`` (or Llama 3's ``<|end_of_text|>``, ``<|begin_of_text|>``) never holds
    a control id: the EOD appears only at each document's end. ``special_tokens_in_text: control`` keeps
    Megatron-LM's behaviour (the tokenizer's own ``encode``: the id in the middle)."""
    path = str(TOKENIZERS / name / "tokenizer.json.gz")
    specials = ["<|endoftext|>", "<|end_of_text|>", "<|begin_of_text|>", "<|eot_id|>"]
    texts = [f"before {s} after" for s in specials] + ["a plain document with no special token at all"]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    plain = load_tokenizer(path)
    control_ids = {plain.token_to_id(s) for s in specials} - {None}
    stage = Tokenize(tokenizer=path)
    stage.setup()
    docs = stage.process(table).artifacts
    for d in docs:
        assert d[-1] == stage._eod and not (set(d[:-1].tolist()) & control_ids), d
    assert plain.decode(docs[0][:-1].tolist(), skip_special_tokens=False) == texts[0]
    assert docs[-1].tolist() == plain.encode(texts[-1], add_special_tokens=False).ids + [stage._eod]  # as before
    megatron = Tokenize(tokenizer=path, special_tokens_in_text="control")
    megatron.setup()
    assert [d.tolist() for d in megatron.process(table).artifacts] == \
        [plain.encode(t, add_special_tokens=False).ids + [megatron._eod] for t in texts]
    assert any(set(d[:-1].tolist()) & control_ids for d in megatron.process(table).artifacts)


@shared
def test_tokenizer_ids_match_reference():
    gpt2 = load_tokenizer(str(TOKENIZERS / "gpt2" / "tokenizer.json.gz"))
    assert gpt2.encode("Hello world!").ids == [15496, 995, 0]
    assert gpt2.get_vocab_size(with_added_tokens=True) == 50257


@pytest.mark.fast
def test_write_megatron_empty_shard(tmp_path):
    sizes = write_megatron(str(tmp_path / "e"), [], np.uint16)
    assert sizes == {"bin_bytes": 0, "idx_bytes": 9 + 8 + 1 + 8 + 8 + 8}


@pytest.fixture(scope="module")
def tokenized_run(tmp_path_factory, corpus_rows, ray_session):
    if not SHARED.exists():
        pytest.skip("needs ../shared/data")
    tmp = tmp_path_factory.mktemp("tok")
    rows = [dict(r) for r in corpus_rows[:300]]
    src = write_sample(rows, tmp / "in.parquet")
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 150_000},
           "stages": [{"type": "syntax_filter"},
                      {"type": "tokenize", "tokenizer": str(TOKENIZERS / "gpt2" / "tokenizer.json.gz")}],
           "export": {"max_shard_bytes": 200_000, "license": "mit", "pretty_name": "test corpus"}}
    run_pipeline(load_config(None, raw=raw), tmp / "run", progress=False)
    return tmp / "run"


@shared
def test_run_with_tokenize_and_export(tokenized_run):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    assert verify(tokenized_run) == []
    stats = collect_stats(tokenized_run)["stages"]
    tok = stats[-1]
    paths = (tokenized_run / "megatron-data-path.txt").read_text().split()
    assert len(paths) == 2 * tok["shards"]  # weight prefix pairs
    assert sum(int(w) for w in paths[0::2]) == tok["counters"]["tokens"]
    assert sum(len(IndexedDataset(p)) for p in paths[1::2]) == tok["kept"]


@shared
def test_datasets_round_trip(tokenized_run):
    import datasets

    files = sorted((tokenized_run / "dataset" / "data").glob("*.parquet"))
    assert len(files) > 1  # bounded file size forced several files
    assert all(f.name.endswith(f"-of-{len(files):05d}.parquet") for f in files)
    ds = datasets.load_dataset("parquet", data_dir=str(tokenized_run / "dataset" / "data"), split="train")
    kept = collect_stats(tokenized_run)["stages"][-1]["kept"]
    assert ds.num_rows == kept
    assert {"id", "text", "repo", "path", "license", "n_tokens"} <= set(ds.column_names)


@shared
def test_dataset_card_parses(tokenized_run):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(tokenized_run / "dataset" / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["pretty_name"] == "test corpus"
    assert data["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    assert data["size_categories"] == ["n<1K"]
    assert "syntax_error" in card.text and "| tokenize |" in card.text and "MIT" in card.text


@shared
def test_publish_dry_run_and_upload_to_local_hub_standin(tokenized_run, monkeypatch, capsys):
    # The real Hub cannot be reached from tests: a local HTTP stand-in answers instead (tests/hub_standin.py).
    from pipeline.cli import main
    from tests.hub_standin import HubStandIn

    secret = "hf_" + "x" * 34
    monkeypatch.setenv("HF_TOKEN", secret)
    assert main(["publish", str(tokenized_run), "--repo-id", "org/name", "--dry-run", "--megatron"]) == 0
    out = capsys.readouterr().out
    assert "would upload" in out and "data/train-00000-of-" in out and "megatron/00000.bin" in out
    with HubStandIn(fail_commits_with_429=1) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        from stages.outputs import publish as pub

        summary = pub.publish(tokenized_run, "org/name", backoff_base_s=0.01)
        assert hub.commits == 1  # one commit after one 429
        assert sum(1 for m, p, _ in hub.requests if "/commit/" in p) == 2
        local = sorted(p.name for p in (tokenized_run / "dataset" / "data").glob("*.parquet"))
        assert sorted(k.split("/")[-1] for k in hub.files if k.startswith("data/")) == local
        assert hub.files["README.md"] == (tokenized_run / "dataset" / "README.md").read_bytes()
        assert all(h.get("authorization") == f"Bearer {secret}" or h.get("Authorization") == f"Bearer {secret}"
                   for m, p, h in hub.requests if "/commit/" in p)
        assert summary["commit"]
        assert hub.validated and hub.validated[0].startswith("---")  # the card's YAML went through validation
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    for f in tokenized_run.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".yaml", ".md", ".txt"):
            assert secret not in f.read_text(errors="ignore")
