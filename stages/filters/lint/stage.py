"""SwallowCode's pylint quality filter: pylint's score x (1 - comment ratio) >= 7.0.

The score is defined in ``score``; pylint runs in the fixed environment of ``isolation``, in a child
forked per file from a warm server (``server.py``, reached through ``client``), so a file's score is a
function of the file and the options alone (never of the files linted before it, the machine's packages or the
caller's environment), and equal to what ``python -m pylint`` prints for it. No configuration is read from the
disk. Raw score, penalty and final score are columns, so a new threshold needs no re-lint.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.component import NotSetUp
from pipeline.core.stage import Stage, Verdict
from stages.filters.lint.client import LintServer, PylintWorker
from stages.filters.lint.score import SWALLOWCODE_DISABLE, comment_ratio, final_score, module_name, printed_score


class LintFilter(Stage):
    """SwallowCode's pylint quality filter with the comment-ratio penalty (see the module docstring)."""

    type: ClassVar[str] = "lint_filter"
    thresholds: ClassVar[dict[str, tuple[str, ...]]] = {"lint_score": ("min_score",)}
    work_s_per_mb: ClassVar[float] = 15.0
    #: Lowest final score kept: pylint's score x (1 - comment ratio), SwallowCode: 7.0.
    min_score: float = 7.0
    #: pylint messages disabled (SwallowCode's list), comma-separated.
    disable: str = SWALLOWCODE_DISABLE
    #: Seconds one file may take before it is rejected as ``lint_timeout`` (its lint child is killed).
    timeout_s: float = Field(60.0, gt=0)
    #: Modules whose astroid trees the warm lint parent builds before the first file (speed only; see
    #: ``WARM_MODULES``). Default: a fixed list of common standard-library modules.
    warm_modules: list[str] | None = None
    #: What a linted file's imports resolve to: ``stdlib`` (the standard library and pylint's own packages: the
    #: same score on every machine) or ``inherit`` (every package installed where the worker runs).
    environment: Literal["stdlib", "inherit"] = "stdlib"
    batch_size: int = Field(64, ge=1)
    #: Column holding the code.
    column: str = "text"
    #: Prefix of the score columns (``sgcr_`` gives ``sgcr_pylint_score``, ``sgcr_comment_ratio``,
    #: ``sgcr_lint_score``): a second lint stage after a rewrite scores it beside the input's own columns.
    prefix: str = Field("", pattern=r"^[a-z0-9_]{0,40}$")
    #: Score ``ruff format``'s layout of the code instead of the code as it is (the column is not changed): a model's
    #: rewrite loses points for layout alone (trailing spaces on blank lines cost the 1.5B model's SGCR rewrites
    #: more than any other message), which says nothing about the program.
    format_first: bool = False
    _worker: PylintWorker | None = PrivateAttr(None)
    #: Where the node's lint server listens (set by ``prestart`` in the driver of a local run).
    _server: dict | None = PrivateAttr(None)

    def makes(self) -> set[str]:
        return {f"{self.prefix}{c}" for c in ("pylint_score", "comment_ratio", "lint_score")}

    def prestart(self, local: bool) -> LintServer | None:
        """A local run's driver starts the node's warm server before Ray, so it warms up while Ray and the earlier
        stages start, once for all of this node's lint workers."""
        if not local:
            return None
        server = LintServer(self.disable, self.warm_modules, self.environment, wait=False)
        self._server = server.address
        return server

    def setup(self) -> None:
        self._worker = PylintWorker(self.disable, self.timeout_s, self.warm_modules, self.environment,
                                    address=self._server)
        self._worker.start()

    def teardown(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def lint_one(self, text: str) -> dict[str, Any]:
        """Scores and decision of one Python file (the ratio is computed while pylint works)."""
        ratio_of: dict = {}
        status, score, detail = self._worker.lint(text, module_name(text),
                                                  meanwhile=lambda: ratio_of.update(v=comment_ratio(text)))
        ratio, has_code = ratio_of.get("v") or comment_ratio(text)
        if status != "ok":
            return {"raw": None, "ratio": ratio, "final": None, "reason": status, "detail": detail}
        printed = printed_score(score)
        final = final_score(printed, ratio, has_code)
        return {"raw": printed, "ratio": ratio, "final": final,
                "reason": None if final >= self.min_score else "low_lint_score",
                "detail": None if score is not None else "no statements (pylint prints no score)"}

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        if self._worker is None:
            raise NotSetUp("lint_filter: process() before setup()")
        texts = table.column(self.column).to_pylist()
        langs = table.column("language").to_pylist() if "language" in table.column_names else ["python"] * len(texts)
        skip = {"raw": None, "ratio": None, "final": None, "reason": None, "detail": None}
        if self.format_first:
            from stages.text.python_code import ruff_format

            texts = [ruff_format(t)[0] if t and lang == "python" else t for t, lang in zip(texts, langs)]
        rows = [self.lint_one(text or "") if lang == "python" else skip for text, lang in zip(texts, langs)]
        p = self.prefix
        return Verdict([r["reason"] for r in rows],
                       columns={f"{p}pylint_score": pa.array([r["raw"] for r in rows], pa.float64()),
                                f"{p}comment_ratio": pa.array([r["ratio"] for r in rows], pa.float64()),
                                f"{p}lint_score": pa.array([r["final"] for r in rows], pa.float64())},
                       details=[r["detail"] for r in rows])

    def shard_info(self) -> dict[str, Any]:
        import pylint

        info = {"pylint": pylint.__version__, "python": sys.version.split()[0], "pylint_disable": self.disable,
                "lint_environment": self.environment}
        if self._worker is not None:
            info["lint_server"] = "node" if self._worker.address else "own"
        return info
