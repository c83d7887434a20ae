"""The Japanese pre-filter before extraction: declarations, titles, and no Japanese page lost on the real ones."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stages.extract.language_prefilter import LanguagePrefilter, declared
from tests.conftest import LID

PAGES = {
    "lang_ja": "<!doctype html><html lang='ja'><head><title>x</title></head><body>本文</body></html>",
    "lang_ja_jp": '<html xml:lang="ja-JP" lang="ja-JP"><body>本文</body></html>',
    "meta": "<html><head><META HTTP-EQUIV='CONTENT-LANGUAGE' CONTENT='Japanese'></head><body>x</body></html>",
    "meta_reversed": '<html><head><meta content="ja" http-equiv="Content-Language"></head></html>',
    "lang_en": "<html lang='en'><head><title>Weather report</title></head><body>x</body></html>",
    "nothing": "<html><body><p>no declaration, no title</p></body></html>",
    "empty": "",
}


@pytest.mark.fast
def test_declarations_decide_without_a_model():
    table = pa.table({"id": list(PAGES), "html": list(PAGES.values())})
    v = LanguagePrefilter(name="pre").process(table)
    got = dict(zip(PAGES, v.reasons))
    assert [k for k, r in got.items() if r is None] == ["lang_ja", "lang_ja_jp", "meta", "meta_reversed"]
    assert got["lang_en"] == got["nothing"] == "prefilter_other_language" and got["empty"] == "no_html"
    assert v.columns["declared_language"].to_pylist()[:5] == ["ja", "ja-jp", "japanese", "ja", "en"]
    assert declared("<html\n  class='a' LANG = \"ja\">") == "ja"


@pytest.mark.shared_data
def test_titles_through_fasttext_and_no_real_japanese_page_lost():
    """A Japanese title saves a page whose template says ``lang="en"``; every Japanese page here (the 29 of the
    ClueWeb WARC, declared only by a Content-Language meta, and the 43 of html/japanese, many written as numeric
    character references) passes; none of the 300 pages of trafilatura's evaluation set (English, German, ...) does."""
    from benchmarks import extract_quality, japanese_extraction

    stage = LanguagePrefilter(name="pre", model=str(LID))
    stage.setup()
    odd = "<html lang='en'><head><title>&#x6771;&#x4EAC;&#x306E;&#x5929;&#x6C17;&#x4E88;&#x5831;" \
          "&#x3092;&#x304A;&#x77E5;&#x3089;&#x305B;&#x3057;&#x307E;&#x3059;</title></head></html>"
    v = stage.process(pa.table({"id": ["a", "b"], "html": [odd, PAGES["lang_en"]]}))
    assert v.reasons == [None, "prefilter_other_language"] and v.columns["title_language"][0].as_py() == "ja"
    ja = [p["html"] for p in japanese_extraction.truth_pages()] + \
        [p["html"] for p in japanese_extraction.clueweb_pages()]
    assert len(ja) == 72
    v = stage.process(pa.table({"id": [str(i) for i in range(len(ja))], "html": ja}))
    assert v.reasons == [None] * 72, [d for d in v.details if d]
    other = [raw.decode("utf-8", "replace") for _, raw in extract_quality.pages()]  # English, German, ...
    v = stage.process(pa.table({"id": [str(i) for i in range(len(other))], "html": other}))
    assert len(other) == 300 and all(r == "prefilter_other_language" for r in v.reasons)
