"""``configs/swallow_ja.yaml`` end to end on the real pages here: a mixed crawl (every WARC file of
../shared/data/warc, ~180 HTML pages of which 29 Japanese, and the 43 pages of html/japanese packed into a WARC)
through the Japanese pre-filter, extraction, language ID, Swallow Corpus v1's rules, character-shingle MinHash and
the tokenizer: the ledger adds up, ``verify`` holds, and real Japanese pages survive."""

from __future__ import annotations

import collections

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats
from tests.conftest import LID, ROOT, SHARED, WARC

pytestmark = pytest.mark.shared_data


def rows(run_dir, stage: str, part: str, columns=None) -> list[dict]:
    (folder,) = [d for d in (run_dir / "stages").iterdir() if d.name.endswith(stage)]
    return [r for f in sorted((folder / part).glob("*.parquet")) for r in pq.read_table(f, columns=columns).to_pylist()]


def test_the_japanese_config_from_a_mixed_crawl_to_tokens(tmp_path, ray_session):
    from pipeline.tiny import html_warc

    pages = html_warc(SHARED / "html" / "japanese", tmp_path / "japanese_pages.warc.gz")
    raw = yaml.safe_load((ROOT / "configs" / "swallow_ja.yaml").read_text())
    raw["source"]["paths"] = [str(pages), str(WARC)]
    for stage in raw["stages"]:
        if "model" in stage:
            stage["model"] = str(LID)
        if stage["type"] == "tokenize":
            stage["tokenizer"] = str(SHARED / "tokenizers" / "llama3" / "tokenizer.json.gz")
    run_dir = tmp_path / "run"
    run_pipeline(load_config(None, raw=raw), run_dir, progress=False)
    assert verify(run_dir) == []
    stats = {s["stage"]: s for s in collect_stats(run_dir)["stages"]}
    pre = stats["language_prefilter"]
    # every Japanese page passes the pre-filter (72: 43 + the 29 of ClueWeb) and nothing else does
    assert pre["kept"] == 72 and pre["reasons"]["prefilter_other_language"] >= 140
    ids = [r["id"] for r in rows(run_dir, "language_id", "kept", ["id"])]
    assert len(ids) == 72  # all 72 read as Japanese after extraction
    kept = rows(run_dir, "tokenize", "kept", ["id", "url", "text"])
    by_site = collections.Counter(r["url"].split("/")[2] if "://" in r["url"] else r["url"] for r in kept)
    assert len(kept) >= 20, by_site
    assert any("uraharajuku" in r["url"] for r in kept)  # a shop page's own description, not its sidebar
    assert stats["tokenize"]["counters"]["tokens"] > 10_000
    # the English rule filters were not asked to judge Japanese here; japanese_quality's reasons are all ja_*
    assert all(reason.startswith("ja_") for reason in stats["japanese_quality"]["reasons"])
