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

import yaml
from pydantic import BaseModel, ConfigDict

PROMPTS_DIR = Path(__file__).resolve().parent.parent.parent / "prompts"



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
    data = path.read_bytes()
    try:
        return Prompt(**yaml.safe_load(data), sha256=hashlib.sha256(data).hexdigest())
    except ValidationError as exc:
        keys = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: {keys}") from None


FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)


def extract(generation: str, rule: Extract) -> str | None:
    """The part of ``generation`` the prompt asks for, or None when it is not there."""
    if rule.mode == "whole":
        return generation.strip() or None
    if rule.mode == "marker":
        if not rule.marker or rule.marker not in generation:
            return None
        return generation.split(rule.marker, 1)[1].strip() or None
    text = generation
    if rule.after:
        idx = text.find(rule.after)
        if idx >= 0:
            text = text[idx + len(rule.after):]
    blocks = [(lang.lower(), body) for lang, body in FENCE.findall(text)]
    if rule.language:
        blocks = [b for b in blocks if b[0] in ("", rule.language.lower(), "py" if rule.language == "python" else "")]
    if not blocks:
        return None
    body = (blocks[0] if rule.after and rule.after in generation else blocks[-1])[1]
    return body if body.strip() else None


def self_score(generation: str, rule: Score | None) -> float | None:
    if rule is None:
        return None
    m = re.search(rule.pattern, generation)
    try:
        return float(m.group(1)) if m else None
    except (ValueError, IndexError):
        return None
