"""``swallow report RUN``: one self-contained HTML page of a run, for people who judge a corpus by looking at it.

The page has no external resource (charts are inline SVG: ``pipeline/draw/charts.py``) and shows the corpus
escaped (it is untrusted HTML/JavaScript). Sections: the funnel (documents and tokens in/kept/rejected per stage),
rejection reasons per stage, histograms of every numeric column a stage added (scores, ratios, lengths, cluster
sizes, token counts — whatever the stages measured), wall time and throughput per stage and per worker host,
versions, models and prompt hashes, and for every stage that rewrote text (a ``text_before_<stage>`` column) a
sample of documents before and after, side by side (``pipeline/view/report_rows.py``), and a few rejected rows of
every reason. A table of contents leads to each section. It reads only the run directory and knows no stage type.
"""

from __future__ import annotations

import html
import logging
import random
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.draw.charts import KEPT_COLOR, REJECTED_COLOR, hbars, histogram, reason_color
from pipeline.store.ledger import collect_stats, list_stages
from pipeline.store.shards import KEPT, REJECTED, StageDir, TamperedError
from pipeline.view.report_rows import reason_examples, rewrite_samples

log = logging.getLogger("swallow")
SAMPLE_ROWS = 20_000  # rows per stage read for histograms (a deterministic sample of shards)
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1500px;
padding:0 16px;color:#1d2330;line-height:1.45}
h1{font-size:26px;margin-bottom:4px}
h2{font-size:20px;border-bottom:1px solid #d8dde6;padding-bottom:4px;margin-top:32px}
h3{font-size:16px;margin:18px 0 6px} table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #d8dde6;padding:3px 8px;text-align:right} th{background:#f2f4f8} td.l,th.l{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px} .card{border:1px solid #d8dde6;border-radius:6px;padding:8px}
.muted{color:#6b7280;font-size:13px} .warn{background:#fef2f2;color:#991b1b;padding:8px}
pre{white-space:pre-wrap;word-break:break-word;font-size:12px;margin:0;background:#f8fafc;padding:6px}
nav.toc{background:#f8fafc;border:1px solid #d8dde6;border-radius:6px;padding:6px 12px;font-size:14px}
nav.toc a{margin-right:14px}
details.doc{border:1px solid #d8dde6;border-radius:6px;margin:8px 0;padding:4px 8px}
details summary{cursor:pointer;padding:2px 0} details.answer{margin-top:6px}
table.sbs{width:100%;table-layout:fixed;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
table.sbs col.n{width:3.2em} table.sbs th{text-align:left;font-family:system-ui,sans-serif;font-size:13px}
table.sbs td{text-align:left;vertical-align:top;padding:0 6px;border:none;border-left:1px solid #e5e7eb}
table.sbs td.code{white-space:pre-wrap;word-break:break-word} table.sbs td.n{color:#9ca3af;text-align:right}
td.del{background:#fee2e2} td.add{background:#dcfce7} td.none{background:#f3f4f6} td.mov{background:#dbeafe}
p.facts{margin:4px 0} span.measured{font-size:13px} b.path{font-size:13px}
div.ex{border-left:3px solid #d8dde6;margin:6px 0;padding-left:8px}
"""


def funnel_svg(stages: list[dict]) -> str:
    """Documents per stage (kept, and rejected by reason) beside text (MB kept and rejected) or tokens."""
    names = [s["stage"] for s in stages]
    docs = [("kept", KEPT_COLOR, [s["kept"] for s in stages])]
    docs += [(reason, reason_color(reason), [s["reasons"].get(reason, 0) for s in stages])
             for reason in sorted({r for s in stages for r in s["reasons"]})]
    toks_in = [s["counters"].get("tokens_in", 0) for s in stages]
    toks = [s["counters"].get("tokens", s["counters"].get("output_tokens", 0)) for s in stages]
    if any(toks) and not any(toks_in):
        right = hbars(names, [("tokens (tokenize) / generated (rewrite)", "#6366f1", toks)], "tokens")
    else:
        right = hbars(names, [("kept", KEPT_COLOR, [s["bytes_kept"] / 1e6 for s in stages]),
                              ("rejected", REJECTED_COLOR, [s["bytes_rejected"] / 1e6 for s in stages])],
                      "text, MB", " MB")
    return (f"<div class='grid'><div class='card'>{hbars(names, docs, 'documents: kept, and rejected by reason')}"
            f"</div><div class='card'>{right}</div></div>")


def _numeric(field: pa.Field) -> bool:
    return pa.types.is_integer(field.type) or pa.types.is_floating(field.type)


def stage_class(sd: StageDir):
    """The component class of a stage folder (by the type its stage.json names), or None."""
    from pipeline.run import plugins

    cfg = sd.config() or {}
    for role in ("stage", "source"):
        try:
            cls = plugins.component_class(role, cfg.get("type", ""))
        except Exception:  # noqa: BLE001 - a type this install lacks: no declarations, plot what is numeric
            cls = None
        if cls is not None:
            return cls
    return None


def thresholds(sd: StageDir, column: str) -> list[tuple[str, float]]:
    """(setting, value) of the stage's settings that bound ``column`` (its class's ``thresholds`` declaration), as
    configured; a setting left unset (None) bounds nothing."""
    cls = stage_class(sd)
    cfg = sd.config() or {}
    out = []
    for key in getattr(cls, "thresholds", {}).get(column, ()):
        value = cfg.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append((key, float(value)))
    return out


def measured_columns(sd: StageDir, prev_cols: set[str]) -> tuple[list[str], set[str]]:
    """The numeric columns this stage added that are measurements (not the offsets and ids its class declares
    ``not_measured``), and all of its columns."""
    cls = stage_class(sd)
    skip = set(getattr(cls, "not_measured", ())) if cls is not None else set()
    for shard in sd.done_shards():
        for part in (KEPT, REJECTED):
            try:
                schema = pq.read_schema(sd.verified(part, shard))
            except (TamperedError, OSError, KeyError, pa.ArrowException):
                continue
            cols = set(schema.names)
            return sorted(f.name for f in schema if f.name not in prev_cols and f.name not in skip
                          and _numeric(f)), cols
    return [], prev_cols


def tier_cuts(stage_dirs: list[StageDir], column: str) -> list[tuple[str, float]]:
    """Where later stages' ``where:`` split ``column`` into tiers (SwallowCode-v2: ``llm_score < 3`` dropped, 3-7
    rewritten, 8-10 kept as they are)."""
    from pipeline.core.where import cut_points

    out = []
    for sd in stage_dirs:
        expr = (sd.config() or {}).get("where")
        if expr and column in expr:
            try:
                out += [(f"{sd.name} where", v) for v in cut_points(expr, column)]
            except Exception:  # noqa: BLE001 - an expression this version cannot read: no line
                continue
    return out


def histograms(sd: StageDir, measured: list[str], all_dirs: list[StageDir] = ()) -> list[str]:
    """SVG histograms of the stage's measured columns, kept rows and rejected rows apart, with the stage's
    thresholds for each drawn where it has them."""
    shards = sd.done_shards()
    rng = random.Random(0)
    rng.shuffle(shards)
    values: dict[str, dict[str, list]] = {c: {KEPT: [], REJECTED: []} for c in measured}
    n = 0
    for shard in shards:
        try:  # only files that are what the shard wrote; of them only the measured columns, not the text
            for part in (KEPT, REJECTED):
                with pq.ParquetFile(sd.verified(part, shard)) as pf:
                    names = set(pf.schema_arrow.names)
                    t = pf.read(columns=[c for c in measured if c in names])
                for c in t.column_names:
                    values[c][part] += [v for v in t.column(c).to_pylist() if v is not None]
                n += t.num_rows
        except (TamperedError, OSError, KeyError, pa.ArrowException):
            continue
        if n >= SAMPLE_ROWS:
            break
    series = [(c, v) for c, v in values.items() if len(set(v[KEPT] + v[REJECTED])) >= 2]
    cuts = {name: thresholds(sd, name) + tier_cuts(list(all_dirs), name) for name, _ in series}
    return [histogram(f"{name} (n={len(v[KEPT]) + len(v[REJECTED]):,})",
                      [("kept", KEPT_COLOR, v[KEPT]), ("rejected", REJECTED_COLOR, v[REJECTED])], cuts[name],
                      bins=min(40, max(5, len(set(v[KEPT] + v[REJECTED])))))
            for name, v in series]


def _rate(amount: float, seconds: float) -> str:
    """amount per second with the digits that matter: an LLM stage does 0.1 rows/s, a filter 10,000."""
    if not seconds:
        return ""
    r = amount / seconds
    if r >= 100:
        return f"{r:,.0f}"
    return f"{r:.3g}" if r >= 0.001 else ("0" if r == 0 else "< 0.001")


def throughput(stages_dirs: list[StageDir]) -> list[dict]:
    rows = []
    for sd in stages_dirs:
        per_host: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
        for shard in sd.done_shards():
            try:
                st = sd.verified_stats(shard)
            except (TamperedError, OSError, ValueError, KeyError):
                continue
            h = per_host[st.get("host", "?")]
            h[0] += st.get("in", 0)
            h[1] += st.get("wall_s", 0.0)
            h[2] += 1
        for host, (n, wall, shards) in sorted(per_host.items()):
            rows.append({"stage": sd.name, "host": host, "shards": shards, "rows": n, "worker_s": wall,
                         "rows_per_worker_s": n / wall if wall else 0.0})
    return rows


def build(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    summary = collect_stats(run_dir)
    stats = summary["stages"]
    dirs = list_stages(run_dir)
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(run_dir.name)} — swallow report"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>Run report: {e(run_dir.name)}</h1>",
             f"<p class='muted'>{e(str(run_dir.resolve()))} — {stats[0]['in'] if stats else 0:,} records in, "
             f"{stats[-1]['kept'] if stats else 0:,} kept at the end. Every record is kept or rejected with a reason "
             "(<code>swallow verify</code> checks it).</p>"]
    if summary.get("unverified"):
        parts.append(f"<p class='warn'>{len(summary['unverified'])} shard(s) changed after they finished and are left "
                     f"out of every figure here: {e(', '.join(summary['unverified'][:10]))}. Run "
                     "<code>swallow verify</code>.</p>")
    stage_reasons = {s["stage"]: set(s["reasons"]) for s in stats}
    measured: dict[str, list[str]] = {}
    prev: set[str] = set()
    for sd in dirs:
        measured[sd.name], prev = measured_columns(sd, prev)
    examples = {sd.name: reason_examples(sd, reasons=stage_reasons.get(sd.name), measures=measured[sd.name],
                                         limits={c: thresholds(sd, c) for c in measured[sd.name]}) for sd in dirs}
    rewrites = [(sd, d) for sd, d in ((sd, rewrite_samples(sd)) for sd in dirs) if d]
    # the convention of decontamination stages: contaminated:<set> (n-grams), near_copy:<set> (MinHash)
    decont = [(s["stage"], reason.split(":", 1)[0], reason.split(":", 1)[1], n, s["in"]) for s in stats
              for reason, n in s["reasons"].items() if reason.startswith(("contaminated:", "near_copy:"))]
    toc = [("funnel", "Funnel"), ("reasons", "Rejection reasons")] + \
        ([("decontamination", "Decontamination")] if decont else []) + [("examples", "Rejected examples")] + \
        ([("rewrites", "Before and after")] if rewrites else []) + \
        [("measurements", "Measurements"), ("throughput", "Time and throughput"), ("versions", "Versions")] + \
        ([("config", "Configuration")] if (run_dir / "run.yaml").exists() else [])
    parts.append("<nav class='toc'>" + "".join(f"<a href='#{a}'>{t}</a>" for a, t in toc) + "</nav>")
    parts.append("<h2 id='funnel'>Funnel</h2>" + funnel_svg(stats))
    parts.append("<table><tr><th class='l'>stage</th><th>in</th><th>kept</th><th>rejected</th><th>in MB</th>"
                 "<th>kept MB</th><th>tokens</th><th>elapsed s</th><th>rows/s</th><th>MB/s</th></tr>")
    for s in stats:
        tokens = s["counters"].get("tokens", s["counters"].get("output_tokens"))
        el = s["elapsed_s"] or s["wall_s"]
        mb_in = (s["bytes_kept"] + s["bytes_rejected"]) / 1e6
        note = " <span class='muted'>(received no rows: the stages before it kept none)</span>" if not s["in"] else ""
        parts.append(f"<tr><td class='l'>{e(s['stage'])}{note}</td><td>{s['in']:,}</td><td>{s['kept']:,}</td>"
                     f"<td>{s['rejected']:,}</td><td>{mb_in:.2f}</td><td>{s['bytes_kept'] / 1e6:.2f}</td>"
                     f"<td>{'' if tokens is None else f'{int(tokens):,}'}</td><td>{el:.1f}</td>"
                     f"<td>{_rate(s['in'], el)}</td><td>{_rate(mb_in, el)}</td></tr>")
    parts.append("</table>")
    parts.append("<h2 id='reasons'>Rejection reasons</h2><table><tr><th class='l'>stage</th><th class='l'>reason"
                 "</th><th>records</th><th>share of stage input</th></tr>")
    for s in stats:
        for reason, n in s["reasons"].items():
            parts.append(f"<tr><td class='l'>{e(s['stage'])}</td><td class='l'><code>{e(reason)}</code></td>"
                         f"<td>{n:,}</td><td>{n / max(s['in'], 1):.1%}</td></tr>")
        for key, n in s["counters"].items():  # rows a rule filter kept without judging (a language it cannot)
            if key.startswith("unjudged_"):
                parts.append(f"<tr><td class='l'>{e(s['stage'])}</td><td class='l'><em>kept unjudged: language "
                             f"{e(key[len('unjudged_'):])}</em></td><td>{int(n):,}</td>"
                             f"<td>{n / max(s['in'], 1):.1%}</td></tr>")
    parts.append("</table>")
    if decont:
        parts.append("<h2 id='decontamination'>Decontamination</h2><p class='muted'>Rows rejected for holding "
                     "benchmark text, per stage and benchmark set: <code>contaminated</code> shares n-grams with an "
                     "item, <code>near_copy</code> is a near copy of one (the examples below name the item and the "
                     "n-gram).</p><table><tr><th class='l'>stage</th><th class='l'>benchmark set</th>"
                     "<th>n-gram hits</th><th>near copies</th><th>share of stage input</th></tr>")
        per: dict[tuple[str, str], list[int]] = {}
        for stage, kind, name, n, n_in in decont:
            row = per.setdefault((stage, name), [0, 0, n_in])
            row[0 if kind == "contaminated" else 1] += n
        for (stage, name), (hits, near, n_in) in per.items():
            parts.append(f"<tr><td class='l'>{e(stage)}</td><td class='l'>{e(name)}</td><td>{hits:,}</td>"
                         f"<td>{near:,}</td><td>{(hits + near) / max(n_in, 1):.2%}</td></tr>")
        parts.append("</table>")
    parts.append("<h2 id='examples'>Rejected examples</h2><p class='muted'>A few rejected rows of every reason, "
                 "as the stage saw them (an excerpt, escaped), with the detail it recorded and, for LLM stages, "
                 "the model's answer.</p>")
    for s in stats:
        for reason, items in examples.get(s["stage"], {}).items():
            parts.append(f"<details class='doc' open><summary>{e(s['stage'])}: <code>{e(reason)}</code> "
                         f"<span class='muted'>({s['reasons'].get(reason, 0):,} rows)</span></summary>"
                         + "".join(items) + "</details>")
    if rewrites:
        parts.append("<h2 id='rewrites'>Before and after</h2><p class='muted'>Kept documents of each stage that "
                     "rewrote text: the input on the left, the output on the right, changed lines coloured. Where "
                     "an LLM stage kept fewer, rejected ones too, with the model's answer on the right.</p>")
        for sd, docs in rewrites:
            parts.append(f"<h3>{e(sd.name)}</h3>" + "".join(docs))
    parts.append("<h2 id='measurements'>Measurements</h2><p class='muted'>Histograms of every measurement each "
                 "stage added (offsets and ids are none), kept rows and rejected rows apart, with the stage's "
                 "thresholds dashed (a sample of up to 20,000 rows per stage).</p>")
    for sd in dirs:
        svgs = histograms(sd, measured[sd.name], dirs)
        if svgs:
            parts.append(f"<h3>{e(sd.name)}</h3><div class='grid'>" +
                         "".join(f"<div class='card'>{svg}</div>" for svg in svgs) + "</div>")
    parts.append("<h2 id='throughput'>Time and throughput</h2><table><tr><th class='l'>stage</th>"
                 "<th class='l'>worker host</th><th>shards</th><th>rows</th><th>worker seconds</th>"
                 "<th>rows per worker-second</th></tr>")
    for r in throughput(dirs):
        parts.append(f"<tr><td class='l'>{e(r['stage'])}</td><td class='l'>{e(r['host'])}</td><td>{r['shards']}</td>"
                     f"<td>{r['rows']:,}</td><td>{r['worker_s']:.1f}</td><td>{_rate(r['rows'], r['worker_s'])}</td>"
                     "</tr>")
    parts.append("</table>")
    parts.append("<h2 id='versions'>Versions, models and prompts</h2><table><tr><th class='l'>stage</th>"
                 "<th class='l'>facts</th></tr>")
    for s in stats:
        if s["info"]:
            facts = ", ".join(f"{k}: {v}" for k, v in sorted(s["info"].items()) if v is not None)
            parts.append(f"<tr><td class='l'>{e(s['stage'])}</td><td class='l'>{e(facts)}</td></tr>")
    parts.append("</table>")
    run_yaml = run_dir / "run.yaml"
    if run_yaml.exists():
        parts.append("<h2 id='config'>Configuration</h2><pre>" + e(run_yaml.read_text()) + "</pre>")
    parts.append("</body></html>")
    return "".join(parts)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    from pipeline.store.shards import write_atomic_bytes

    out = Path(out) if out else Path(run_dir) / "report.html"
    write_atomic_bytes(out, build(run_dir).encode("utf-8"))
    return out


def run_with_report(cfg, run_dir: str | Path, **kw) -> dict:
    """``run_pipeline`` (keywords passed on), then the run's report: the summary gains ``report`` (its path) or
    ``report_error``. The data is written and verified by then: a report that fails is said, never the run's
    failure."""
    from pipeline.run.runner import run_pipeline

    summary = run_pipeline(cfg, run_dir, **kw)
    try:
        summary["report"] = str(write_report(run_dir))
    except Exception as exc:  # noqa: BLE001
        summary["report_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        log.error("the report could not be written (%s); the run itself is complete: try `swallow report %s`",
                  summary["report_error"], run_dir)
    return summary
