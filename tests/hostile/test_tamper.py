"""``verify`` trusts content, not sizes: every file a task finished is sealed in its marker (size and SHA-256) and
re-hashed; same-size edits of kept rows, of a Megatron ``.bin``, of figures in a stats file, of run.yaml,
stage.json, plan.json or a global stage's work file are each found; ``swallow stats``, the report and the export
use no figure and no row that changed after it was written, and ``publish`` refuses such a run."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats, format_stats
from tests.conftest import SHARED

pytestmark = [pytest.mark.fast]

GPT2 = SHARED / "tokenizers" / "gpt2" / "tokenizer.json.gz"
TEXTS = [f"def f{i}(x):\n    '''Return x plus {i}, a number written in words: {'abcdefgh' * (i % 7 + 3)}.'''\n"
         f"    return x + {i}\n" for i in range(40)]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    src = tmp_path_factory.mktemp("in") / "code.parquet"
    texts = TEXTS + TEXTS[:5] + ["def broken(:\n"]
    pq.write_table(pa.table({"content": texts, "path": [f"m{i}.py" for i in range(len(texts))]}), src,
                   row_group_size=12)
    stages = [{"type": "syntax_filter"}, {"type": "exact_dedup", "partitions": 2}]
    if GPT2.exists():
        stages.append({"type": "tokenize", "tokenizer": str(GPT2)})
    raw = {"kind": "code", "source": {"type": "code", "paths": [str(src)], "shard_bytes": 2000}, "stages": stages,
           "export": {"license": "mit"}}
    run = tmp_path_factory.mktemp("run") / "run"
    run_pipeline(load_config(None, raw=raw), run, progress=False, executor="inline")
    assert verify(run) == []
    return run


@pytest.fixture
def run(clean_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(clean_run, copy)
    return copy


def same_size_text_edit(path) -> str:
    """Change one character of one row's text and bring the rewritten Parquet file to exactly the old size with a
    key-value metadata entry of the right length in place of the stored Arrow schema (the footer is not compressed,
    so its length is what we set).
    Searching edits for a lucky compressed size instead failed where the run's temporary paths changed the ids."""
    before = path.stat().st_size
    table = pq.read_table(path)
    texts = table.column("text").to_pylist()
    row = next(i for i, t in enumerate(texts) if any(c.isalpha() for c in t))
    text = texts[row]
    pos = max(i for i, c in enumerate(text) if c.isalpha())
    edited = list(texts)
    edited[row] = text[:pos] + ("b" if text[pos] != "b" else "c") + text[pos + 1:]
    t = table.set_column(table.column_names.index("text"), "text", pa.array(edited, pa.string()))
    pad = 100
    for _ in range(10):
        # without the stored Arrow schema (hundreds of bytes of base64) the padding has room to fill
        with pq.ParquetWriter(path, t.schema, compression="zstd", store_schema=False) as writer:
            writer.write_table(t)
            writer.add_key_value_metadata({"tamper_pad": "x" * pad})
        size = path.stat().st_size
        if size == before:
            return table.column("id")[row].as_py()
        pad += before - size
        if pad < 0:
            break
    raise AssertionError(f"no same-size edit found ({size} bytes vs {before})")


def stage(run, name):
    return next(p for p in (run / "stages").iterdir() if p.name.endswith(name))


def test_same_size_edit_of_a_kept_row_is_found_and_never_exported(run):
    from pipeline.cli import main

    last = sorted((run / "stages").iterdir())[-1]  # what the export reads
    kept = sorted((last / "kept").glob("*.parquet"))[0]
    same_size_text_edit(kept)
    problems = verify(run)
    assert any(kept.name in p and "same size" in p for p in problems), problems
    assert main(["export", str(run)]) == 2  # the export refuses to publish a row changed after its stage wrote it


def test_same_size_overwrite_of_a_megatron_bin_is_found(run):
    if not GPT2.exists():
        pytest.skip(f"{GPT2} is absent (shared data)")
    binary = sorted((stage(run, "tokenize") / "megatron").glob("*.bin"))[0]
    data = bytearray(binary.read_bytes())
    data[:100] = bytes((b + 1) % 256 for b in data[:100])
    binary.write_bytes(bytes(data))
    assert any(binary.name in p and "same size" in p for p in verify(run))


@pytest.mark.parametrize("key", ["bytes_kept", "wall_s", "kept"])
def test_edited_stats_are_found_and_left_out_of_every_figure(run, key):
    from pipeline.view.report import build

    stats_file = sorted((stage(run, "syntax_filter") / "stats").glob("*.json"))[0]
    text = stats_file.read_text()
    st = json.loads(text)
    old = f'"{key}": {json.dumps(st[key])}'
    digits = json.dumps(st[key])
    new = f'"{key}": {digits[:-1]}{(int(digits[-1]) + 1) % 10}'
    assert old in text and len(old) == len(new)
    stats_file.write_text(text.replace(old, new))
    assert any(stats_file.name in p and "stats" in p for p in verify(run))
    summary = collect_stats(run)
    assert summary["unverified"] == [f"{stats_file.parent.parent.name}/{stats_file.stem}"]
    assert "WARNING" in format_stats(summary) and "swallow verify" in format_stats(summary)
    assert "changed after they finished" in build(run)
    syntax = next(s for s in summary["stages"] if s["stage"] == "syntax_filter")
    assert syntax["in"] == sum(json.loads(f.read_text())["in"] for f in (stats_file.parent).glob("*.json")
                               if f != stats_file)


def test_edited_run_yaml_stage_json_and_plan_are_found(run):
    run_yaml = run / "run.yaml"
    run_yaml.write_text(run_yaml.read_text().replace("batch_size: 256", "batch_size: 255", 1))
    assert any("run.yaml was edited" in p for p in verify(run))

    sd = stage(run, "syntax_filter")
    (sd / "stage.json").write_text((sd / "stage.json").read_text().replace('"batch_size": 256', '"batch_size": 254'))
    assert any("stage.json changed" in p for p in verify(run))

    plan = json.loads((run / "plan.json").read_text())
    first = sorted(plan)[0]
    plan[first]["parts"][0][3] = plan[first]["parts"][0][3] + 1
    (run / "plan.json").write_text(json.dumps(plan))
    assert any("plan.json was edited" in p for p in verify(run))


def test_edited_work_file_of_a_global_stage_is_found(run):
    scan = sorted((stage(run, "exact_dedup") / "work" / "scan").glob("*/p*.parquet"))[0]
    table = pq.read_table(scan)
    pq.write_table(table.slice(1), scan)
    assert any(scan.name in p and "changed after the task finished" in p for p in verify(run))


def test_publish_refuses_a_run_that_does_not_verify(run, capsys):
    from pipeline.cli import main

    kept = sorted((stage(run, "syntax_filter") / "kept").glob("*.parquet"))[0]
    table = pq.read_table(kept)
    pq.write_table(table.set_column(1, "text", pa.array(["x"] * len(table), pa.string())), kept)
    assert main(["publish", str(run), "--repo-id=org/name", "--dry-run"]) == 2
    assert "does not verify" in capsys.readouterr().err


# --------------------------------------------------------------------------------- one tree of hashes (issue 42)
def reseal(marker_path, rel_key, path):
    """Rewrite a marker so that its seal of ``rel_key`` matches the file as it is now (what an editor who knows the
    format would do)."""
    from pipeline.store.shards import file_seal

    marker = json.loads(marker_path.read_text())
    marker["files"][rel_key] = file_seal(path)
    marker_path.write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")


def test_an_edit_with_a_resealed_marker_changes_the_root(run):
    from pipeline.store.run_tree import check_root

    root_before = json.loads((run / "root.json").read_text())["root"]
    sd = sorted((run / "stages").iterdir())[1]
    kept = sorted((sd / "kept").glob("*.parquet"))[0]
    table = pq.read_table(kept)
    texts = table.column("text").to_pylist()
    texts[0] = texts[0].replace("return", "return -")
    pq.write_table(table.set_column(table.column_names.index("text"), "text", pa.array(texts)), kept)
    reseal(sd / "done" / f"{kept.stem}.json", "kept", kept)
    problems = verify(run)
    assert any("changed since the run ended" in p and f"{sd.name}/done/{kept.stem}.json" in p for p in problems)
    assert verify(run, root=root_before)  # and anyone holding the root sees it too
    assert check_root(run)[0] != root_before


def test_a_dataset_edit_with_a_resealed_manifest_changes_the_root(run):
    from stages.outputs.export import file_digest

    data = sorted((run / "dataset" / "data").glob("*.parquet"))[0]
    table = pq.read_table(data)
    pq.write_table(table.slice(1), data)
    manifest = json.loads((run / "dataset" / "manifest.json").read_text())
    manifest["files"][data.name] = file_digest(data)
    (run / "dataset" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    assert any("dataset/manifest.json" in p for p in verify(run))


def test_a_copy_checks_against_a_root_held_elsewhere(run, tmp_path):
    from pipeline.store.run_tree import check_root

    root = json.loads((run / "root.json").read_text())["root"]
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert verify(copy, root=root) == [] and check_root(copy)[0] == root
    assert any("not the" in p for p in verify(copy, root="0" * 64))


@pytest.mark.parametrize("what", ["card", "funnel", "megatron"])
def test_links_out_of_the_run_are_refused(run, tmp_path, what):
    from stages.outputs.publish import PublishError, publish

    secret = tmp_path / "secret.txt"
    secret.write_text("outside the run")
    target = {"card": run / "dataset" / "README.md", "funnel": run / "dataset" / "funnel.png",
              "megatron": next((run / "stages").glob("*-tokenize"), run / "stages" / "x") / "megatron" / "extra.bin"}
    link = target[what]
    if what == "megatron" and not link.parent.exists():
        pytest.skip("no tokenize stage (the GPT-2 tokenizer of ../shared/data is absent)")
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    problems = verify(run)
    assert any("symbolic link" in p for p in problems), problems
    with pytest.raises(PublishError, match="does not verify"):
        publish(run, "user/name", dry_run=True)


def test_an_unsealed_extra_shard_file_is_flagged(run):
    sd = sorted((run / "stages").iterdir())[1]
    kept = sorted((sd / "kept").glob("*.parquet"))[0]
    shutil.copy(kept, sd / "kept" / "99999.parquet")
    assert any("99999.parquet: not written by a finished shard" in p for p in verify(run))


def test_a_plan_key_that_leaves_the_run_is_refused(run, tmp_path):
    from pipeline.core.errors import ConfigError

    plan = json.loads((run / "plan.json").read_text())
    key = next(iter(plan))
    plan["../../escape"] = plan.pop(key)
    (run / "plan.json").write_text(json.dumps(plan))
    assert any("not a plain name" in p for p in verify(run))
    raw = yaml_of(run)
    with pytest.raises(ConfigError, match="not a plain name"):
        run_pipeline(load_config(None, raw=raw), run, progress=False, executor="inline")
    assert not (tmp_path / "escape").exists() and not (run.parent.parent / "escape").exists()


def test_a_marker_naming_a_path_outside_is_not_read(run):
    sd = sorted((run / "stages").iterdir())[1]
    marker_path = sorted((sd / "done").glob("*.json"))[0]
    marker = json.loads(marker_path.read_text())
    marker["files"]["../../../../etc/hostname"] = {"bytes": 1, "sha256": "0" * 64}
    marker_path.write_text(json.dumps(marker))
    assert any("outside the run" in p for p in verify(run))


def yaml_of(run) -> dict:
    import yaml

    return yaml.safe_load((run / "run.yaml").read_text())


def test_the_cards_figures_are_checked(run):
    card = run / "dataset" / "README.md"
    text = card.read_text()
    import re

    m = re.search(r"\| 0 \| ingest \| (\d[\d,]*) \|", text)
    card.write_text(text.replace(m.group(0), m.group(0).replace(m.group(1), "1,000,000")))
    assert any("README.md: the card differs" in p for p in verify(run))
