"""Sample data and a tiny model that the project can legitimately make on any machine, offline.

* ``stdlib_sample``: a copy of part of this interpreter's own standard library (PSF license) as a source tree.
* ``train_tokenizer``: a byte-level BPE trained with ``tokenizers`` on those sources, with a ChatML template.
* ``html_warc``: a WARC of saved HTML pages (one HTTP 200 response per file), so pages on disk go through the same
  WARC -> extract path as a crawl (the math demo packs ``../shared/data/html/math`` this way).
* ``make_tiny_model``: a 2-layer Llama with random weights and that tokenizer, for tests and the demo of the
  rewrite stage. **It produces meaningless text**; the real model is a config value (HF name or local path).
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

STDLIB_PICK = ["json", "email", "http", "textwrap.py", "colorsys.py", "bisect.py", "heapq.py", "fractions.py",
               "statistics.py", "string.py", "shlex.py", "difflib.py", "calendar.py", "functools.py", "glob.py",
               "fnmatch.py", "queue.py", "sched.py", "graphlib.py", "tomllib", "wsgiref", "this.py",
               "lib2to3/tests/data"]

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def stdlib_sample(dest: str | Path, pick: list[str] | None = None) -> Path:
    """Copy a fixed part of the standard library (sources only) into ``dest``; idempotent."""
    src = Path(sysconfig.get_paths()["stdlib"])
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in pick or STDLIB_PICK:
        s, d = src / name, dest / name.replace("/", "_")
        if not s.exists() or d.exists():
            continue
        if s.is_dir():
            shutil.copytree(s, d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(s, d)
    return dest


def train_tokenizer(files: list[str], out: str | Path, vocab_size: int = 2048) -> Path:
    """Train a byte-level BPE on ``files``; write ``tokenizer.json`` into ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train(files, trainer)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return out / "tokenizer.json"


def make_tiny_model(out: str | Path, corpus_dir: str | Path | None = None, vocab_size: int = 2048) -> Path:
    """A 2-layer Llama (hidden 128) with random weights and a locally trained tokenizer. Meaningless output."""
    out = Path(out)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    corpus = Path(corpus_dir) if corpus_dir else stdlib_sample(out.parent / (out.name + "-corpus"))
    files = sorted(str(p) for p in corpus.rglob("*.py"))[:400]
    train_tokenizer(files, out, vocab_size)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    tok.save_pretrained(out)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True, torch_dtype="float32")
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)
    (out / "README.md").write_text("# tiny random model\n\nRandom weights: it produces meaningless text. "
                                   "Made by `pipeline.tiny.make_tiny_model` for tests and demos only.\n")
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": tok.eos_token_id}))
    return out


def html_warc(src: str | Path, dest: str | Path) -> Path:
    """Write every ``*.html`` under ``src`` (sorted) into the gzipped WARC ``dest`` as HTTP 200 responses whose URL is
    ``file:///`` + the path relative to ``src``; idempotent (an existing ``dest`` is kept)."""
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    src, dest = Path(src), Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    with open(tmp, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for page in sorted(src.rglob("*.html")):
            body = page.read_bytes()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html"),
                                                  ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            url = "file:///" + page.relative_to(src).as_posix()
            writer.write_record(writer.create_warc_record(url, "response", payload=BytesIO(body),
                                                          http_headers=headers))
    tmp.replace(dest)
    return dest


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="Make the demo's sample data (stdlib sources + a BPE tokenizer) "
                                "and optionally a tiny random-weight model.")
    p.add_argument("dest", help="folder to fill, e.g. .demo")
    p.add_argument("--model", action="store_true", help="also build the tiny random-weight model (needs torch)")
    p.add_argument("--html", metavar="DIR", help="also pack the *.html files under DIR into DEST/pages.warc.gz "
                   "(the math demo: ../shared/data/html/math)")
    a = p.parse_args()
    dest = Path(a.dest)
    corpus = stdlib_sample(dest / "stdlib")
    if not (dest / "tokenizer.json").exists():
        train_tokenizer(sorted(str(p) for p in corpus.rglob("*.py"))[:400], dest)
    if a.model:
        make_tiny_model(dest / "tiny-model", corpus)
    if a.html:
        if not Path(a.html).is_dir():
            raise SystemExit(f"--html {a.html}: no such folder (the real test data lives beside the checkout)")
        html_warc(a.html, dest / "pages.warc.gz")
    print(f"demo data in {dest}")


if __name__ == "__main__":
    main()
