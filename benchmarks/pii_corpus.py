"""What the pii stage finds in real data nobody planted anything in: the shared Python corpus, per kind, with examples
printed to judge the false positives by reading, and its speed beside datatrove's PII formatter on the same documents
(e-mails and IPv4 only: what datatrove does).

    python benchmarks/pii_corpus.py [--show 3]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--show", type=int, default=3, help="examples printed per secret kind")
    args = ap.parse_args()
    import pyarrow.parquet as pq
    from datatrove.pipeline.formatters.pii import PIIFormatter

    from stages.pii.stage import Pii

    code = pq.read_table(ROOT.parent / "shared" / "data" / "python" / "python_corpus.parquet",
                         columns=["path", "content"]).to_pylist()
    stage = Pii()
    stage.setup()
    kinds: collections.Counter = collections.Counter()
    examples: dict[str, list] = collections.defaultdict(list)
    t0 = time.process_time()
    rows_with = collections.Counter()
    for r in code:
        text = r["content"]
        spans = stage.secret_spans(text)
        for a, b, kind in spans:
            kinds[kind] += 1
            if len(examples[kind]) < args.show:
                line = text[max(0, text.rfind("\n", 0, a) + 1):text.find("\n", b) if text.find("\n", b) != -1 else b]
                examples[kind].append(f"{r['path']}: {line.strip()[:140]}")
        _, counts = stage.scan(text)
        for k in ("pii_emails", "pii_ips", "pii_secrets"):
            rows_with[k] += bool(counts[k])
    ours_s = time.process_time() - t0
    print(f"python corpus: {len(code):,} files; files with an e-mail {rows_with['pii_emails']:,}, a public IP "
          f"{rows_with['pii_ips']:,}, a secret {rows_with['pii_secrets']:,}; {ours_s:.1f} CPU-s with every detector")
    for kind, n in kinds.most_common():
        print(f"  {kind:28s} {n:5d}")
        for e in examples[kind]:
            print(f"      {e}")
    dt = PIIFormatter(email_replacement="email@example.com", ip_replacement="22.214.171.124")
    addresses = Pii(secrets=False, ipv6=False)
    texts = [r["content"] for r in code]
    t0 = time.process_time()
    for t in texts:
        addresses.scan(t)
    ours = time.process_time() - t0
    t0 = time.process_time()
    for t in texts:
        dt.format(t)
    theirs = time.process_time() - t0
    print(f"e-mails and IPv4 over the corpus: ours {ours:.2f} CPU-s, datatrove's formatter {theirs:.2f} CPU-s "
          f"(ours / datatrove {ours / theirs:.2f})")


if __name__ == "__main__":
    main()
