"""Code path, stages 1-2 of SwallowCode: ingest code corpora, syntax filter, pylint/ruff quality filter.

SwallowCode's definitions, kept here verbatim so they can be cited:

* Syntax filter: keep exactly the files CPython's ``compile(source, path, "exec")`` accepts (the interpreter
  running the stage; its version is recorded in every shard's stats). Nothing is executed: ``compile`` only
  builds a code object.
* Lint filter: pylint with ``--disable=E0401,C0114,C0301,C0103,C0116,C0411,R0903,W0511,C0412``, the score it
  prints (0-10, two decimals), multiplied by (1 - comment ratio) where the ratio is COMMENT tokens over all
  ``tokenize`` tokens; a file that is all comments scores 0. Keep final score >= 7.0. Raw score, penalty and
  final score are columns, so a new threshold needs no re-lint.

pylint runs in-process in a long-lived child process per worker (not one ``pylint`` process per file): the
heavy imports and astroid's cache of the standard library are paid once. The child is isolated so a file that
makes pylint hang or crash costs only that file (``lint_timeout``/``lint_error``) and a fresh child.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.records import make_id
from pipeline.source import Source, iter_jsonl, pack_by_bytes
from pipeline.stage import Stage, Verdict

# ----------------------------------------------------------------------------------------------------- ingest

EXT_LANGUAGE = {".py": "python", ".pyw": "python", ".pyi": "python", ".ipynb": "jupyter", ".js": "javascript",
                ".ts": "typescript", ".java": "java", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
                ".hpp": "cpp", ".rs": "rust", ".go": "go", ".rb": "ruby", ".sh": "shell", ".md": "markdown",
                ".txt": "text", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}


def language_of(path: str | None) -> str:
    if not path:
        return "unknown"
    return EXT_LANGUAGE.get(os.path.splitext(path)[1].lower(), "unknown")


def decode_source(data: bytes) -> tuple[str | None, str | None, str | None]:
    """(text, reason, detail) for raw file bytes: binary content and undecodable bytes are reasons."""
    if b"\x00" in data[:8192]:
        return None, "binary", "NUL byte in the first 8 KiB"
    try:
        return data.decode("utf-8"), None, None
    except UnicodeDecodeError as exc:
        return None, "undecodable", f"not UTF-8: {exc}"


class CodeSource(Source):
    """Code corpora: Parquet or JSONL(.gz) files (The Stack v2 layout), a ``datasets`` name, or source trees."""

    type: ClassVar[str] = "code"
    #: parquet | jsonl | dir | hf | auto (from each path's extension; directories are source trees).
    format: Literal["auto", "parquet", "jsonl", "dir", "hf"] = "auto"
    content_column: str = "content"
    repo_column: str = "repo"
    path_column: str = "path"
    license_column: str = "license"
    blob_id_column: str = "blob_id"
    #: Other columns copied through (missing ones are ignored).
    keep_columns: list[str] = []
    #: Languages kept (from the path's extension); others are rejected as ``other_language``. Empty: keep all.
    languages: list[str] = ["python"]
    #: Files larger than this (UTF-8 bytes) are rejected as ``too_large`` without being decoded.
    max_file_bytes: int = 1_000_000
    #: Split of a ``datasets`` dataset (format hf).
    hf_split: str = "train"

    def _fmt(self, path: str) -> str:
        if self.format != "auto":
            return self.format
        low = path.lower()
        if low.endswith(".parquet"):
            return "parquet"
        if low.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
            return "jsonl"
        return "file"

    def plan(self) -> list[dict[str, Any]]:
        if self.format == "hf":
            return self._plan_hf()
        items: list[tuple[Any, int]] = []
        for path in self.expand():
            fmt = self._fmt(path) if self.format != "dir" else "file"
            if fmt == "parquet":
                meta = pq.ParquetFile(path).metadata
                for rg in range(meta.num_row_groups):
                    g = meta.row_group(rg)
                    n, size = g.num_rows, max(g.total_byte_size, 1)
                    pieces = max(1, -(-size // self.shard_bytes))
                    step = -(-n // pieces)
                    for start in range(0, n, step):
                        stop = min(n, start + step)
                        items.append((["parquet", path, rg, start, stop], size * (stop - start) // max(n, 1)))
            elif fmt == "jsonl":
                items.append((["jsonl", path], os.path.getsize(path) * (4 if path.endswith(".gz") else 1)))
            else:
                items.append((["file", path], min(os.path.getsize(path), self.max_file_bytes)))
        return [{"parts": group} for group in pack_by_bytes(items, self.shard_bytes)]

    def _plan_hf(self) -> list[dict[str, Any]]:
        import datasets

        rows = 0
        for name in self.paths:
            ds = datasets.load_dataset(name, split=self.hf_split) if not os.path.exists(name) else \
                datasets.load_from_disk(name)
            rows = len(ds)
        step = max(1, self.shard_bytes // 4096)  # ~4 KB per source file
        return [{"parts": [["hf", name, s, min(rows, s + step)]]} for name in self.paths for s in range(0, rows, step)]

    # -- reading ------------------------------------------------------------------------------------------------
    def read(self, spec: dict[str, Any]) -> Iterator[pa.Table]:
        for part in spec["parts"]:
            kind = part[0]
            if kind == "parquet":
                yield self._read_parquet(*part[1:])
            elif kind == "jsonl":
                yield from self._read_jsonl(part[1])
            elif kind == "hf":
                yield self._read_hf(*part[1:])
            else:
                yield self._rows_to_table([self._read_file(part[1])])

    def _record(self, source: str, offset: int | str, content: Any, meta: dict) -> dict:
        """One record from raw content (str or bytes), with a reason if it is unusable."""
        reason = detail = None
        text = None
        path = meta.get("path")
        if content is None:
            reason, detail = "missing_content", f"column {self.content_column!r} is null or absent"
        else:
            data = content if isinstance(content, bytes) else None
            size = len(data) if data is not None else len(content.encode("utf-8", "surrogatepass"))
            if size > self.max_file_bytes:
                reason, detail = "too_large", f"{size} bytes > max_file_bytes {self.max_file_bytes}"
            elif data is not None:
                text, reason, detail = decode_source(data)
            else:
                text = content
                if "\x00" in text[:8192]:
                    reason, detail, text = "binary", "NUL character in the first 8 KiB", None
        if reason is None and text is not None and not text.strip():
            reason = "empty"
        lang = meta.get("language") or language_of(path)
        if reason is None and self.languages and lang not in self.languages:
            reason, detail = "other_language", lang
        return {"id": make_id(source, offset), "text": text if reason in (None, "other_language", "empty") else None,
                "source_file": source, "source_offset": int(offset) if str(offset).isdigit() else 0,
                "language": lang, "reason": reason, "detail": detail, **meta}

    def _meta(self, row: dict) -> dict:
        meta = {"repo": row.get(self.repo_column) or row.get("repo_name"), "path": row.get(self.path_column),
                "license": _as_str(row.get(self.license_column)), "blob_id": row.get(self.blob_id_column)}
        for c in self.keep_columns:
            meta[c] = row.get(c)
        return meta

    def _read_parquet(self, path: str, rg: int, start: int, stop: int) -> pa.Table:
        pf = pq.ParquetFile(path)
        wanted = [c for c in {self.content_column, self.repo_column, "repo_name", self.path_column,
                              self.license_column, self.blob_id_column, *self.keep_columns}
                  if c in pf.schema_arrow.names]
        if self.content_column not in wanted:
            raise KeyError(f"{path}: no column {self.content_column!r} (columns: {pf.schema_arrow.names}); "
                           "set source.content_column")
        table = pf.read_row_group(rg, columns=wanted).slice(start, stop - start)
        base = sum(pf.metadata.row_group(i).num_rows for i in range(rg)) + start
        rows = [self._record(path, base + i, row.get(self.content_column), self._meta(row))
                for i, row in enumerate(table.to_pylist())]
        return self._rows_to_table(rows)

    def _read_jsonl(self, path: str) -> Iterator[pa.Table]:
        rows: list[dict] = []
        for offset, row, reason, detail in iter_jsonl(path):
            if reason:
                rows.append(self._record(path, offset, None, {}) | {"reason": reason, "detail": detail})
            else:
                rows.append(self._record(path, offset, row.get(self.content_column), self._meta(row)))
            if len(rows) >= 2048:
                yield self._rows_to_table(rows)
                rows = []
        yield self._rows_to_table(rows)

    def _read_file(self, path: str) -> dict:
        meta = {"repo": None, "path": path, "license": None, "blob_id": None}
        size = os.path.getsize(path)
        if size > self.max_file_bytes:
            return self._record(path, 0, None, meta) | {"reason": "too_large",
                                                        "detail": f"{size} bytes > max_file_bytes {self.max_file_bytes}"}
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            return self._record(path, 0, None, meta) | {"reason": "unreadable", "detail": str(exc)}
        return self._record(path, 0, data, meta)

    def _read_hf(self, name: str, start: int, stop: int) -> pa.Table:
        import datasets

        ds = datasets.load_from_disk(name) if os.path.exists(name) else datasets.load_dataset(name, split=self.hf_split)
        rows = [self._record(f"hf:{name}", start + i, row.get(self.content_column), self._meta(row))
                for i, row in enumerate(ds.select(range(start, stop)))]
        return self._rows_to_table(rows)

    def _rows_to_table(self, rows: list[dict]) -> pa.Table:
        types = {"id": pa.string(), "text": pa.string(), "source_file": pa.string(), "source_offset": pa.int64(),
                 "repo": pa.string(), "path": pa.string(), "license": pa.string(), "blob_id": pa.string(),
                 "language": pa.string(), "reason": pa.string(), "detail": pa.string()}
        cols = {c: pa.array([r.get(c) for r in rows], t) for c, t in types.items()}
        for c in self.keep_columns:
            cols[c] = pa.array([r.get(c) for r in rows])
        return pa.table(cols)


def _as_str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, default=str)


# ----------------------------------------------------------------------------------------------------- syntax

def syntax_check(source: str, path: str = "<code>") -> tuple[str | None, str | None]:
    """(reason, detail) of ``compile(source, path, "exec")``; (None, None) when it compiles. Never executes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning/DeprecationWarning are not rejections
            compile(source, path, "exec", dont_inherit=True)
        return None, None
    except SyntaxError as exc:  # includes IndentationError, TabError
        return f"syntax_error:{type(exc).__name__}", f"{exc.msg} (line {exc.lineno})"
    except ValueError as exc:  # e.g. source code string cannot contain null bytes
        return "syntax_error:ValueError", str(exc)
    except RecursionError as exc:
        return "syntax_error:RecursionError", str(exc)[:500]
    except MemoryError as exc:
        return "syntax_error:MemoryError", str(exc)[:500] or "parser ran out of memory (deeply nested input)"
    except OverflowError as exc:
        return "syntax_error:OverflowError", str(exc)[:500]


class SyntaxFilter(Stage):
    """Keep the Python files that ``compile()`` accepts; other languages pass through untouched."""

    type: ClassVar[str] = "syntax_filter"
    #: Column holding the code (``text``; the rewrite stage checks its own output column).
    column: str = "text"

    def process(self, table: pa.Table) -> Verdict:
        texts = table.column(self.column).to_pylist()
        langs = table.column("language").to_pylist() if "language" in table.column_names else ["python"] * len(texts)
        reasons, details = [], []
        for text, lang in zip(texts, langs):
            if lang != "python":
                reasons.append(None)
                details.append(None)
                continue
            if text is None:
                reasons.append("missing_text")
                details.append(None)
                continue
            r, d = syntax_check(text)
            reasons.append(r)
            details.append(d)
        return Verdict(reasons, details=details)

    def shard_info(self) -> dict[str, Any]:
        return {"python": sys.version.split()[0]}


# ----------------------------------------------------------------------------------------------------- pylint

#: SwallowCode's pylint options (the messages it disables).
SWALLOWCODE_DISABLE = "E0401,C0114,C0301,C0103,C0116,C0411,R0903,W0511,C0412"


def comment_ratio(source: str) -> tuple[float, bool]:
    """(COMMENT tokens / all tokenize tokens, whether the file has any code token). Tokenize errors: (0, True)."""
    total = comments = code = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            total += 1
            if tok.type == tokenize.COMMENT:
                comments += 1
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.INDENT,
                                  tokenize.DEDENT, tokenize.ENCODING):
                code += 1
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return 0.0, True
    return (comments / total if total else 0.0), code > 0


def pylint_args(disable: str) -> list[str]:
    return [f"--disable={disable}", "--persistent=n", "--jobs=1", "--score=y"]


LINT_SERVER = str(Path(__file__).resolve().with_name("lint_server.py"))


class PylintWorker:
    """A long-lived pylint process (``lint_server.py``), replaced after a timeout or a crash."""

    def __init__(self, args: list[str], timeout_s: float, recycle_after: int = 2000, gc_every: int = 50):
        self.args, self.timeout_s, self.recycle_after, self.gc_every = args, timeout_s, recycle_after, gc_every
        self.tmp = tempfile.mkdtemp(prefix="swallow-lint-")
        self.proc: subprocess.Popen | None = None
        self.count = 0

    def start(self) -> None:
        # the environment of a bare `python -m pylint`: no PYTHONPATH (Ray's or the project's), neutral cwd
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
        env["PYLINTHOME"] = self.tmp  # crash reports and stats stay out of the user's home
        env["SWALLOW_LINT_GC_EVERY"] = str(self.gc_every)
        self.proc = subprocess.Popen([sys.executable, LINT_SERVER, *self.args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self.tmp, env=env,
                                     text=True, bufsize=1)
        self.count = 0

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def lint(self, source: str, name: str, meanwhile=None) -> tuple[str, float | None, str | None]:
        """('ok', score, None) | ('lint_timeout'|'lint_error', None, detail). Score None: no statements.

        ``meanwhile`` (a callable) runs in this process while the lint process works on the file.
        """
        import select

        if self.proc is None or self.proc.poll() is not None or self.count >= self.recycle_after:
            self.stop()
            self.start()
        modname = f"m_{name}"
        path = os.path.join(self.tmp, modname + ".py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        self.count += 1
        # the first file of a fresh process also pays its imports
        limit = self.timeout_s + (30 if self.count == 1 else 0)
        try:
            self.proc.stdin.write(json.dumps({"path": path, "modname": modname}) + "\n")
            self.proc.stdin.flush()
            t0 = time.monotonic()
            if meanwhile is not None:
                meanwhile()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, limit - (time.monotonic() - t0)))
            if not ready:
                self.stop()
                return "lint_timeout", None, f"pylint took longer than {self.timeout_s:g} s"
            line = self.proc.stdout.readline()
            if not line:
                raise EOFError("no reply")
            reply = json.loads(line)
        except (EOFError, BrokenPipeError, OSError, ValueError) as exc:
            code = self.proc.poll() if self.proc else None
            self.stop()
            return "lint_error", None, f"pylint worker died ({type(exc).__name__}, exit code {code})"
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        if reply["status"] == "ok":
            return "ok", reply["note"], None
        return "lint_error", None, reply["detail"]


class LintFilter(Stage):
    """SwallowCode's pylint quality filter with the comment-ratio penalty (see the module docstring)."""

    type: ClassVar[str] = "lint_filter"
    min_score: float = 7.0
    disable: str = SWALLOWCODE_DISABLE
    #: Seconds one file may take before it is rejected as ``lint_timeout`` and the lint process replaced.
    timeout_s: float = 60.0
    #: Replace the lint process after this many files (bounds astroid's cache growth).
    recycle_after: int = 2000
    #: The lint process runs Python's garbage collector once every this many files instead of automatically
    #: (automatic full collections over astroid's growing cache cost about a third of the time; see lint_server).
    gc_every: int = 50
    batch_size: int = 64

    def setup(self) -> None:
        self._worker = PylintWorker(pylint_args(self.disable), self.timeout_s, self.recycle_after, self.gc_every)

    def teardown(self) -> None:
        if getattr(self, "_worker", None):
            self._worker.close()

    def process(self, table: pa.Table) -> Verdict:
        if not hasattr(self, "_worker"):
            self.setup()
        texts = table.column("text").to_pylist()
        ids = table.column("id").to_pylist()
        langs = table.column("language").to_pylist() if "language" in table.column_names else ["python"] * len(ids)
        raw, ratio, final, reasons, details = [], [], [], [], []
        for text, rid, lang in zip(texts, ids, langs):
            if lang != "python":
                raw.append(None), ratio.append(None), final.append(None), reasons.append(None), details.append(None)
                continue
            ratio_of: dict = {}
            status, score, detail = self._worker.lint(  # the ratio is computed while pylint works
                text or "", rid, meanwhile=lambda t=text: ratio_of.update(v=comment_ratio(t or "")))
            r, has_code = ratio_of.get("v") or comment_ratio(text or "")
            if status != "ok":
                raw.append(None), ratio.append(r), final.append(None), reasons.append(status), details.append(detail)
                continue
            printed = float(f"{score:.2f}") if score is not None else 0.0  # what the CLI prints and scripts parse
            value = 0.0 if not has_code else printed * (1.0 - r)
            raw.append(printed), ratio.append(r), final.append(value), details.append(
                None if score is not None else "no statements (pylint prints no score)")
            reasons.append(None if value >= self.min_score else "low_lint_score")
        return Verdict(reasons, columns={"pylint_score": pa.array(raw, pa.float64()),
                                         "comment_ratio": pa.array(ratio, pa.float64()),
                                         "lint_score": pa.array(final, pa.float64())}, details=details)

    def shard_info(self) -> dict[str, Any]:
        import pylint

        return {"pylint": pylint.__version__, "python": sys.version.split()[0], "pylint_disable": self.disable}


# ----------------------------------------------------------------------------------------------------- ruff

def ruff_bin() -> str:
    from ruff.__main__ import find_ruff_bin

    return find_ruff_bin()


class RuffGate(Stage):
    """Fast pre-gate before pylint: reject files with more ruff violations per line than allowed.

    ruff is one compiled process per batch, orders of magnitude cheaper than pylint; files it finds riddled
    with errors would score near zero in pylint anyway. The violation count is a column.
    """

    type: ClassVar[str] = "ruff_gate"
    select: list[str] = ["E9", "F63", "F7", "F82", "F821", "F811", "E711", "E712", "F401", "F841"]
    #: Reject when violations / non-empty lines exceeds this.
    max_violations_per_line: float = 0.3

    def process(self, table: pa.Table) -> Verdict:
        texts = table.column("text").to_pylist()
        with tempfile.TemporaryDirectory(prefix="swallow-ruff-") as tmp:
            names = []
            for i, t in enumerate(texts):
                name = os.path.join(tmp, f"f{i}.py")
                Path(name).write_text(t or "", encoding="utf-8")
                names.append(name)
            proc = subprocess.run([ruff_bin(), "check", "--no-cache", "--isolated", "--output-format=json",
                                   f"--select={','.join(self.select)}", "--exit-zero", tmp],
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"ruff failed: {proc.stderr[:500]}")
            counts: dict[str, int] = {}
            for v in json.loads(proc.stdout or "[]"):
                counts[v["filename"]] = counts.get(v["filename"], 0) + 1
        viol = [counts.get(n, 0) for n in names]
        reasons = []
        for t, v in zip(texts, viol):
            lines = max(1, sum(1 for line in (t or "").splitlines() if line.strip()))
            reasons.append("ruff_gate" if v / lines > self.max_violations_per_line else None)
        return Verdict(reasons, columns={"ruff_violations": pa.array(viol, pa.int64())})


class RuffFormat(Stage):
    """Normalise code with ``ruff format`` (SwallowCode-v2 formats before scoring); the original is kept."""

    type: ClassVar[str] = "ruff_format"
    line_length: int = 88

    def process(self, table: pa.Table) -> Verdict:
        texts = table.column("text").to_pylist()
        out, reasons, details = [], [], []
        for t in texts:
            proc = subprocess.run([ruff_bin(), "format", "--isolated", f"--line-length={self.line_length}",
                                   "--stdin-filename=snippet.py", "-"], input=t or "", capture_output=True,
                                  text=True, timeout=60)
            if proc.returncode == 0:
                out.append(proc.stdout), reasons.append(None), details.append(None)
            else:
                out.append(t), reasons.append("format_error"), details.append(proc.stderr.strip()[:500])
        return Verdict(reasons, columns={"text": out, "text_unformatted": texts}, details=details)


# ----------------------------------------------------------------------------------------------------- scripts

SCRIPT_RANGES = {
    "ascii": [(0x00, 0x7F)],
    "japanese": [(0x3000, 0x303F), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF),
                 (0x3400, 0x4DBF)],
    "latin1": [(0x80, 0xFF)],
}


class ScriptFilter(Stage):
    """SwallowCode's optional rule: comments and string literals only in allowed scripts."""

    type: ClassVar[str] = "script_filter"
    allowed: list[str] = ["ascii", "japanese"]

    def process(self, table: pa.Table) -> Verdict:
        ranges = [r for name in self.allowed for r in SCRIPT_RANGES[name]]

        def ok(s: str) -> bool:
            return all(any(lo <= ord(c) <= hi for lo, hi in ranges) for c in s)

        reasons, details = [], []
        for t in table.column("text").to_pylist():
            bad = None
            try:
                for tok in tokenize.generate_tokens(io.StringIO(t or "").readline):
                    if tok.type in (tokenize.COMMENT, tokenize.STRING) and not ok(tok.string):
                        bad = tok.string[:80]
                        break
            except (tokenize.TokenError, SyntaxError):
                pass
            reasons.append("disallowed_script" if bad else None)
            details.append(bad)
        return Verdict(reasons, details=details)
