"""The pii stage: e-mail and IP addresses as datatrove's PII formatter finds them (equal output on real documents
and fuzzed strings, in linear time), secrets planted in real code files found whatever their kind, placeholders
fixed, and nothing else changed byte for byte."""

from __future__ import annotations

import random
import re

import pyarrow as pa
import pytest

from stages.pii.addresses import email_spans

#: datatrove's patterns (pipeline/formatters/pii.py), the reference: quadratic on hostile input, so only on bounded
#: strings here
DT_EMAIL = re.compile(r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:(?:[A-Za-z0-9](?:["
                      r"A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?|\[(?:(?:25[0-5]|2[0-4]"
                      r"[0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?|[A-Za-z0-9-]*[A-Za-z0-9]:)"
                      r"])")

#: One secret of each kind, and addresses, as code files hold them (all made up: valid shapes, no real account).
PLANTED = {
    "AWS Access Key": 'AWS_KEY = "AKIAIOSFODNN7EXAMPL3"',
    "GitHub Token": 'token = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"',
    "Slack Token": 'SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"',
    "Stripe Access Key": 'stripe.api_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"',
    "Basic Auth Credentials": 'DB_URL = "postgres://admin:s3cr3tPassw0rd@db.example.com:5432/app"',
    "Secret Keyword": 'password = "correct-horse-battery-staple-42"',
    "JSON Web Token": 'JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ'
                      '.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"',
    "PyPI Token": 'PYPI = "pypi-AgEIcHlwaS5vcmcCJGE4ZDUyOWVmLTNkMjctNDBiOC05NTU3LTNlNWFiMjAxYzBlZAACJXsicGVybWlzc2lvbnMiOiAidXNlciIsICJ2ZXJzaW9uIjogMX0AAAYgSNMZUNM9uQlZ7OEYZBmFHTaT4XRQSU46NzQ9t3R1bPE"',  # noqa: E501
    "private_key": "KEY = '''-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAvDjZ1pOo\nq3kq9jTeKKoM\n"
                   "-----END RSA PRIVATE KEY-----'''",
    "email": 'AUTHOR = "jane.doe+py@mail-server.example.net"',
    "ipv4": 'SERVER = "8.8.4.4"',
}
#: Lines that must stay as they are (private addresses are no one's).
KEPT = ['LOCAL = "192.168.1.20"', 'LOOP = "127.0.0.1"', 'ANSWER = 42']


def stage(**kw):
    from stages.pii.stage import Pii

    s = Pii(**kw)
    s.setup()
    return s


@pytest.mark.fast
def test_emails_equal_datatroves_on_fuzzed_strings():
    rng = random.Random(7)
    tokens = ["a", "b", "Z", "1", "@", ".", "-", "_", "+", " ", "é", "[", "]", "1.2.3.4", "x.com", "@@", "..", "a-b",
              ":", "!", "mail.example.org", "\n"]
    for _ in range(60_000):
        s = "".join(rng.choice(tokens) for _ in range(rng.randint(0, 16)))
        assert email_spans(s) == [m.span() for m in DT_EMAIL.finditer(s)], repr(s)


@pytest.mark.shared_data
def test_email_and_ip_output_equals_datatroves_on_real_documents(extracted_pages, corpus_rows):
    """Every real page and code file: our redaction of e-mails and (public) IPv4 addresses, with one fixed
    placeholder each, is datatrove's PIIFormatter's output byte for byte."""
    from datatrove.pipeline.formatters.pii import PIIFormatter

    ours = stage(secrets=False, ipv6=False)
    theirs = PIIFormatter(email_replacement="email@example.com", ip_replacement="22.214.171.124")
    docs = [p["text"] for p in extracted_pages if p["text"]] + [r["content"] for r in corpus_rows[:2000]]
    found = 0
    for text in docs:
        got, counts = ours.scan(text)
        assert got == theirs.format(text)
        found += counts["pii_emails"] + counts["pii_ips"]
    assert found > 50  # the real documents hold addresses: the comparison compared something


@pytest.mark.shared_data
def test_planted_secrets_are_all_found_and_nothing_else_changes(corpus_rows):
    """Each kind planted at the end of real code files is replaced by its placeholder; the rest of each file is
    what the stage makes of the file without them, byte for byte; private addresses stay."""
    s = stage()
    files = [r["content"] for r in corpus_rows if 200 < len(r["content"]) < 3000][:30]
    for i, text in enumerate(files):
        kind = list(PLANTED)[i % len(PLANTED)]
        block = "\n".join([PLANTED[kind], *KEPT]) + "\n"
        base, _ = s.scan(text)
        got, counts = s.scan(text + "\n" + block)
        assert got.startswith(base + "\n"), kind
        tail = got[len(base) + 1:]
        secret = PLANTED[kind].split("=", 1)[1].strip().strip("'\"")
        assert secret not in tail and all(k in tail for k in KEPT), (kind, tail)
        placeholder = {"email": s.email_placeholder, "ipv4": s.ip_placeholder,
                       "private_key": s.private_key_placeholder}.get(kind, s.secret_placeholder)
        assert placeholder in tail, (kind, tail)
        if kind not in ("email", "ipv4"):
            assert counts["pii_secrets"] >= 1 and counts["pii_secret_kinds"]
    # the same input, the same output: placeholders are fixed, not rotated from row to row as datatrove's are
    again = stage().scan(files[0] + "\n" + PLANTED["email"] + "\n" + PLANTED["email"])[0]
    assert again.count(s.email_placeholder) >= 2 and again == s.scan(files[0] + "\n" + PLANTED["email"] + "\n"
                                                                     + PLANTED["email"])[0]


@pytest.mark.fast
def test_drop_instead_of_redact_and_the_columns():
    s = stage(action="drop")
    table = pa.table({"id": ["a", "b", "c"], "text": ["no pii here", f"mail me: x.y@example.org\n{PLANTED['ipv4']}",
                                                      PLANTED["AWS Access Key"]]})
    v = s.process(table)
    assert v.reasons == [None, "contains_pii", "contains_pii"]
    assert v.columns["pii_emails"].to_pylist() == [0, 1, 0] and v.columns["pii_ips"].to_pylist() == [0, 1, 0]
    assert v.columns["pii_secrets"].to_pylist() == [0, 0, 1]
    assert v.columns["pii_secret_kinds"].to_pylist() == [None, None, "AWS Access Key"]
    red = stage().process(table)
    assert red.reasons == [None, None, None] and "x.y@example.org" not in red.columns["text"][1].as_py()
    assert set(red.columns) == stage().makes()


@pytest.mark.fast
def test_public_ipv6_is_replaced_and_private_kept():
    got, counts = stage(secrets=False).scan("dns 2001:4860:4860::8888, link fe80::1, loop ::1, time 12:30:45")
    assert "2001:4860:4860::8888" not in got and "fe80::1" in got and "::1" in got and "12:30:45" in got
    assert counts["pii_ips"] == 1


@pytest.mark.shared_data
def test_a_run_redacts_and_its_card_says_what_was_removed(tmp_path, corpus_rows):
    """Through the pipeline: rows redacted, the counts in the stage's stats, and the card's section equal to them
    (verify writes the card again from the verified stats and compares)."""
    import pyarrow.parquet as pq

    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats

    rows = [dict(r) for r in corpus_rows[:40]]
    for i in range(0, 40, 5):
        rows[i]["content"] += "\n" + PLANTED["email"] + "\n" + PLANTED["AWS Access Key"] + "\n"
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)]},
           "stages": [{"type": "pii"}], "export": {"license": "mit"}}
    out = tmp_path / "run"
    run_pipeline(load_config(None, raw=raw), out, progress=False, executor="inline")
    assert verify(out) == []
    st = collect_stats(out)["stages"][1]["counters"]
    assert st["pii_emails"] >= 8 and st["pii_secrets"] >= 8
    card = (out / "dataset" / "README.md").read_text()
    assert "## Personal data and secrets" in card
    assert f"| pii | {int(st['pii_emails']):,} | {int(st['pii_ips']):,} | {int(st['pii_secrets']):,} | 0 |" in card
    kept = [r for f in (out / "stages" / "01-pii" / "kept").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert not any("jane.doe+py@" in r["text"] or "AKIAIOSFODNN7EXAMPL3" in r["text"] for r in kept)
