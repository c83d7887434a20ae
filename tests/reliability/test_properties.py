"""Property tests (hypothesis): whatever the input, no exception escapes a reader, a filter or the Megatron writer,
every row gets exactly one verdict, and the ledger adds up. Inline executor, no Ray: seconds."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LID, WARC

pytestmark = pytest.mark.reliability
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# text the way a corpus has it: any code point Arrow can store (no lone surrogates), with a bias to the
# characters rule filters look at (punctuation, braces, newlines, math, code)
SPECIAL = st.sampled_from(list("{}$\\#.!?…\n\n\t ;:()[]=_-*\"'`<>|") + ["lorem", "ipsum", "javascript",
                                                                      "$x^2$", "\\frac{a}{b}", "def f():",
                                                                      "    return 1", "Terms of use", "\u200b"])
TEXT = st.lists(st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), SPECIAL),
                max_size=80).map("".join)


def run_inline(tmp_path, source: dict, stages: list[dict], kind: str = "code"):
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats

    out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    raw = {"kind": kind, "source": source, "stages": stages, "export": {"enabled": False}}
    run_pipeline(load_config(None, raw=raw), out, progress=False, executor="inline")
    assert verify(out) == []
    return collect_stats(out)["stages"]


@pytest.fixture(scope="module")
def filters():
    from stages.extract.langid import LanguageId
    from stages.filters.c4 import C4Filter
    from stages.filters.fineweb import FineWebFilter
    from stages.filters.gopher import GopherQuality, GopherRepetition
    from stages.filters.length import LengthFilter
    from stages.filters.math_score import MathScore
    from stages.filters.syntax import SyntaxFilter

    out = [GopherQuality(), GopherQuality(math_aware=True), GopherRepetition(), GopherRepetition(math_aware=True),
           C4Filter(), C4Filter(math_aware=True), FineWebFilter(), FineWebFilter(math_aware=True),
           LengthFilter(max_chars=500), MathScore(), SyntaxFilter()]
    if LID.exists():
        out.append(LanguageId(model=str(LID)))
    for f in out:
        f.setup()
    yield out
    for f in out:
        f.teardown()


@SETTINGS
@given(texts=st.lists(st.one_of(TEXT, st.none()), min_size=1, max_size=6))
def test_filters_give_every_row_one_verdict(filters, texts):
    table = pa.table({"id": [f"r{i}" for i in range(len(texts))], "text": pa.array(texts, pa.string()),
                      "language": ["python"] * len(texts)})
    for stage in filters:
        v = stage.process(table)
        assert len(v.reasons) == len(texts), stage.type
        for name, col in (v.columns or {}).items():
            assert len(col) == len(texts), (stage.type, name)
        assert all(r is None or (isinstance(r, str) and r) for r in v.reasons), stage.type


@SETTINGS
@given(lines=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["content", "path", "repo", "id", "language", "x"]),
                    st.one_of(TEXT, st.integers(), st.none(), st.lists(st.integers(), max_size=2)), max_size=5),
    st.builds(json.dumps, st.one_of(st.integers(), TEXT, st.lists(st.integers(), max_size=3))),
    TEXT.map(lambda t: {"content": t, "path": "a.py"}),
    st.binary(max_size=30)), min_size=1, max_size=12))
def test_the_code_reader_on_any_jsonl(tmp_path, lines):
    data = b"\n".join(x if isinstance(x, bytes) else (json.dumps(x) if isinstance(x, dict) else x).encode("utf-8")
                      for x in lines) + b"\n"
    src = tmp_path / f"in{abs(hash(data))}.jsonl"
    src.write_bytes(data)
    ingest = run_inline(tmp_path, {"type": "code", "paths": [str(src)], "shard_bytes": 2000},
                        [{"type": "syntax_filter"}])[0]
    assert ingest["in"] == ingest["kept"] + ingest["rejected"]


def warc_members() -> list[bytes]:
    """The uncompressed members of a real Common Crawl WARC file."""
    import zlib

    raw = (WARC / "cc-main-2024-22_whirlwind.warc.gz").read_bytes()
    members, pos = [], 0
    while pos < len(raw):
        d = zlib.decompressobj(31)
        members.append(d.decompress(raw[pos:]))
        pos = len(raw) - len(d.unused_data)
    return members


@pytest.mark.shared_data
@SETTINGS
@given(data=st.data())
def test_the_warc_reader_on_damaged_files(tmp_path, data):
    """Bytes flipped, members cut short, dropped, repeated or joined by junk, gzip or plain: every record the
    reader finds is a row (kept or rejected with a reason), the run verifies, nothing raises."""
    members = warc_members()
    out = []
    for m in members:
        action = data.draw(st.sampled_from(["keep", "keep", "flip", "cut", "drop", "twice", "junk"]))
        if action == "flip" and m:
            b = bytearray(m)
            for _ in range(data.draw(st.integers(1, 8))):
                b[data.draw(st.integers(0, len(b) - 1))] ^= data.draw(st.integers(1, 255))
            m = bytes(b)
        elif action == "cut":
            m = m[: data.draw(st.integers(0, len(m)))]
        elif action == "drop":
            continue
        elif action == "twice":
            out.append(m)
        elif action == "junk":
            out.append(data.draw(st.binary(min_size=1, max_size=64)))
        out.append(m)
    gz = data.draw(st.booleans())
    blob = b"".join(gzip.compress(m) for m in out) if gz else b"".join(out)
    src = tmp_path / f"d{abs(hash(blob))}.warc{'.gz' if gz else ''}"
    src.write_bytes(blob)
    ingest = run_inline(tmp_path, {"type": "warc", "paths": [str(src)]}, [{"type": "length_filter"}],
                        kind="web")[0]
    assert ingest["in"] == ingest["kept"] + ingest["rejected"]


@SETTINGS
@given(docs=st.lists(st.lists(st.integers(0, 65535), max_size=50), max_size=20),
       dtype=st.sampled_from([np.uint16, np.int32]))
def test_the_megatron_writer_equals_megatron_cores_builder(tmp_path, docs, dtype):
    """Byte-identical to megatron-core's IndexedDatasetBuilder for any documents (empty ones and none at all
    included), and read back by its IndexedDataset. (megatron-core cannot open a .bin of zero bytes, its own
    included: the tokenize stage leaves such shards out of ``--data-path``.)"""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from stages.tokenize.megatron import write_megatron
    from tests.stages.tokenize.test_tokenize import megatron_reference

    arrays = [np.array(d, dtype=np.int64) for d in docs]
    key = abs(hash((str(docs), str(dtype))))
    ours, ref = str(tmp_path / f"o{key}"), str(tmp_path / f"r{key}")
    write_megatron(ours, arrays, dtype)
    megatron_reference(ref, arrays, dtype)
    for ext in (".bin", ".idx"):
        assert Path(ours + ext).read_bytes() == Path(ref + ext).read_bytes()
    if sum(map(len, docs)):
        ds = IndexedDataset(ours)
        assert len(ds) == len(docs)
        assert [ds[i].tolist() for i in range(len(docs))] == docs
