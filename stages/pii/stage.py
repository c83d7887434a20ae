"""Personal data and secrets out of a corpus: the ``pii`` stage, for prose and code.

* **E-mail addresses** and **public IPv4 addresses** are found as datatrove's PII formatter finds them (its patterns'
  matches, in linear time: ``addresses.py``; private, loopback and reserved addresses are kept, as datatrove keeps
  them), **public IPv6 addresses** too.
* **Secrets** are found by detect-secrets' plugins (a maintained detector: AWS, GitHub, GitLab, Slack, Stripe,
  OpenAI, PyPI, npm, SendGrid, Twilio, Discord, Telegram and more tokens, JSON web tokens, passwords in connection
  strings (``Basic Auth Credentials``) and in assignments (``Secret Keyword``)), line by line; its high-entropy
  plugins are off by default (they take hashes and test vectors for secrets). **Private key blocks** (``-----BEGIN
  ... PRIVATE KEY-----`` to its ``END`` line) are redacted whole.

Each finding is replaced by a fixed placeholder (the same text for every row: a row's output is a function of the row
and the config); the counts per kind are columns (``pii_emails``, ``pii_ips``, ``pii_secrets``, ``pii_secret_kinds``),
so ``where:`` can pick rows, and ``action: drop`` rejects a row with any finding (``contains_pii``) instead of
redacting it. The original text is not kept anywhere.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import Field, PrivateAttr

from pipeline.core.stage import Stage, Verdict
from stages.pii.addresses import email_spans, ipv4_spans, ipv6_spans

#: detect-secrets' plugins left out by default: they flag long random-looking strings (hashes, test vectors, base64
#: data), and its IP plugin (IPv4 is ours, with datatrove's definition).
NOT_BY_DEFAULT = ("Base64 High Entropy String", "Hex High Entropy String", "Public IP (ipv4)")
#: Lines are scanned for secrets in windows of this many characters (overlapping), so a minified megabyte-long line
#: costs its length, not more.
WINDOW, OVERLAP = 4096, 256


def private_key_spans(text: str) -> list[tuple[int, int]]:
    """Spans of ``-----BEGIN ... PRIVATE KEY-----`` .. ``-----END ... PRIVATE KEY-----`` blocks (an unclosed one runs
    to the end of the text)."""
    out, pos = [], 0
    while True:
        i = text.find("-----BEGIN ", pos)
        if i == -1:
            return out
        head_end = text.find("-----", i + 11)
        if head_end == -1 or "PRIVATE KEY" not in text[i:head_end] or head_end - i > 80:
            pos = i + 11
            continue
        j = text.find("-----END ", head_end + 5)
        k = text.find("-----", j + 9) if j != -1 else -1
        end = k + 5 if k != -1 else len(text)
        out.append((i, end))
        pos = end


def plugin_spans(plugin, text: str) -> list[tuple[int, int]]:
    """Where a detect-secrets plugin finds secrets in ``text``. Its regular expressions (``denylist``) are run here
    for their positions: a match's secret is the last group inside the match (a password in ``://user:pw@``, a key
    after ``aws_secret=``), or the whole match when its groups are only a prefix (``ghp`` of a GitHub token); a
    plugin without patterns (passwords in assignments) gives the values, found in the text."""
    out = []
    patterns = getattr(plugin, "denylist", None)
    if patterns:
        for regex in patterns:
            for m in regex.finditer(text):
                inner = [g for g in range(1, (regex.groups or 0) + 1) if m.group(g) and m.start(g) > m.start()]
                a, b = m.span(inner[-1]) if inner else m.span()
                if b - a >= 4:
                    out.append((a, b))
        return out
    for value in plugin.analyze_string(text):
        if isinstance(value, str) and len(value) >= 4:
            i = text.find(value)
            while i != -1:
                out.append((i, i + len(value)))
                i = text.find(value, i + len(value))
    return out


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Non-overlapping spans: the earliest first; at the same start a secret before an address (the password of
    ``://user:pw@host`` also reads as an e-mail address), then the longest."""
    out: list[tuple[int, int, str]] = []
    for a, b, kind in sorted(spans, key=lambda x: (x[0], x[2] in ("email", "ipv4", "ipv6"), -x[1])):
        if out and a < out[-1][1]:
            continue
        out.append((a, b, kind))
    return out


class Pii(Stage):
    """Replace e-mail and IP addresses and secrets with fixed placeholders (see the module docstring)."""

    type: ClassVar[str] = "pii"
    requires: ClassVar[tuple[str, ...]] = ("detect_secrets",)
    extra: ClassVar[str] = "pii"
    work_s_per_mb: ClassVar[float] = 4.0  # every detector: 169 CPU-s for the 46 MB Python corpus
    #: Column scanned and rewritten.
    column: str = "text"
    #: Replace e-mail addresses.
    emails: bool = True
    #: Replace IP addresses (v4 and v6).
    ips: bool = True
    #: Replace only public IP addresses (private, loopback, link-local and reserved ones are no one's).
    public_ips_only: bool = True
    #: Also IPv6 addresses (datatrove's formatter looks for IPv4 only).
    ipv6: bool = True
    #: Replace secrets found by detect-secrets' plugins and private key blocks.
    secrets: bool = True
    #: detect-secrets plugins by secret type (e.g. ["AWS Access Key", "Secret Keyword"]); default: all but the
    #: high-entropy ones and its IP plugin.
    secret_types: list[str] | None = None
    #: Placeholders (fixed: the same for every row). datatrove's first replacements by default.
    email_placeholder: str = Field("email@example.com", max_length=200)
    ip_placeholder: str = Field("22.214.171.124", max_length=200)
    ipv6_placeholder: str = Field("2001:db8::1", max_length=200)
    secret_placeholder: str = Field("REDACTED_SECRET", max_length=200)
    private_key_placeholder: str = Field("-----BEGIN PRIVATE KEY-----\nREDACTED\n-----END PRIVATE KEY-----",
                                         max_length=400)
    #: ``redact`` (replace and keep the row) or ``drop`` (reject a row with any finding as ``contains_pii``).
    action: Literal["redact", "drop"] = "redact"
    _plugins: Any = PrivateAttr(None)

    def makes(self) -> set[str]:
        return {self.column, "pii_emails", "pii_ips", "pii_secrets", "pii_secret_kinds"}

    def setup(self) -> None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

        mapping = get_mapping_from_secret_type_to_class()
        wanted = self.secret_types if self.secret_types is not None else \
            [t for t in mapping if t not in NOT_BY_DEFAULT]
        unknown = sorted(set(wanted) - set(mapping))
        if unknown:
            raise ValueError(f"pii: secret_types {unknown} are not detect-secrets plugins ({sorted(mapping)})")
        self._plugins = [(t, mapping[t]()) for t in sorted(wanted)]

    def secret_spans(self, text: str) -> list[tuple[int, int, str]]:
        spans = [(a, b, "private_key") for a, b in private_key_spans(text)]
        pos = 0
        for line in text.splitlines(keepends=True):
            for w in range(0, max(len(line), 1), WINDOW - OVERLAP):
                window = line[w:w + WINDOW]
                base = pos + w
                for kind, plugin in self._plugins:
                    spans += [(base + a, base + b, kind) for a, b in plugin_spans(plugin, window)]
                if w + WINDOW >= len(line):
                    break
            pos += len(line)
        return spans

    def scan(self, text: str) -> tuple[str, dict[str, Any]]:
        spans: list[tuple[int, int, str]] = []
        if self.emails:
            spans += [(a, b, "email") for a, b in email_spans(text)]
        if self.ips:
            spans += [(a, b, "ipv4") for a, b in ipv4_spans(text, self.public_ips_only)]
            if self.ipv6:
                spans += [(a, b, "ipv6") for a, b in ipv6_spans(text, self.public_ips_only)]
        if self.secrets:
            if self._plugins is None:
                from pipeline.core.component import NotSetUp

                raise NotSetUp("pii: scan() before setup() (the secret detectors are made there)")
            spans += self.secret_spans(text)
        spans = _merge(spans)
        placeholder = {"email": self.email_placeholder, "ipv4": self.ip_placeholder, "ipv6": self.ipv6_placeholder,
                       "private_key": self.private_key_placeholder}
        out, last = [], 0
        for a, b, kind in spans:
            out.append(text[last:a])
            out.append(placeholder.get(kind, self.secret_placeholder))
            last = b
        out.append(text[last:])
        kinds = sorted({k for _, _, k in spans if k not in ("email", "ipv4", "ipv6")})
        counts = {"pii_emails": sum(1 for *_, k in spans if k == "email"),
                  "pii_ips": sum(1 for *_, k in spans if k in ("ipv4", "ipv6")),
                  "pii_secrets": sum(1 for *_, k in spans if k not in ("email", "ipv4", "ipv6")),
                  "pii_secret_kinds": ", ".join(kinds) or None}
        return "".join(out), counts

    def process(self, table: pa.Table, ctx=None) -> Verdict:
        texts = table.column(self.column).to_pylist()
        new, reasons, details = [], [], []
        cols: dict[str, list] = {"pii_emails": [], "pii_ips": [], "pii_secrets": [], "pii_secret_kinds": []}
        for text in texts:
            if not text:
                new.append(text), reasons.append(None), details.append(None)
                for c in cols:
                    cols[c].append(0 if c != "pii_secret_kinds" else None)
                continue
            redacted, counts = self.scan(text)
            found = counts["pii_emails"] + counts["pii_ips"] + counts["pii_secrets"]
            if self.action == "drop" and found:
                # a dropped row keeps its text as it came: it leaves the corpus with its reason
                new.append(text), reasons.append("contains_pii")
                kinds = f" ({counts['pii_secret_kinds']})" if counts["pii_secret_kinds"] else ""
                details.append(f"{counts['pii_emails']} e-mail, {counts['pii_ips']} IP, "
                               f"{counts['pii_secrets']} secret(s){kinds}")
            else:
                new.append(redacted), reasons.append(None), details.append(None)
            for c in cols:
                cols[c].append(counts[c])
        columns = {self.column: pa.array(new, pa.string()),
                   **{c: pa.array(v, pa.int64()) for c, v in cols.items() if c != "pii_secret_kinds"},
                   "pii_secret_kinds": pa.array(cols["pii_secret_kinds"], pa.string())}
        totals = {c: float(sum(cols[c])) for c in ("pii_emails", "pii_ips", "pii_secrets")}
        return Verdict(reasons, columns=columns, details=details, counters=totals)
