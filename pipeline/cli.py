"""The ``swallow`` command line: run a pipeline, run one stage, verify a run, print its stats.

Every stage type is also a subcommand (``swallow lint_filter --input ... --output ...``) whose options are the
stage's config keys, generated from the stage class, so ``--help`` always matches what the config accepts.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import re
import sys
from pathlib import Path

import yaml

from pipeline.run import plugins
from pipeline.run.config import ConfigError, load_config

EPILOG = """examples:
  swallow run configs/demo_code.yaml --output runs/demo
  swallow status runs/demo --watch          (from another terminal)
  swallow report runs/demo
  swallow run configs/swallow_code.yaml --set source.paths=[data/*.parquet] --set stages.lint_filter.min_score=8
  swallow syntax_filter --input corpus.parquet --output runs/syntax
  swallow verify runs/demo
  swallow stats runs/demo --json
  swallow compare runs/before runs/after    (the same verdicts and columns in every stage?)
"""


def field_docs(cls) -> dict[str, str]:
    """The ``#:`` comments above each field of a pydantic class and its bases (used as --help text)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        group = ""  # a comment above consecutive fields documents each of them (num_cpus, num_gpus)
        for line in lines:
            s = line.strip()
            if s.startswith("#:"):
                pending.append(s[2:].strip())
                continue
            m = re.match(r"(\w+)\s*:", s)
            if m and (pending or group) and line.startswith("    ") and not line.startswith("     "):
                group = " ".join(pending) if pending else group
                docs[m.group(1)] = group
            elif not m:
                group = ""
            pending = []
    return docs


def add_component_options(parser: argparse.ArgumentParser, cls, prefix: str = "", docs: bool = True) -> None:
    docs = field_docs(cls) if docs else {}
    for name, field in cls.model_fields.items():
        if name in ("paths",):
            continue
        help_text = docs.get(name, "")
        suffix = "(required)" if field.is_required() else f"(default: {field.default!r})"
        text = f"{help_text} {suffix}".strip().replace("%", "%%")  # argparse formats help with %
        flag = f"--{name.replace('_', '-')}"
        if field.annotation is bool:  # a switch: --math / --no-math
            parser.add_argument(flag, dest=f"{prefix}{name}", default=None, action=argparse.BooleanOptionalAction,
                                help=text)
        else:
            parser.add_argument(flag, dest=f"{prefix}{name}", default=None, metavar="VALUE", help=text)


def cmd_run(args) -> int:
    cfg = load_config(args.config, args.set)
    from pipeline.store.ledger import format_stats
    from pipeline.view.report import run_with_report

    run_dir = args.output = args.output or str(Path("runs") / Path(args.config).stem)
    summary = run_with_report(cfg, run_dir, progress=not args.no_progress,
                              export=False if args.no_export else None, executor=args.executor)
    print(format_stats(summary))
    _say_if_empty(summary.get("stages") or [])
    print(f"\nrun directory: {run_dir}   (check it: swallow verify {run_dir})")
    if summary.get("root"):
        print(f"root: {summary['root']}   (every sealed file of the run under one hash)")
    if summary.get("report"):
        print(f"report: {summary['report']}")
    elif summary.get("report_error"):
        print(f"report: not written ({summary['report_error']}); the run is complete")
    return 0


def cmd_stage(args) -> int:
    """Run one stage alone: a source over ``--input`` then the stage."""
    stage_cls = plugins.component_class("stage", args.stage_type)
    source_type, kind, why = guess_source(args.input, args.source, args.kind)
    print(f"reading --input as {source_type} ({why}; --source chooses), kind {kind}", file=sys.stderr)
    stage = {"type": args.stage_type}
    for name in stage_cls.model_fields:
        value = getattr(args, f"opt_{name}", None)
        if value is not None:
            stage[name] = value if isinstance(value, bool) else yaml.safe_load(value)
    raw = {"kind": kind, "source": {"type": source_type, "paths": args.input},
           "stages": [stage], "export": {"enabled": False}}
    if args.ray_cpus:
        raw["ray"] = {"num_cpus": args.ray_cpus}
    cfg = load_config(None, args.set, raw=raw)
    from pipeline.store.ledger import format_stats
    from pipeline.view.report import run_with_report

    print(format_stats(run_with_report(cfg, args.output, progress=not args.no_progress, executor=args.executor)))
    return 0


def guess_source(inputs: list[str], source: str | None, kind: str | None) -> tuple[str, str, str]:
    """(source type, kind, why) for a stage command's ``--input``: every registered source's ``sniff`` is asked in
    its ``sniff_order`` (a run's shards, WARC/WET files, records with a text field, then code) and the first that
    claims the input reads it; ``--source`` and ``--kind`` win."""
    from pipeline.core.source import first_files
    from pipeline.run import plugins

    files = first_files(inputs)
    if source:
        cls = plugins.component_class("source", source)
        claim = cls.sniff(inputs, files, kind) if cls is not None else None
        return source, kind or (claim[0] if claim else getattr(cls, "kind", "code")), "as asked"
    ordered = sorted((c for c in plugins.load_all("source").values() if c.sniff_order is not None),
                     key=lambda c: (c.sniff_order, c.type))
    for cls in ordered:
        claim = cls.sniff(inputs, files, kind)
        if claim:
            return cls.type, kind or claim[0], claim[1]
    raise SystemExit(f"error: no source reads {', '.join(inputs)}; name one with --source "
                     f"({', '.join(c.type for c in ordered)})")


def cmd_verify(args) -> int:
    from pipeline.run.verify import verify
    from pipeline.store.run_tree import leaves, root_of

    if not (Path(args.run_dir) / "plan.json").exists():  # a folder of another kind (a mixture), if one claims it
        from pipeline.run import plugins

        for check in plugins.folder_checks():
            problems = check(args.run_dir)
            if problems is not None:
                for p in problems:
                    print(f"FAIL {p}", file=sys.stderr)
                print(f"verify: {len(problems)} problem(s) in {args.run_dir}" if problems else
                      f"verify: OK: {args.run_dir}", file=sys.stderr if problems else sys.stdout)
                return 1 if problems else 0
    problems = verify(args.run_dir, args.root)
    if problems:
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        print(f"verify: {len(problems)} problem(s) in {args.run_dir}", file=sys.stderr)
        return 1
    from pipeline.store.ledger import collect_stats

    st = collect_stats(args.run_dir)["stages"]
    print(f"verify: OK: {len(st)} stages; every input id is kept or rejected exactly once "
          f"({st[0]['in']:,} records in, {st[-1]['kept']:,} kept at the end)")
    _say_if_empty(st)
    print(f"root: {root_of(leaves(Path(args.run_dir)))}  (every sealed file of the run; check a copy with "
          f"`swallow verify COPY --root ROOT`)")
    return 0


def _say_if_empty(stages: list[dict]) -> None:
    """A run that kept nothing is said so, with where the rows went: never reported as just "OK"."""
    if stages and not stages[-1]["kept"]:
        from pipeline.store.ledger import empty_summary

        print(f"EMPTY: {empty_summary(stages)}", file=sys.stderr)


def cmd_stats(args) -> int:
    from pipeline.store.ledger import collect_stats, format_stats

    stats = collect_stats(args.run_dir)
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        print(format_stats(stats))
    if args.plot:
        from pipeline.draw.plots import plot_funnel

        plot_funnel(stats, args.plot)
        print(f"funnel plot: {args.plot}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from pipeline.view.report import write_report

    if not (Path(args.run_dir) / "plan.json").exists():
        raise FileNotFoundError(f"{args.run_dir}: not a run directory (no plan.json)")
    print(f"report: {write_report(args.run_dir, args.output)}")
    return 0


def cmd_status(args) -> int:
    from pipeline.view.status import format_status, status, watch

    if args.watch:
        watch(args.run_dir, args.every)
    else:
        st = status(args.run_dir)
        print(json.dumps(st, indent=1) if args.json else format_status(st))
    return 0


def cmd_export(args) -> int:
    raw = yaml.safe_load((Path(args.run_dir) / "run.yaml").read_text())
    cfg = load_config(None, args.set, raw=raw)
    out = cfg.export.write(Path(args.run_dir), cfg)
    from pipeline.store.run_tree import write_root

    print(f"dataset written to {out}")
    print(f"root: {write_root(Path(args.run_dir))}")
    return 0


#: The commands that are not a stage type: given one of them, the parser needs no stage modules.
COMMANDS = ("run", "verify", "stats", "report", "status", "export", "compare")


def build_parser(docs: bool = True, stage_commands: bool = True) -> argparse.ArgumentParser:
    """The command line; ``docs``: the stage options' help texts (read from the classes' source: 1.3 s for every
    stage type, so only when help is asked for); ``stage_commands``: a command per stage type (importing every
    stage module: 1 s, so only when the command may be one)."""
    p = argparse.ArgumentParser(prog="swallow", description="Build SwallowCode/SwallowMath-style pre-training "
                                "corpora: ingest, filter, dedup, LLM-rewrite and write, on Ray.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level, and show the workers' and "
                   "vLLM's own logs on the terminal (otherwise in Ray's session logs, /tmp/ray/session_latest/logs)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors (otherwise one line each)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a whole pipeline from a YAML config",
                       description="Run every stage of CONFIG in order on Ray (embedded local Ray unless "
                       "RAY_ADDRESS is set or ray.address is configured). Rerunning into the same --output "
                       "skips finished shards and redoes partial ones.")
    r.add_argument("config", help="pipeline YAML (see configs/)")
    r.add_argument("--output", "-o", help="run directory (default: runs/<config name>)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. stages.lint_filter.min_score=8 or ray.num_cpus=4 (repeatable)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--no-export", action="store_true", help="skip writing RUN/dataset after the stages")
    r.add_argument("--executor", choices=["auto", "ray", "inline"], default="auto",
                   help="where the work runs: auto chooses inline for a small local run (Ray's start would cost "
                   "more than the work; pipeline/run/executor/choose.py) and ray otherwise; ray: an embedded local "
                   "Ray, "
                   "or the cluster of RAY_ADDRESS; inline: this process, one task at a time, no retries (the same "
                   "verdicts, one core; for a debugger)")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="check a run's ledger: every input id kept or rejected exactly once",
                       description="Re-read every shard of RUN_DIR and check counts and ids stage by stage; "
                       "exit 1 naming each stage/shard that violates the ledger.")
    v.add_argument("run_dir")
    v.add_argument("--root", metavar="HEX", help="the root hash the run must have (printed at the end of the run, "
                   "by verify and export): checks a copy against a root held elsewhere")
    v.set_defaults(func=cmd_verify)

    s = sub.add_parser("stats", help="per-stage counts, rejection reasons, bytes and time of a run")
    s.add_argument("run_dir")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--plot", metavar="PNG", help="also draw the per-stage funnel into this PNG")
    s.set_defaults(func=cmd_stats)

    rp = sub.add_parser("report", help="write a self-contained HTML report of a run (funnel, reasons, histograms, "
                        "before/after samples, timings)",
                        description="One HTML file with no external resource: open it in any browser. `swallow run` "
                        "writes RUN/report.html at the end; this rewrites it (e.g. for a run in progress).")
    rp.add_argument("run_dir")
    rp.add_argument("-o", "--output", help="HTML file to write (default: RUN/report.html)")
    rp.set_defaults(func=cmd_report)

    st = sub.add_parser("status", help="where a running or finished run is: shards done per stage, rows/s, ETA",
                        description="Reads only the run directory, so it works from any machine that sees it "
                        "(e.g. while `ray job submit` runs the pipeline elsewhere).")
    st.add_argument("run_dir")
    st.add_argument("--watch", action="store_true", help="refresh until the run ends")
    st.add_argument("--every", type=float, default=2.0, help="seconds between refreshes (with --watch)")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)

    ex = sub.add_parser("export", help="(re)write RUN/dataset (bounded Parquet shards + card) from a finished run")
    ex.add_argument("run_dir")
    ex.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override export.* keys")
    ex.set_defaults(func=cmd_export)

    from pipeline.view.compare import add_command as add_compare

    add_compare(sub)

    for add_command in plugins.commands():  # e.g. `swallow publish`, declared by the package that provides it
        add_command(sub)

    for type_name, cls in sorted(plugins.load_all("stage").items()) if stage_commands else []:
        doc = (cls.__doc__ or "").strip()
        sp = sub.add_parser(type_name, help=doc.splitlines()[0] if doc else type_name, description=doc,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.add_argument("--input", "-i", nargs="+", required=True,
                        help="input files/directories/globs (raw corpus, or a directory of a run's shards)")
        sp.add_argument("--output", "-o", required=True, help="run directory to write")
        sp.add_argument("--kind", choices=["code", "web"],
                        help="dataset kind (default: web for WARC files and text documents, else code)")
        sp.add_argument("--source", choices=plugins.known_types("source"),
                        help="how to read --input (default: guessed from the files: a run's shards -> records, "
                        "WARC/WET -> warc, JSONL/Parquet with a text field -> documents, else code; the choice is "
                        "printed)")
        sp.add_argument("--ray-cpus", type=int, help="logical CPUs of the embedded Ray (default: the machine's)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any key, e.g. source.content_column=code")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")
        sp.add_argument("--executor", choices=["auto", "ray", "inline"], default="auto",
                        help="where the work runs: auto (inline for a small local run, else ray), ray or inline")
        group = sp.add_argument_group(f"{type_name} options")
        add_component_options(group, cls, prefix="opt_", docs=docs)
        sp.set_defaults(func=cmd_stage, stage_type=type_name)
    return p


def _where_stopped(run_dir: str | None) -> str:
    """One line after Ctrl-C: what is finished and how to go on."""
    if not run_dir or not (Path(run_dir) / "plan.json").exists():
        return "nothing was finished"
    try:
        from pipeline.view.status import status, under_way

        st = status(run_dir)
    except Exception:  # noqa: BLE001 - the line must come whatever the folder holds
        return f"finished work is kept in {run_dir}; rerun the same command to resume"
    done = [s for s in st["stages"] if s["total"] is not None and s["done"] == s["total"]]
    at = under_way(st["stages"])
    where = f"{len(done)} of {len(st['stages'])} stages finished" + "".join(
        f", {s['stage']} at {s['done']}/{s['total'] if s['total'] is not None else '?'} shards" for s in at)
    return f"{where}; finished work is kept in {run_dir}: rerun the same command to resume"


def main(argv: list[str] | None = None) -> int:
    from pipeline.core.errors import STORAGE_ERRNOS, STORAGE_TEXTS, ResourceError, SetupError, StorageError
    from pipeline.run.plugins import PluginError
    from pipeline.store.lock import LockError
    from pipeline.store.shards import TamperedError

    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(docs=any(w in ("-h", "--help") for w in words), stage_commands=command not in COMMANDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import os

    if args.verbose:  # the workers' and vLLM's own logs on this terminal too (else in Ray's session logs)
        os.environ["SWALLOW_VERBOSE"] = "1"
    else:  # an engine in this process (--executor inline) says only what went wrong
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        import os
        import signal

        signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # a second Ctrl-C: out at once
        print(f"interrupted: {_where_stopped(getattr(args, 'run_dir', None) or getattr(args, 'output', None))}",
              file=sys.stderr)
        return 130
    except (ConfigError, LockError, PluginError, FileNotFoundError, ResourceError, SetupError, StorageError,
            TamperedError) as exc:
        # a person can act on these: one line each, no traceback (--debug shows it)
        if args.debug:
            raise
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except OSError as exc:  # the driver's own writes (ledger, plan, report) on a full or read-only disk
        code = exc.errno if exc.errno in STORAGE_ERRNOS else next(
            (c for text, c in STORAGE_TEXTS.items() if text in str(exc)), None)
        if code not in (28, 30, 122) or args.debug:  # (a permission error here is as likely a read)
            raise
        print(f"error: cannot write {exc.filename or 'the run folder'}: {STORAGE_ERRNOS[code]}; free space or fix "
              f"the folder's permissions, then rerun (finished shards are kept)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
