"""Fidelity of a code rewrite to its input, read without running either (stages/rewrite/fidelity.py), and the
extraction rules a real model's answers needed (list-indented fences, markup around markers, copied examples)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stages.rewrite import fidelity
from stages.rewrite.prompts import extract, fenced_blocks, load_prompt

pytestmark = pytest.mark.fast

ORIGINAL = '''"""Queue helpers."""
from collections import deque
from typing import Tuple
import os

LIMIT = 3


def window(items, size=2, *, step=1):
    q = deque(maxlen=size)
    for x in items:
        q.append(x)
        yield tuple(q)


async def fetch(url, **headers):
    return url


class Store:
    def get(self, key, default=None):
        return os.environ.get(key, default)


def test_window():
    assert list(window([1, 2]))
'''


def findings(original: str, rewrite: str, repair: bool = False) -> tuple[str, fidelity.Fidelity]:
    return fidelity.check_batch([original], [rewrite], repair=repair)[0]


def test_a_faithful_rewrite_passes_every_check():
    rewrite = ORIGINAL.replace("def window(items, size=2, *, step=1):",
                               "def window(items: list, size: int = 2, *, step: int = 1, extra=None):")
    _, f = findings(ORIGINAL, rewrite)
    assert f.failed(fidelity.CHECKS) is None
    assert 0.9 < f.length_ratio < 1.2


def test_each_behaviour_change_is_found():
    # the import of deque dropped (the name is still used), the generator turned into a plain function, a
    # parameter renamed (a keyword call breaks), **headers dropped, the tests and a constant gone
    rewrite = '''"""Queue helpers."""
from typing import Tuple
import os


def window(values, size=2, *, step=1):
    q = deque(maxlen=size)
    return [tuple(q)]


async def fetch(url):
    return url


class Store:
    def get(self, key, default=None):
        return os.environ.get(key, default)
'''
    _, f = findings(ORIGINAL, rewrite)
    assert f.new_undefined == ["deque"]
    assert f.changed_kind == ["window (generator -> function)"]
    assert f.changed_signature == ["fetch"]
    assert f.lost_definitions == ["test_window"] and f.lost_tests == ["1 test function"]
    assert f.lost_public == ["LIMIT"]
    assert f.failed(["new_undefined", "lost_tests"]) == "new_undefined_name"
    assert f.failed(["lost_tests"]) == "lost_tests"
    assert "deque" in f.detail("new_undefined")


def test_a_stub_in_place_of_an_import_is_found():
    original = "from .cartan_type import CartanType\n\n__all__ = ['CartanType']\n"
    rewrite = "from .cartan_type import CartanType\n\n\nclass CartanType:\n    pass\n\n\n__all__ = ['CartanType']\n"
    _, f = findings(original, rewrite)
    assert f.shadowed_imports == ["CartanType"] and f.failed(["shadowed_imports"]) == "shadowed_import"


def test_a_rename_is_no_lost_definition():
    """SGCR asks for better names: ``getfiles`` -> ``get_files``, ``perfect_square`` -> ``is_perfect_square``."""
    original = "def getfiles(d):\n    return d\n\n\ndef perfect_square(n):\n    return n\n\n\nclass A:\n" \
               "    def makex(self):\n        return 1\n"
    rewrite = "def get_files(d):\n    return d\n\n\ndef is_perfect_square(n):\n    return n\n\n\nclass A:\n" \
              "    def make_x(self):\n        return 1\n"
    _, f = findings(original, rewrite)
    assert f.lost_definitions == [] and sorted(f.renamed) == ["A.makex -> A.make_x", "getfiles -> get_files",
                                                              "perfect_square -> is_perfect_square"]
    _, g = findings(original, "def get_files(d):\n    return d\n")  # really gone
    assert "perfect_square" in g.lost_definitions and "A" in g.lost_definitions


def test_an_undefined_name_the_input_already_lacked_is_not_new():
    original = "def f():\n    return helper(1)\n"
    rewrite = "def f() -> int:\n    \"\"\"Doc.\"\"\"\n    return helper(1)\n"
    _, f = findings(original, rewrite)
    assert f.new_undefined == [] and f.failed(fidelity.CHECKS) is None


def test_signatures():
    def params(src: str):
        import ast

        return fidelity._params(ast.parse(src).body[0])

    ok = fidelity.signature_compatible
    assert ok(params("def f(a, b=1): pass"), params("def f(a, b=1, c=2): pass"), False)
    assert ok(params("def f(a, b=1): pass"), params("def f(a, b=2): pass"), False)  # a default may change
    assert not ok(params("def f(a, b=1): pass"), params("def f(a, b): pass"), False)  # more required
    assert not ok(params("def f(a, b): pass"), params("def f(a): pass"), False)  # fewer positional
    assert not ok(params("def f(a, b): pass"), params("def f(a, c): pass"), False)  # keyword b gone
    assert ok(params("def f(a, b): pass"), params("def f(a, c, **kw): pass"), False)
    assert ok(params("def m(self, x): pass"), params("def m(this, x): pass"), True)  # self may be renamed
    assert not ok(params("def f(*args): pass"), params("def f(a): pass"), False)
    assert not ok(params("def f(a): pass"), params("def f(a, *, k): pass"), False)  # a new required keyword


def test_repair_puts_back_the_inputs_own_import():
    rewrite = ORIGINAL.replace("from collections import deque\n", "")
    fixed, f = findings(ORIGINAL, rewrite, repair=True)
    assert f.repaired_imports == ["from collections import deque"] and f.new_undefined == []
    assert fixed.startswith('"""Queue helpers."""\nfrom collections import deque\n')
    compile(fixed, "x", "exec")
    # a name the input never imported cannot be repaired
    _, g = findings(ORIGINAL, rewrite.replace("q = deque", "q = heapq.deque"), repair=True)
    assert g.new_undefined == ["heapq"]


def test_rows_of_a_batch_do_not_see_each_other():
    # two files in one ruff run: names defined in one are undefined in the other
    out = fidelity.undefined_names(["import os\nos.sep\n", "os.sep\n", None, "def f(:\n"])
    assert out[0] == set() and out[1] == {"os"} and out[2] is None and out[3] == set()


def test_the_stage_turns_findings_into_columns_and_reasons():
    """The rewrite stage's check on rows, without an engine: rejected rows keep their input, columns for all."""
    from stages.rewrite.stage import Rewrite

    stage = Rewrite(prompt="code_sgcr", model="unused", name="sgcr", check_syntax=True)
    texts = [ORIGINAL, ORIGINAL, "x = 1\n"]
    rewritten = [ORIGINAL.replace("def test_window", "def check_window"),
                 ORIGINAL.replace("    q = deque", "    q = Deque"), "x = 1\n"]
    reasons, details = [None, None, "truncated"], [None] * 3
    cols = stage.check_fidelity(texts, rewritten, reasons, details, [0, 1, 2])
    assert reasons == ["lost_definition", "new_undefined_name", "truncated"]
    assert rewritten[:2] == texts[:2]  # a rejected row keeps its input
    assert cols["sgcr_lost_tests"].to_pylist()[0] == "1 test function"
    assert cols["sgcr_new_undefined"].to_pylist() == [None, "Deque", None]
    assert cols["sgcr_length_ratio"].to_pylist()[2] is None  # rows that produced no code get no findings
    assert set(cols) == set(stage.fidelity_columns()) and set(cols) <= stage.makes()
    assert isinstance(cols["sgcr_length_ratio"], pa.Array)


# ------------------------------------------------------------------------------------------- extraction rules

def test_a_fence_indented_in_a_list_item_is_dedented():
    gen = "### Improved code\n1. The program:\n   ```python\n   def f():\n       return 1\n   ```\n"
    code = extract(gen, load_prompt("code_sgcr").extract)
    assert code == "def f():\n    return 1\n"
    compile(code, "x", "exec")


def test_headings_and_markers_with_markup_and_another_case():
    sgcr = load_prompt("code_sgcr").extract
    assert extract("## **Improved Code**\n```python\nx = 2\n```\n", sgcr) == "x = 2\n"
    math = load_prompt("math_rewrite").extract
    assert extract("**Rewritten:**\n**Problem.** Solve $x$.", math) == "**Problem.** Solve $x$."
    assert extract("Rewritten: **Problem.** x", math) == "**Problem.** x"


def test_fenced_blocks_ignores_unclosed_blocks():
    assert fenced_blocks("```py\na\n```\n```\nb\n```\n```python\nunclosed\n") == [("py", "a\n"), ("", "b\n")]
    assert fenced_blocks("```x\n" * 1000) == []  # openers only (the old regex was quadratic here: tests/hostile)


def test_a_copy_of_the_prompts_own_example_is_found():
    p = load_prompt("math_rewrite")
    example = p.few_shot[0]["assistant"]
    assert p.copied_example(extract(example, p.extract)) is not None
    assert p.copied_example("**Problem.** Find the area of a circle of radius 2. **Solution.** $4\\pi$.") is None
