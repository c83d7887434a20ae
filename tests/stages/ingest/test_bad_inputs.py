"""Bad inputs become rejected rows with a specific reason, never a crashed run: generated members of each class
(hostile JSONL lines, wrong field types, damaged Parquet, a missing content column, symlink loops, duplicate ids
in a records input). Every run must verify: each input record kept or rejected exactly once."""

from __future__ import annotations

import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.fast


def run(tmp_path, paths, name="run", source="code"):
    from pipeline.run.config import load_config
    from pipeline.run.runner import run_pipeline
    from pipeline.run.verify import verify
    from pipeline.store.ledger import collect_stats

    raw = {"kind": "code", "source": {"type": source, "paths": [str(p) for p in paths], "shard_bytes": 2000},
           "stages": [{"type": "syntax_filter"}], "export": {"enabled": False}}
    out = tmp_path / name
    run_pipeline(load_config(None, raw=raw), out, progress=False, executor="inline")
    assert verify(out) == []
    ingest = collect_stats(out)["stages"][0]
    rejected = [r for f in (out / "stages" / "00-ingest" / "rejected").glob("*.parquet")
                for r in pq.read_table(f).to_pylist()]
    return ingest, rejected


def test_jsonl_lines_that_are_not_records_and_fields_of_the_wrong_type(tmp_path):
    rng = random.Random(3)
    not_objects = [[1, 2], "s", 42, None, 3.5, True, [], [{"content": "x"}], "{}"]
    wrong = [{"content": v, "path": "a.py"} for v in (5, 2.5, ["x = 1"], {"x": 1}, True)]
    wrong += [{"content": "x = 1\n", "path": v} for v in (["a.py"], {"p": 1}, 7)]
    wrong += [{"content": "x = 1\n", "path": "a.py", "repo": v} for v in ({"o": 1}, [1], 3)]
    good = [{"content": f"v{i} = {i}\n", "path": f"g{i}.py", "repo": "r"} for i in range(10)]
    lines = [json.dumps(x) for x in not_objects + wrong + good]
    rng.shuffle(lines)
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    ingest, rejected = run(tmp_path, [src])
    assert ingest["in"] == len(lines) and ingest["kept"] == len(good)
    assert ingest["reasons"] == {"not_an_object": len(not_objects), "bad_field_type": len(wrong)}
    details = {r["detail"] for r in rejected if r["reason"] == "bad_field_type"}
    assert {"content is int", "path is list", "repo is dict"} <= details


def good_parquet(path, n=60, row_group_size=20):
    pq.write_table(pa.table({"content": [f"q{i} = {i}\n" for i in range(n)], "path": [f"f{i}.py" for i in range(n)]}),
                   path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("seed", range(6))
def test_damaged_parquet_is_rejected_and_the_others_are_read(tmp_path, seed):
    rng = random.Random(seed)
    raw = good_parquet(tmp_path / "good.parquet").read_bytes()
    damaged = bytearray(raw)
    if seed % 2 == 0:  # truncated somewhere
        damaged = damaged[: rng.randrange(0, len(raw) - 1)]
    else:  # a run of garbage bytes somewhere
        at = rng.randrange(0, len(raw) - 16)
        damaged[at:at + 16] = bytes(rng.randrange(256) for _ in range(16))
    (tmp_path / "bad.parquet").write_bytes(bytes(damaged))
    ingest, rejected = run(tmp_path, [tmp_path / "good.parquet", tmp_path / "bad.parquet"])
    from_good = [r for r in rejected if r["source_file"].endswith("good.parquet")]
    assert not from_good and ingest["kept"] >= 60  # the good file is read whole
    assert set(ingest["reasons"]) <= {"corrupt_file"}
    for r in rejected:
        assert r["source_file"].endswith("bad.parquet") and r["detail"]


def test_missing_content_column(tmp_path):
    for i, cols in enumerate([{"body": ["x"]}, {"path": ["a.py"]}, {"Content": ["x"], "path": ["a.py"]}]):
        pq.write_table(pa.table(cols), tmp_path / f"m{i}.parquet")
    good_parquet(tmp_path / "good.parquet", n=5)
    ingest, rejected = run(tmp_path, sorted(tmp_path.glob("*.parquet")))
    assert ingest["reasons"] == {"missing_content_column": 3} and ingest["kept"] == 5
    assert all("set source.content_column" in r["detail"] for r in rejected)


def test_symlink_loops_in_an_input_folder(tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "m.py").write_text("m = 1\n")
    (tree / "a" / "b" / "n.py").write_text("n = 2\n")
    os.symlink("..", tree / "a" / "b" / "up")  # a loop back to a
    os.symlink(tree, tree / "a" / "root")  # a loop to the top
    os.symlink(tree / "nowhere", tree / "dangling.py")
    ingest, _ = run(tmp_path, [tree])
    assert ingest["kept"] == 2  # each real file once, the loops not followed for ever
    assert ingest["reasons"] == {"unreadable": 1}  # the dangling link, named


def test_duplicate_ids_in_a_records_input(tmp_path):
    rng = random.Random(0)
    ids = [f"id{rng.randrange(40)}" for _ in range(120)]  # many repeats, across files
    files = []
    for k in range(3):
        part = ids[k * 40:(k + 1) * 40]
        t = pa.table({"id": part, "text": [f"x = {i}\n" for i in range(len(part))], "source_file": ["s"] * len(part),
                      "source_offset": list(range(len(part))), "repo": ["r"] * len(part), "path": ["a.py"] * len(part),
                      "license": ["mit"] * len(part), "blob_id": [None] * len(part), "language": ["python"] * len(part)})  # noqa: E501
        files.append(tmp_path / f"r{k}.parquet")
        pq.write_table(t, files[-1], row_group_size=16)
    (tmp_path / "r9.parquet").write_bytes(b"PAR1 not really")
    ingest, rejected = run(tmp_path, files + [tmp_path / "r9.parquet"], source="records")
    assert ingest["in"] == 121 and ingest["kept"] == len(set(ids))
    assert ingest["reasons"] == {"duplicate_id": 120 - len(set(ids)), "corrupt_file": 1}
