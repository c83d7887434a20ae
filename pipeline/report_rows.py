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

from pipeline.shards import KEPT, REJECTED, StageDir, TamperedError

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


def side_by_side(before: str, after: str, label: str = "after") -> str:
    """An HTML table: line numbers and lines of ``before`` and ``after``, aligned by difflib, changes coloured."""
    a, b = before.splitlines(), after.splitlines()
    cut = len(a) > MAX_LINES or len(b) > MAX_LINES
    a, b = a[:MAX_LINES], b[:MAX_LINES]
    e = html.escape
    body = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            left = (str(i + 1), e(a[i]), "eq" if tag == "equal" else "del") if i < i2 else ("", "", "none")
            right = (str(j + 1), e(b[j]), "eq" if tag == "equal" else "add") if j < j2 else ("", "", "none")
            body.append(f"<tr><td class='n'>{left[0]}</td><td class='code {left[2]}'>{left[1]}</td>"
                        f"<td class='n'>{right[0]}</td><td class='code {right[2]}'>{right[1]}</td></tr>")
    note = f"<p class='muted'>first {MAX_LINES} lines of each side</p>" if cut else ""
    return ("<table class='sbs'><colgroup><col class='n'><col><col class='n'><col></colgroup>"
            "<thead><tr><th class='n'></th><th class='code'>before</th><th class='n'></th>"
            f"<th class='code'>{html.escape(label)}</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>" + note)


def rewrite_samples(sd: StageDir, k: int = 4) -> list[str]:
    """Up to ``k`` documents of a stage that rewrote text (a ``text_before_<stage>`` column), each collapsible, the
    first one open: kept rows (input | output); where fewer than ``k`` were kept, rejected rows of an LLM stage
    (input | the model's answer, one per reason first), so a prompt that fails can be seen failing."""
    col, gen = f"text_before_{sd.name}", f"{sd.name}_generation"
    rows: list[dict] = []
    for t in _rows(sd, KEPT, ["id", col, "text", gen], need=col):  # (a shard with no kept row: no such column)
        rows += t.slice(0, k - len(rows)).to_pylist()
        if len(rows) >= k:
            break
    rejected: list[dict] = []
    if len(rows) < k:
        for t in _rows(sd, REJECTED, ["id", col, "reason", gen], need=gen):
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
        right = "after" if kept else "the model's answer"
        out.append(f"<details class='doc'{' open' if n == 0 else ''}><summary>{label}<code>{html.escape(r['id'])}"
                   f"</code> <span class='muted'>{la} lines, {len(before):,} chars before; {lb} lines, "
                   f"{len(after):,} chars {'after' if kept else 'in the answer'}</span></summary>"
                   f"{side_by_side(before, after, right)}{answer}</details>")
    return out


def reason_examples(sd: StageDir, k: int = 3, reasons: set[str] | None = None) -> dict[str, list[str]]:
    """Up to ``k`` rejected rows per reason: id, detail, an excerpt of the text and of the model's answer. A shard's
    reasons are read first and only the rows shown are converted; reading stops once every reason of ``reasons``
    (the stage's, from its stats) has ``k``."""
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
            cols = [c for c in ("id", "reason", "detail", "text", gen) if c in names]
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
            parts = [f"<div class='ex'><code>{e(str(r.get('id')))}</code>"]
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
