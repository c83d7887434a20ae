"""Swallow Corpus v1's Japanese quality rules: equal to the reference on 576 documents built from every real Japanese
page here, and each rule's reason on documents written for it."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
from pathlib import Path

import pyarrow as pa
import pytest

from stages.filters.japanese_quality import MEASURES, JapaneseQuality, measure_japanese

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "japanese_quality_reference.json.gz"
#: a plain, well-formed Japanese text (16 different sentences, 539 characters, written for this test): every rule passes
SENTENCES = [  # written for this test
    "昨日の午後、私は友人と一緒に近所の川沿いを散歩しました。",
    "春になると桜の花が咲き、多くの家族が弁当を持って集まってきます。",
    "川の水はとても澄んでいて、小さな魚が泳いでいるのがよく見えました。",
    "途中で古い本屋に立ち寄り、祖父が好きだった作家の随筆を見つけました。",
    "店主の話によると、その本は五十年以上前に出版されたものだそうです。",
    "私たちは喫茶店で温かい紅茶を飲みながら、子供のころの思い出を語り合いました。",
    "友人は来月から大阪の会社で働くことになり、少し寂しい気持ちになりました。",
    "夕方には空が赤く染まり、遠くの山の形がはっきりと浮かび上がりました。",
    "家に帰ってから、買ってきた随筆をゆっくりと読み始めました。",
    "文章は素朴ですが、季節の移り変わりを丁寧に描いていて心に残ります。",
    "次の週末には、別の友人を誘って同じ道をもう一度歩いてみるつもりです。",
    "こうした何気ない一日が、後になって大切な思い出になるのだと感じました。",
    "駅前の広場では、地元の高校生たちが吹奏楽の演奏を披露していました。",
    "その音色に足を止める人も多く、拍手が何度も起こっていました。",
    "帰り道に見上げた月は丸く、明日もきっと晴れるだろうと思いました。",
    "日記をつける習慣はありませんが、この日のことは書き留めておきたくなりました。",
]
GOOD = "\n".join("".join(SENTENCES[i:i + 2]) for i in range(0, 16, 2))
ENGLISH = ("The town library started a reading group this spring. Members meet on Thursday evenings in the main hall. "
           "Each month they choose one novel and one book of essays. Newcomers are welcome, and tea is served after "
           "the talk. Last week a retired teacher spoke about travel writing from the last century. The next session "
           "will discuss a collection of short stories set in a fishing village. Copies can be borrowed at the front desk.")  # noqa: E501
_rng = random.Random(0)
KATAKANA = "".join(chr(_rng.randrange(0x30A1, 0x30FB)) for _ in range(700))  # no repeated n-grams to speak of


@pytest.mark.shared_data
def test_every_measurement_and_verdict_equals_the_reference():
    """tests/make_japanese_reference.py ran the reference (quality.py of swallow-llm/swallow-corpus at the recorded
    commit) on these documents; our measurements and decisions must be the same on every one."""
    from tests.japanese_docs import documents

    made = json.loads(gzip.decompress(REFERENCE.read_bytes()))
    expected = {d["name"]: d for d in made["docs"]}
    docs = documents()
    assert len(docs) == len(expected) >= 200 and all("error" not in d for d in made["docs"])
    stage = JapaneseQuality()
    kept = 0
    for name, text in docs:
        ref = expected[name]
        assert hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() == ref["sha256"], \
            f"{name}: the document differs from the one the reference saw (rerun tests/make_japanese_reference.py)"
        ours = measure_japanese(text)
        assert set(ours) == set(ref["measures"]) == set(MEASURES)
        for key, value in ref["measures"].items():
            assert ours[key] == value or math.isclose(ours[key], value, rel_tol=1e-12), (name, key, ours[key], value)
        verdict = stage.decide(stage.measure(text), text)
        assert (verdict is None) == ref["keep"], (name, verdict)
        kept += ref["keep"]
    assert 0 < kept < len(docs) // 2  # both verdicts occur


@pytest.mark.fast
@pytest.mark.parametrize("text,reason", [
    (GOOD[:300], "ja_too_few_letters"),
    ("\n".join([SENTENCES[0]] * 9 + SENTENCES[1:14]), "ja_duplicate_paragraphs"),
    ("".join([SENTENCES[0]] * 9 + SENTENCES[1:14]), "ja_duplicate_sentences"),
    (GOOD + "\n" + "あい" * 300, "ja_top_2gram"),
    (GOOD.translate({c: c + 0x60 for c in range(0x3041, 0x3097)}), "ja_few_hiragana"),
    (GOOD + "\n" + KATAKANA, "ja_much_katakana"),
    ("\n".join(SENTENCES[:8]) + "\n" + ENGLISH, "ja_not_japanese"),
    (GOOD.replace("、", "。"), "ja_short_sentences"),
    ("".join(SENTENCES).replace("。", "、"), "ja_long_sentences"),
    ("".join(x.replace("。", "、") for x in SENTENCES[:7]) + "。\n" + "\n".join(SENTENCES[7:]), "ja_longest_sentence"),
    ("\n".join(x.rstrip("。") + "…" for x in SENTENCES), "ja_ellipsis"),
])
def test_each_rule_has_its_reason(text, reason):
    stage = JapaneseQuality()
    got = stage.decide(stage.measure(text), text)
    assert got is not None and got[0] == reason, got
    assert stage.decide(stage.measure(GOOD), GOOD) is None


@pytest.mark.fast
def test_columns_on_every_row_and_empty_text_is_a_reason_not_a_crash():
    """The reference raises on an empty text (max() of no sentence); the stage measures 0 and rejects it."""
    stage = JapaneseQuality()
    v = stage.process(pa.table({"id": ["a", "b", "c"], "text": [GOOD, "", None]}))
    assert v.reasons == [None, "ja_too_few_letters", "ja_too_few_letters"]
    assert v.columns["ja_num_letters"].to_pylist() == [len(GOOD), 0, 0]
    assert set(v.columns) == {f"ja_{k}" for k in MEASURES}
    assert "ja_num_letters = 0 (bound 400)" == v.details[1]


@pytest.mark.fast
def test_a_rows_verdict_depends_on_the_row_alone():
    """The same documents alone, in two orders and among others get the same columns and reasons."""
    texts = [GOOD, GOOD[:300], GOOD + "\n" + KATAKANA, "\n".join(SENTENCES[:8]) + "\n" + ENGLISH, ""]
    stage = JapaneseQuality()

    def judged(batch):
        v = stage.process(pa.table({"id": [str(i) for i in range(len(batch))], "text": batch}))
        cols = {k: c.to_pylist() for k, c in v.columns.items()}
        return [(v.reasons[i], {k: c[i] for k, c in cols.items()}) for i in range(len(batch))]

    alone = [judged([t])[0] for t in texts]
    assert judged(texts) == alone and judged(texts[::-1]) == alone[::-1]
