"""Make ``tests/data/japanese_quality_reference.json.gz``: what the reference (``quality.py`` of
swallow-llm/swallow-corpus, MIT) computes on the documents of ``tests/japanese_docs.py``: every measurement of its
``main()`` and the verdict of its ``apply_v1()``, or the exception it raised. The reference is not part of this
project: bring it with the ``fetch`` tool or ``git clone`` and give its path.

    git -C /work/.mirror/swallow-llm+swallow-corpus/repo show HEAD:quality.py > /tmp/swallow_quality.py
    python -m tests.make_japanese_reference /tmp/swallow_quality.py --commit 2d03507...
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
from pathlib import Path

from tests.japanese_docs import documents

OUT = Path(__file__).resolve().parent / "data" / "japanese_quality_reference.json.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference", help="path of the reference's quality.py")
    ap.add_argument("--commit", required=True, help="the reference's commit, recorded in the file")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("swallow_quality_reference", args.reference)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    docs = []
    for name, text in documents():
        entry = {"name": name, "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}
        try:
            q = ref.main({"text": text})
            entry["measures"], entry["keep"] = q, bool(ref.apply_v1(q))
        except Exception as exc:  # noqa: BLE001 - the reference's own failure is a recorded outcome
            entry["error"] = f"{type(exc).__name__}: {exc}"
        docs.append(entry)
    made = {"reference": "swallow-llm/swallow-corpus quality.py (main, apply_v1)", "commit": args.commit,
            "sha256_of_reference": hashlib.sha256(Path(args.reference).read_bytes()).hexdigest(),
            "documents": "tests/japanese_docs.py", "docs": docs}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(gzip.compress(json.dumps(made, ensure_ascii=False, sort_keys=True).encode(), mtime=0))
    kept = sum(1 for d in docs if d.get("keep"))
    print(f"{OUT}: {len(docs)} documents, {kept} kept by apply_v1, "
          f"{sum(1 for d in docs if 'error' in d)} where the reference raised")


if __name__ == "__main__":
    main()
