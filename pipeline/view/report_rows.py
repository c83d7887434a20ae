"""The rows a report shows: documents before and after a rewrite, and a few rejected rows per reason.

Everything here is corpus text, so everything is escaped. A document is a ``<details>`` block (collapsible without
any script: the page runs none): a side-by-side diff whose two code columns share the full width (narrow line
numbers, long lines wrapped in their own column), and, for LLM stages, the model's whole answer folded away. Rows
are read only from shard files that verify (what the shard wrote), and from a bounded number of shards, so a
report of a large run stays fast and small.
"""

from __future__ import annotations

import difflib
import html
from collections import defaultdict

import pyarrow.parquet as pq

from pipeline.store.shards import KEPT, REJECTED, StageDir, TamperedError

MAX_LINES = 300        # per side of a diff: a longer document is cut (and says so)
EXCERPT_CHARS = 600    # of a rejected row's text and of a model's answer in the examples
MAX_SHARDS = 64        # shards read per stage for samples: enough for a few rows of every reason seen


def _rows(sd: StageDir, part: str, columns: list[str], need: str):
    """Tables of verified shard files of one part (kept / rejected) that have the column ``need``, with the wanted
    columns that exist (a file without it is not read: most stages rewrite nothing)."""
    for shard in sd.done_shards()[:MAX_SHARDS]:
        try:
            path = sd.verified(part, shard)
            names = pq.read_schema(path).names
            if need in names:
                yield pq.read_table(path, columns=[c for c in columns if c in names])
        except (TamperedError, OSError, KeyError):
            continue


def _pairs(a: list[str], b: list[str]) -> list[tuple[int | None, int | None, str]]:
    """Rows of a side-by-side diff: (line of a, line of b, kind) with kind ``eq``, ``chg`` (a line edited in place,
    paired with its closest counterpart), ``del`` / ``add`` (only on one side) and ``mov`` (a line that left its
    place and is found, unchanged, elsewhere on the other side). Aligned by difflib's opcodes; inside a replaced
    block, lines are paired only where they resemble each other (ratio >= 0.6), as ``ndiff`` does."""
    out: list[tuple[int | None, int | None, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [(i1 + k, j1 + k, "eq") for k in range(i2 - i1)]
            continue
        i, j = i1, j1
        while i < i2 or j < j2:
            if i < i2 and j < j2 and difflib.SequenceMatcher(None, a[i], b[j]).ratio() >= 0.6:
                out.append((i, j, "chg"))
                i, j = i + 1, j + 1
            elif i < i2 and (j >= j2 or not any(difflib.SequenceMatcher(None, a[i], b[x]).ratio() >= 0.6
                                                 for x in range(j, min(j2, j + 3)))):
                out.append((i, None, "del"))
                i += 1
            else:
                out.append((None, j, "add"))
                j += 1
    removed = {a[i].strip() for i, j, k in out if k == "del" and a[i].strip()}
    added = {b[j].strip() for i, j, k in out if k == "add" and b[j].strip()}
    moved = removed & added
    return [(i, j, "mov" if k in ("del", "add") and ((a[i] if k == "del" else b[j]).strip() in moved) else k)
            for i, j, k in out]


def side_by_side(before: str, after: str, label: str = "after") -> str:
    """An HTML table: line numbers and lines of ``before`` and ``after``, aligned by a line diff (``_pairs``):
    lines edited in place side by side, removed lines red, added green, moved lines blue on both sides."""
    a, b = before.splitlines(), after.splitlines()
    cut = len(a) > MAX_LINES or len(b) > MAX_LINES
    a, b = a[:MAX_LINES], b[:MAX_LINES]
    e = html.escape
    cls = {"eq": ("eq", "eq"), "chg": ("del", "add"), "del": ("del", "none"), "add": ("none", "add"),
           "mov": ("mov", "mov")}
    body = []
    for i, j, kind in _pairs(a, b):
        lc, rc = cls[kind]
        if kind == "mov":
            lc, rc = ("mov", "none") if j is None else ("none", "mov")
        left = (str(i + 1), e(a[i])) if i is not None else ("", "")
        right = (str(j + 1), e(b[j])) if j is not None else ("", "")
        body.append(f"<tr><td class='n'>{left[0]}</td><td class='code {lc}'>{left[1]}</td>"
                    f"<td class='n'>{right[0]}</td><td class='code {rc}'>{right[1]}</td></tr>")
    note = f"<p class='muted'>first {MAX_LINES} lines of each side</p>" if cut else ""
    return ("<table class='sbs'><colgroup><col class='n'><col><col class='n'><col></colgroup>"
            "<thead><tr><th class='n'></th><th class='code'>before</th><th class='n'></th>"
            f"<th class='code'>{html.escape(label)}</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>" + note)  # noqa: E501


#: Columns of a rewritten row shown with it, when the run has them: the grade, the rewrite's own checks, the lint
#: score before and after.
ROW_FACTS = ("llm_score", "llm_score_reason", "lint_score", "rewritten_lint_score")
FIDELITY = ("new_undefined", "lost_definitions", "changed_kind", "changed_signature", "lost_tests", "lost_public",
            "length_ratio", "repaired_imports")


def _facts(r: dict, stage: str) -> str:
    items = []
    for c in ROW_FACTS + tuple(f"{stage}_{f}" for f in FIDELITY):
        v = r.get(c)
        if v is None or v == "":
            continue
        label = c.removeprefix(f"{stage}_")
        items.append(f"{html.escape(label)}: <b>{html.escape(f'{v:g}' if isinstance(v, float) else str(v)[:300])}</b>")
    return f"<p class='muted facts'>{' · '.join(items)}</p>" if items else ""


def rewrite_samples(sd: StageDir, k: int = 4) -> list[str]:
    """Up to ``k`` documents of a stage that rewrote text (a ``text_before_<stage>`` column), each collapsible, the
    first one open: kept rows (input | output); where fewer than ``k`` were kept, rejected rows of an LLM stage
    (input | the model's answer, one per reason first), so a prompt that fails can be seen failing."""
    col, gen = f"text_before_{sd.name}", f"{sd.name}_generation"
    facts = list(ROW_FACTS) + [f"{sd.name}_{f}" for f in FIDELITY] + ["path", "source_file", "url"]
    rows: list[dict] = []
    for t in _rows(sd, KEPT, ["id", col, "text", gen, *facts], need=col):  # (a shard with no kept row: no such column)
        rows += t.slice(0, k - len(rows)).to_pylist()
        if len(rows) >= k:
            break
    rejected: list[dict] = []
    if len(rows) < k:
        for t in _rows(sd, REJECTED, ["id", col, "reason", "detail", gen, *facts], need=gen):
            rejected += [r for r in t.to_pylist() if r.get(gen)]
            if len(rejected) >= 8 * k:
                break
        seen: set[str] = set()
        first = [r for r in rejected if not (r["reason"] in seen or seen.add(r["reason"]))]  # one per reason
        rejected = (first + [r for r in rejected if r not in first])[:k - len(rows)]
    out = []
    for n, r in enumerate(rows + rejected):
        kept = "reason" not in r
        before, after = r.get(col) or "", (r["text"] if kept else r[gen]) or ""
        la, lb = len(before.splitlines()), len(after.splitlines())
        answer = ""
        if kept and r.get(gen):
            answer = ("<details class='answer'><summary>the model's whole answer</summary><pre>"
                      f"{html.escape(r[gen])}</pre></details>")
        label = "" if kept else f"<b>rejected: <code>{html.escape(r['reason'] or '')}</code></b> "
        if not kept and r.get("detail"):
            label += f"<span class='muted'>{html.escape(r['detail'][:200])}</span> "
        right = "after" if kept else "the model's answer"
        where = r.get("path") or r.get("source_file") or r.get("url")
        name = f"<code>{html.escape(str(where))}</code> " if where else ""
        out.append(f"<details class='doc'{' open' if n == 0 else ''}><summary>{label}{name}<code>"
                   f"{html.escape(r['id'])}</code> <span class='muted'>{la} lines, {len(before):,} chars before; "
                   f"{lb} lines, {len(after):,} chars {'after' if kept else 'in the answer'}</span></summary>"
                   f"{_facts(r, sd.name)}{side_by_side(before, after, right)}{answer}</details>")
    return out


def reason_examples(sd: StageDir, k: int = 3, reasons: set[str] | None = None, measures: list[str] = (),
                    limits: dict | None = None) -> dict[str, list[str]]:
    """Up to ``k`` rejected rows per reason: where the row came from (its path, file or URL) and its id, the
    stage's measurements of it beside their thresholds (``lint_score 5.6 < min_score 7``), the detail, an excerpt of
    the text and of the model's answer. A shard's reasons are read first and only the rows shown are converted;
    reading stops once every reason of ``reasons`` (the stage's, from its stats) has ``k``."""
    gen = f"{sd.name}_generation"
    found: dict[str, list[dict]] = defaultdict(list)
    for shard in sd.done_shards()[:MAX_SHARDS]:
        if reasons is not None and all(len(found.get(r, ())) >= k for r in reasons):
            break
        try:
            path = sd.verified(REJECTED, shard)
            names = pq.read_schema(path).names
            if "reason" not in names:
                continue
            picked = []
            for i, reason in enumerate(pq.read_table(path, columns=["reason"]).column(0).to_pylist()):
                reason = reason or "?"
                if len(found[reason]) + sum(1 for _, r in picked if r == reason) < k:
                    picked.append((i, reason))
            if not picked:
                continue
            cols = [c for c in ("id", "reason", "detail", "text", gen, "path", "source_file", "url", *measures)
                    if c in names]
            rows = pq.read_table(path, columns=cols).take([i for i, _ in picked]).to_pylist()
        except (TamperedError, OSError, KeyError):
            continue
        for (_, reason), r in zip(picked, rows):
            found[reason].append(r)
    e = html.escape
    out: dict[str, list[str]] = {}
    for reason, rows in found.items():
        items = []
        for r in rows:
            text = (r.get("text") or "")
            where = r.get("path") or r.get("source_file") or r.get("url")
            parts = ["<div class='ex'>" + (f"<b class='path'>{e(str(where))}</b> " if where else "")
                     + f"<code>{e(str(r.get('id')))}</code>"]
            values = []
            for c in measures:
                v = r.get(c)
                if v is None:
                    continue
                bounds = "".join(f" ({key} {limit:g})" for key, limit in (limits or {}).get(c, []))
                values.append(f"{e(c)} <b>{v:.4g}</b>{e(bounds)}" if isinstance(v, float) else f"{e(c)} <b>{v}</b>"
                              f"{e(bounds)}")
            if values:
                parts.append(f" <span class='measured'>{' · '.join(values)}</span>")
            if r.get("detail"):
                parts.append(f" <span class='muted'>{e(r['detail'][:300])}</span>")
            parts.append(f"<pre>{e(text[:EXCERPT_CHARS])}{'…' if len(text) > EXCERPT_CHARS else ''}</pre>")
            if r.get(gen):
                answer = r[gen]
                parts.append(f"<p class='muted'>the model's answer ({len(answer):,} chars):</p>"
                             f"<pre>{e(answer[:EXCERPT_CHARS])}{'…' if len(answer) > EXCERPT_CHARS else ''}</pre>")
            items.append("".join(parts) + "</div>")
        out[reason] = items
    return out
