"""A chat template cannot hang a stage (template_guard.py): rendered in a process of its own within a time and
size bound; a template that loops on some prompts makes those rows ``template_timeout`` and the others render as
the tokenizer itself renders them; the import checks several prompts, not only its own."""

from __future__ import annotations

import json
import shutil

import pytest

from stages.rewrite.template_guard import TemplateRenderer

#: Renders like ChatML, except that a user turn holding "LOOP" spins for ever (nested loops of the sandbox's
#: largest range: 10^15 iterations).
LOOPING = ("{% for m in messages %}{% if 'LOOP' in m['content'] %}{% for a in range(100000) %}{% for b in "
           "range(100000) %}{% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}{% endif %}"
           "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def looping_model(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("looping") / "model"
    shutil.copytree(tiny_model, folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["chat_template"] = LOOPING
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


def test_a_looping_row_is_a_timeout_and_the_others_render(looping_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(looping_model))
    convs = [[{"role": "user", "content": f"row {i}"}] for i in range(5)]
    convs[2] = [{"role": "user", "content": "please LOOP"}]
    r = TemplateRenderer(str(looping_model), per_row_s=2.0)
    try:
        out = r.render(convs)
        again = r.render(convs[:2])  # the child was killed and is started again
    finally:
        r.close()
    assert [s for s, _ in out] == ["ok", "ok", "timeout", "ok", "ok"]
    want = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs[:2]]
    assert [t for _, t in out[:2]] == want and [t for _, t in again] == want


def test_the_import_checks_more_than_its_own_prompt(tmp_path):
    """The check prompts include a long document: a template that loops on them fails the import in one line."""
    from stages.rewrite.model_import import CHECK_MESSAGES, TEMPLATE_CHECKS

    assert len(TEMPLATE_CHECKS) >= 3 and all(c != CHECK_MESSAGES for c in TEMPLATE_CHECKS)
    assert any(len(m["content"]) > 10_000 for c in TEMPLATE_CHECKS for m in c)


@pytest.mark.vllm
def test_the_rewrite_stage_gives_a_looping_row_its_reason(looping_model):
    import pyarrow as pa

    from stages.rewrite.stage import Rewrite
    from tests.conftest import CPU_ENGINE

    stage = Rewrite(prompt="code_v2_single", model=str(looping_model), max_tokens=8, template_timeout_s=2.0,
                    **CPU_ENGINE)
    stage.setup()
    try:
        v = stage.process(pa.table({"id": ["a", "b", "c"], "text": ["x = 1", "LOOP = 2", "y = 3"]}))
    finally:
        stage.teardown()
    assert v.reasons[1] == "template_timeout" and "2 s" in v.details[1]
    assert v.reasons[0] != "template_timeout" and v.reasons[2] != "template_timeout"
    assert v.columns["rewrite_prompt_tokens"].to_pylist()[0] > 0
