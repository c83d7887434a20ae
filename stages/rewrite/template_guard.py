"""Chat templates rendered with a time and size bound, in a process of their own.

A model's chat template is Jinja code that came with the model. Jinja's sandbox stops it reaching Python's
internals, not from looping: a template that renders the import's check prompt and loops on any other prompt
passed the import and then held a rewrite for 15 minutes with no verdict. So an LLM stage renders its prompts in a
child process (spawned, holding only the tokenizer), a batch within ``per_row_s`` x its rows; a batch over it is
retried row by row, each row with ``per_row_s`` of its own, and a row whose rendering runs out is
``template_timeout`` (the child is killed and started again); a rendering longer than ``max_chars`` is
``prompt_too_long``. Tokenizing the rendered text stays in the stage's process.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

#: Characters a rendered prompt may have beyond the conversation itself (the template's own text).
TEMPLATE_SLACK = 1 << 16


def _child(conn, model: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conversations, limits = job
        out = []
        for conv, limit in zip(conversations, limits):
            try:
                text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
                out.append(("ok", text) if len(text) <= limit else ("too_long", len(text)))
            except Exception as exc:  # noqa: BLE001 - the row's reason
                out.append(("error", f"{type(exc).__name__}: {str(exc)[:300]}"))
        conn.send(("done", out))


class TemplateRenderer:
    """Renders chat templates of ``model`` in a child process, each row within ``per_row_s``."""

    def __init__(self, model: str, per_row_s: float = 10.0, start_timeout_s: float = 300.0):
        self.model, self.per_row_s, self.start_timeout_s = model, per_row_s, start_timeout_s
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, self.model), daemon=True, name="swallow-template")
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(self.start_timeout_s):
            self.close()
            raise RuntimeError(f"the chat template renderer for {self.model} did not start in "
                               f"{self.start_timeout_s:.0f} s")
        parent.recv()

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._conn.send(None)
            except (OSError, ValueError):
                pass
            self._proc.join(2)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        self._proc = self._conn = None

    def _batch(self, conversations: list, limits: list[int]) -> list | None:
        """The child's answers for a batch, or None when it ran out of time (the child is then killed)."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send((conversations, limits))
        if self._conn.poll(self.per_row_s * max(1, len(conversations))):
            return self._conn.recv()[1]
        self._proc.kill()
        self._proc.join(5)
        self._proc = self._conn = None
        return None

    def render(self, conversations: list[list[dict[str, str]]]) -> list[tuple[str, Any]]:
        """For each conversation: ("ok", text), ("too_long", chars), ("timeout", seconds) or ("error", detail)."""
        if not conversations:
            return []
        limits = [sum(len(m.get("content") or "") for m in c) + TEMPLATE_SLACK for c in conversations]
        out = self._batch(conversations, limits)
        if out is not None:
            return out
        results = []
        for conv, limit in zip(conversations, limits):  # find the rows that hang, each with its own budget
            one = self._batch([conv], [limit])
            results.append(one[0] if one is not None else ("timeout", self.per_row_s))
        return results


def render_bounded(model: str, conversations: list, per_row_s: float = 10.0) -> list[tuple[str, Any]]:
    """One-off bounded rendering (the import's checks): start, render, stop."""
    r = TemplateRenderer(model, per_row_s)
    try:
        return r.render(conversations)
    finally:
        r.close()
