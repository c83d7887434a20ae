"""The report of a real small run with a rewrite stage on the tiny model: its content (every stage, every reason,
histograms, before/after, the corpus escaped) and the page in headless Chromium (no failed request, no console
error); and that a report is a function of its run (the same bytes from any process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.browser import chromium_missing, open_page
from tests.conftest import CPU_ENGINE, ROOT, write_sample

PLANTED = "banner = \"<script>alert('planted')</script>\"\n"
ANSWER = r"(### Score\nScore: [5-8]/10\n### Improved code\n```python\ndef (solve|main)\(data\):\n    return data \+ [1-9]\n```\n|I will not rewrite this\.)"  # noqa: E501


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, corpus_rows, tiny_model, ray_session):
    from pipeline.run.config import load_config
    from pipeline.view.report import run_with_report

    tmp = tmp_path_factory.mktemp("report")
    rows = [r for r in corpus_rows if 50 < len(r["content"]) < 400][:12]
    rows.insert(0, dict(rows[0], content=PLANTED, blob_id="planted", path="planted.py"))
    rows.append(dict(rows[1], content="def broken(:\n", blob_id="broken"))  # syntax_error
    rows.append(dict(rows[1], blob_id="copy"))  # exact_duplicate
    rows.append(dict(rows[2], content="value = compute(value)\n" * 300, blob_id="long"))  # prompt_too_long
    src = write_sample(rows, tmp / "in.parquet", row_group_size=4)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 1},
           "stages": [{"type": "exact_dedup", "normalize": "none"}, {"type": "syntax_filter"},
                      {"type": "rewrite", "name": "sgcr", "prompt": "code_sgcr", "model": str(tiny_model),
                       "concurrency": 1, "check_syntax": True, "max_tokens": 80, "guided_regex": ANSWER,
                       **CPU_ENGINE}],
           "export": {"enabled": True, "license": "mit"}}
    summary = run_with_report(load_config(None, raw=raw), tmp / "run", progress=False)  # as `swallow run`
    return tmp / "run", summary


@pytest.mark.shared_data
@pytest.mark.vllm
def test_report_content(report_run):
    from pipeline.store.ledger import collect_stats

    run_dir, summary = report_run
    page = (run_dir / "report.html").read_text()
    assert summary["report"] == str(run_dir / "report.html")  # written by the run itself
    stats = collect_stats(run_dir)["stages"]
    for s in stats:
        assert f">{s['stage']}<" in page
        for reason in s["reasons"]:
            assert f"<code>{reason}</code>" in page
    reasons = {r.split(":")[0] for s in stats for r in s["reasons"]}  # syntax_error:SyntaxError → syntax_error
    assert {"exact_duplicate", "syntax_error", "prompt_too_long"} <= reasons
    assert "Before and after" in page and "<h3>sgcr</h3>" in page and "<table class='sbs'>" in page
    for anchor in ("funnel", "reasons", "examples", "rewrites", "measurements", "throughput", "versions", "config"):
        assert f"<a href='#{anchor}'>" in page and f"<h2 id='{anchor}'>" in page  # a table of contents
    # a few rejected rows of every reason, as the stage saw them, with the detail it recorded
    examples = page[page.index("<h2 id='examples'>"):page.index("<h2 id='rewrites'>")]
    for s in stats:
        for reason in s["reasons"]:
            assert f"{s['stage']}: <code>{reason}</code>" in examples
    assert "def broken(:" in examples and "value = compute(value)" in examples and "prompt tokens &gt;" in examples
    # an LLM stage's rate is shown with its digits (0.3 rows/s is not "0")
    sgcr_row = re.search(r"<tr><td class='l'>sgcr</td>(.*?)</tr>", page).group(1)
    rows_per_s = re.findall(r"<td>([^<]*)</td>", sgcr_row)[-2]
    assert rows_per_s not in ("", "0") and float(rows_per_s.replace(",", "").lstrip("< ")) > 0
    assert "planted" in page and "<script>alert(" not in page and "&lt;script&gt;alert(" in page
    assert "<script" not in page.lower()  # the page itself runs no script
    for measured in ("sgcr_self_score", "sgcr_output_tokens"):
        assert f"{measured} (n=" in page  # a histogram per measured column
    # nothing to fetch: no attribute or stylesheet names an outside resource (URLs in the corpus text are text)
    assert not re.search(r"""(src|href|action|data)\s*=\s*["']?\s*(https?:)?//|url\(\s*["']?\s*(https?:)?//|@import""",
                         page, re.I)
    assert "<rdf:" not in page  # no matplotlib metadata block (a date, outside namespaces)
    assert "code_sgcr" in page and "vllm" in page  # prompts and versions


@pytest.mark.shared_data
@pytest.mark.vllm
def test_report_opens_in_headless_chromium(report_run, tmp_path):
    why = chromium_missing()
    if why:
        if os.environ.get("SWALLOW_REQUIRE_BROWSER"):  # .ci/run: this test must run there
            pytest.fail(why)
        pytest.skip(why)
    run_dir, _ = report_run
    got = open_page(run_dir / "report.html", tmp_path / "report.png")
    assert got["ready"] == "complete" and got["title"].startswith("run — swallow report")
    assert got["svg"] >= 3 and got["height"] > 1500
    assert got["failed"] == [] and got["console"] == []
    assert got["requests"] == [got["url"]]  # the page itself and nothing else
    assert (tmp_path / "report.png").stat().st_size > 20_000


#: Geometry of the first before/after table as the browser laid it out.
GEOMETRY = """
const t = document.querySelector('table.sbs'), r = t.getBoundingClientRect();
const content = document.querySelector('h1').getBoundingClientRect().width;
const cells = [...t.querySelectorAll('tbody tr:first-child td')].map(c => c.getBoundingClientRect().width);
const heads = [...t.querySelectorAll('thead th.code')].map(h => {
  const b = h.getBoundingClientRect(), st = getComputedStyle(h);
  return {text: h.innerText.trim(), w: b.width, h: b.height,
          shown: st.display !== 'none' && st.visibility === 'visible'};
});
return {table: r.width, content: content, cells: cells, heads: heads};
"""


@pytest.mark.shared_data
@pytest.mark.vllm
def test_before_and_after_use_the_width_in_chromium(report_run, tmp_path):
    """The side-by-side diff as a browser draws it: the table spans the page, the two code columns take most of it
    (line numbers stay narrow), the 'before' / 'after' labels are visible, and in a screenshot of the table the
    removed (red) and added (green) lines are coloured across each half of it."""
    why = chromium_missing()
    if why:
        if os.environ.get("SWALLOW_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    from PIL import Image

    run_dir, _ = report_run
    shot = tmp_path / "diff.png"
    got = open_page(run_dir / "report.html", probe=GEOMETRY, element=("table.sbs", shot))
    g = got["probe"]
    assert g["table"] >= 0.95 * g["content"]
    numbers_left, code_left, numbers_right, code_right = g["cells"]
    assert code_left >= 0.42 * g["table"] and code_right >= 0.42 * g["table"]
    assert numbers_left <= 0.06 * g["table"] and numbers_right <= 0.06 * g["table"]
    assert [h["text"] for h in g["heads"]] == ["before", "after"]
    assert all(h["shown"] and h["w"] > 100 and h["h"] > 8 for h in g["heads"])

    img = Image.open(shot).convert("RGB")
    w, h = img.size
    px = img.load()

    def coloured_share(rgb: tuple[int, int, int]) -> float:
        """Share of the screenshot's columns of pixels holding this background colour (± 6 per channel)."""
        cols = {x for x in range(w) for y in range(0, h, 2)
                if all(abs(a - b) <= 6 for a, b in zip(px[x, y], rgb))}
        return len(cols) / w

    removed, added = coloured_share((254, 226, 226)), coloured_share((220, 252, 231))  # td.del, td.add
    assert removed >= 0.4 and added >= 0.4, (removed, added)


@pytest.mark.fast
def test_the_report_is_a_function_of_the_run(tmp_path):
    """Drawn by processes with other string hash seeds, the report is the same bytes: the rejected examples follow
    the rows, not the order of a set of reasons (seen: a stage's reasons listed in another order each time), and
    no id, hash or timestamp that varies by process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.run.config import load_config
    from pipeline.view.report import run_with_report

    texts = ["x = 1\n", "def f(:\n", "if x:\n  a = 1\n   b = 2\n", "if x:\n\tif y:\n        pass\n", "y = (\n",
             "  z = 3\n", "if x:\n        a\n\tb\n"]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": texts, "path": [f"{i}.py" for i in range(len(texts))],
                             "repo": ["r"] * len(texts), "license": ["mit"] * len(texts),
                             "blob_id": [str(i) for i in range(len(texts))]}), src)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)]}, "stages": [{"type": "syntax_filter"}],
           "export": {"enabled": False}}
    summary = run_with_report(load_config(None, raw=raw), tmp_path / "run", progress=False, executor="inline")
    assert len(summary["stages"][1]["reasons"]) >= 3, summary["stages"][1]["reasons"]
    written = (tmp_path / "run" / "report.html").read_bytes()
    for seed in ("1", "2", "3", "4"):
        again = subprocess.run([sys.executable, "-c", "import sys; from pipeline.view.report import build; "
                                "sys.stdout.buffer.write(build(sys.argv[1]).encode())", str(tmp_path / "run")],
                               capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed}, cwd=ROOT, check=True)
        assert again.stdout == written, seed


MOVED_BEFORE = "import os\n\n\ndef helper():\n    return 1\n\n\ndef main():\n    print(helper())\n\n\nX = 3\n"
MOVED_AFTER = "import os\n\nX = 3\n\n\ndef main():\n    print(helper())\n\n\ndef helper():\n    return 1\n"


@pytest.mark.fast
def test_a_moved_block_is_moved_lines_and_an_edited_line_stays_paired():
    from pipeline.view.report_rows import _pairs

    a, b = MOVED_BEFORE.splitlines(), MOVED_AFTER.splitlines()
    kinds = [(a[i] if i is not None else b[j], k) for i, j, k in _pairs(a, b)]
    assert ("def helper():", "mov") in kinds and ("    return 1", "mov") in kinds
    assert not any(k == "del" and line.strip() for line, k in kinds if line.startswith("def "))
    edited = _pairs(["total = compute(a, b)"], ["total = compute(a, b, c)"])
    assert edited == [(0, 0, "chg")]


@pytest.mark.shared_data
@pytest.mark.vllm
def test_rejected_examples_are_open_with_their_paths_and_moves_show_in_chromium(report_run, tmp_path):
    """In the browser: every rejected-example section is open and names the row's file; a side-by-side diff of a
    moved block draws it as moved lines (blue on both sides), not a column of red beside a column of green."""
    why = chromium_missing()
    if why:
        if os.environ.get("SWALLOW_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    from PIL import Image

    from pipeline.view.report import CSS
    from pipeline.view.report_rows import side_by_side

    run_dir, _ = report_run
    probe = """
    const ex = document.getElementById('examples');
    const blocks = []; let el = ex.nextElementSibling;
    while (el && el.tagName !== 'H2') { if (el.matches('details.doc')) blocks.push(el); el = el.nextElementSibling; }
    return {blocks: blocks.length, open: blocks.filter(b => b.open).length,
            paths: blocks.filter(b => b.querySelector('b.path') && b.querySelector('b.path').offsetHeight > 0).length};
    """
    got = open_page(run_dir / "report.html", probe=probe)["probe"]
    assert got["blocks"] >= 3 and got["open"] == got["blocks"] and got["paths"] == got["blocks"], got
    page = tmp_path / "moved.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><style>{CSS}</style></head><body><h1>diff</h1>"
                    f"{side_by_side(MOVED_BEFORE, MOVED_AFTER)}</body></html>")
    shot = tmp_path / "moved.png"
    open_page(page, element=("table.sbs", shot))
    img = Image.open(shot).convert("RGB")
    w, h = img.size
    px = img.load()

    def rows_with(rgb) -> int:
        return sum(1 for y in range(h) if any(all(abs(p - q) <= 6 for p, q in zip(px[x, y], rgb))
                                               for x in range(0, w, 7)))

    blue, red = rows_with((219, 234, 254)), rows_with((254, 226, 226))  # td.mov, td.del
    assert blue > 2 * max(red, 1), (blue, red)
