"""Prompt files: system and user templates, few-shot turns, default sampling, and how to extract the result.

A prompt is a YAML file in ``prompts/`` (or any path): ``{text}`` in the user template is the document; the
``extract`` rule takes a fenced block after a heading, the text after a marker, or the whole generation; an
optional ``score`` pattern reads a self-score. The file's SHA-256 is recorded on every row it produced.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

PROMPTS_DIR = Path(__file__).resolve().parent.parent.parent / "prompts"
#: A prompt file's size bound (the shipped ones are 1-3 KB).
MAX_PROMPT_BYTES = 256 << 10



class Extract(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["fenced_block", "marker", "whole"] = "whole"
    #: fenced_block: take the first fenced block after this heading (else the last block of the text).
    after: str | None = None
    #: fenced_block: language tag of the block (untagged blocks are accepted too).
    language: str | None = None
    #: marker: take the text after this marker.
    marker: str | None = None
    #: if the generation contains this, the row is rejected as ``declined``.
    reject_if: str | None = None


class Score(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: str


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    system: str | None = None
    user: str
    few_shot: list[dict[str, str]] = []
    sampling: dict[str, Any] = {}
    extract: Extract = Extract()
    score: Score | None = None
    sha256: str = ""

    def copied_example(self, result: str) -> str | None:
        """Why ``result`` is a copy of this prompt's own few-shot answer (None: it is not). A small model copied
        the math prompt's one-shot example verbatim and the rules kept it."""
        flat = " ".join(result.split())
        for n, shot in enumerate(self.few_shot, 1):
            example = extract(shot.get("assistant", ""), self.extract) or shot.get("assistant", "")
            example = " ".join(example.split())
            if len(example) >= 40 and example in flat:
                return f"the answer holds the prompt's example {n} ({len(example):,} characters) verbatim"
        return None

    def messages(self, text: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for shot in self.few_shot:
            msgs += [{"role": "user", "content": shot["user"]}, {"role": "assistant", "content": shot["assistant"]}]
        # str.replace, not str.format: documents are full of braces
        msgs.append({"role": "user", "content": self.user.replace("{text}", text)})
        return msgs


def load_prompt(ref: str) -> Prompt:
    """A prompt by name (``prompts/NAME.yaml``) or by path; errors name the file and key."""
    from pydantic import ValidationError

    path = Path(ref)
    if not path.exists():
        path = PROMPTS_DIR / f"{ref}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"prompt {ref!r}: no such file and no prompts/{ref}.yaml (known: {known})")
    if path.stat().st_size > MAX_PROMPT_BYTES:  # every row renders it: a huge one costs each row time and memory
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes; a prompt file is at most {MAX_PROMPT_BYTES:,}")
    data = path.read_bytes()
    from pipeline.run.config import safe_yaml

    try:
        return Prompt(**(safe_yaml(data, str(path)) or {}), sha256=hashlib.sha256(data).hexdigest())
    except ValidationError as exc:
        keys = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {keys}") from None


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """The closed fenced blocks of ``text`` as (language tag, body), in order: one linear pass over the lines.

    A fence opens on a line that starts (after spaces or tabs) with three backquotes and an optional tag, and closes
    on a line holding only three backquotes. The body is dedented by the opening fence's indentation, so a block
    a model indented inside a list item (``1. ...`` then an indented fence) is the program it holds, not an
    indentation error. An unclosed block is no block.
    """
    blocks: list[tuple[str, str]] = []
    lang, indent, body = None, "", []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip(" \t")
        if lang is None:
            if stripped.startswith("```"):
                indent = line[:len(line) - len(stripped)]
                tag = stripped[3:].lstrip(" \t")
                n = 0
                while n < len(tag) and (tag[n].isalnum() or tag[n] in "_+-"):
                    n += 1
                lang, body = tag[:n], []
            continue
        if stripped.rstrip(" \t\r\n") == "```":
            blocks.append((lang, "".join(_dedent(b, indent) for b in body)))
            lang = None
            continue
        body.append(line)
    return blocks


def _dedent(line: str, indent: str) -> str:
    """``line`` without the fence's indentation (as much of it as the line has)."""
    n = 0
    while n < len(indent) and n < len(line) and line[n] in " \t":
        n += 1
    return line[n:]


#: Markup a model puts around a marker or a heading (``**Rewritten:**``, ``### **Improved code**``).
_MARKUP = " \t*_#`"


def _find(text: str, needle: str) -> int:
    """Index just past ``needle`` in ``text`` (case-insensitive, markup tolerated inside: ``**Improved Code**``
    for ``### Improved code``), or -1."""
    words = needle.strip(_MARKUP).split()
    if not words:
        return -1
    pattern = r"[ \t*_#`]*".join(re.escape(w) for w in words)
    m = re.search(pattern, text, re.I)
    return m.end() if m else -1


def extract(generation: str, rule: Extract) -> str | None:
    """The part of ``generation`` the prompt asks for, or None when it is not there."""
    if rule.mode == "whole":
        return generation.strip() or None
    if rule.mode == "marker":
        end = _find(generation, rule.marker) if rule.marker else -1
        if end < 0:
            return None
        rest = generation[end:]
        # markup that closes the marker right after it (`**Rewritten:**` -> the text must not start with `**`);
        # markup after a space opens the text (`Rewritten: **Problem.**`) and stays
        rest = rest.lstrip("*_")
        return rest.strip() or None
    text = generation
    found = False
    if rule.after:
        end = _find(text, rule.after)
        if end >= 0:
            text, found = text[end:], True
    blocks = [(lang.lower(), body) for lang, body in fenced_blocks(text)]
    if rule.language:
        blocks = [b for b in blocks if b[0] in ("", rule.language.lower(), "py" if rule.language == "python" else "")]
    if not blocks:
        return None
    body = (blocks[0] if found else blocks[-1])[1]
    return body if body.strip() else None


def self_score(generation: str, rule: Score | None) -> float | None:
    if rule is None:
        return None
    m = re.search(rule.pattern, generation)
    try:
        return float(m.group(1)) if m else None
    except (ValueError, IndexError):
        return None
