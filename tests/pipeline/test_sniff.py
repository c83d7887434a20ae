"""A stage command's ``--input`` without ``--source``: each registered source says whether it reads the files
(``Source.sniff``), asked in its ``sniff_order``; the CLI names no source type, so a new source joins by itself."""

import gzip
import json
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import guess_source
from pipeline.core.component import REGISTRY
from pipeline.core.source import Source

pytestmark = pytest.mark.fast


def test_each_kind_of_input_goes_to_its_source(tmp_path):
    warc = tmp_path / "crawl.bin"  # a WARC by its first record, whatever its name
    warc.write_bytes(gzip.compress(b"WARC/1.0\r\nWARC-Type: warcinfo\r\nContent-Length: 0\r\n\r\n\r\n\r\n"))
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "a page", "url": "https://example.org/"}) + "\n")
    code = tmp_path / "code.jsonl"
    code.write_text(json.dumps({"content": "x = 1\n", "path": "a.py"}) + "\n")
    shards = tmp_path / "run" / "kept"
    shards.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["a"], "text": ["x"], "url": ["https://example.org/"]}), shards / "00000.parquet")
    assert guess_source([str(warc)], None, None) == ("warc", "web", "WARC/WET files")
    assert guess_source([str(docs)], None, None) == ("documents", "web", "records with a text field")
    assert guess_source([str(docs)], None, "code")[:2] == ("code", "code")  # --kind code: text records as code
    assert guess_source([str(code)], None, None)[:2] == ("code", "code")
    assert guess_source([str(shards)], None, None) == ("records", "web", "a run's shards")
    assert guess_source([str(tmp_path / "*.jsonl")], None, None)[0] == "code"  # mixed: only code reads both
    assert guess_source([str(code)], "warc", None) == ("warc", "web", "as asked")


def test_a_new_source_joins_the_guess_in_its_order(tmp_path):
    (tmp_path / "data.tsv").write_text("id\ttext\n1\tx\n")

    class TsvSource(Source):
        type: ClassVar[str] = "test_tsv"
        sniff_order: ClassVar[int | None] = 50  # before code (100)
        kind: ClassVar[str] = "web"

        @classmethod
        def sniff(cls, inputs, files, kind):
            return ("web", "tab-separated files") if files and all(f.suffix == ".tsv" for f in files) else None

    try:
        assert guess_source([str(tmp_path / "data.tsv")], None, None) == ("test_tsv", "web", "tab-separated files")
        assert guess_source([str(tmp_path)], None, None) == ("test_tsv", "web", "tab-separated files")
        (tmp_path / "more.py").write_text("x = 1\n")
        assert guess_source([str(tmp_path)], None, None)[0] == "code"
    finally:
        REGISTRY["source"].pop("test_tsv", None)
