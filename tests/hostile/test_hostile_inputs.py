"""Hostile records and paths are reasons, never a crash and never a silent drop: lone surrogates in content and paths,
file names of undecodable bytes, the same file listed several times (under other names, through links), a corrupt
Parquet in the documents source, the output folder inside the input folder, a stage name that climbs out of the
run directory."""

from __future__ import annotations

import json
import os
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.run.config import ConfigError, load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify

pytestmark = pytest.mark.fast


def run(raw: dict, out) -> None:
    raw = {"export": {"license": "mit"}, **raw}
    run_pipeline(load_config(None, raw=raw), out, progress=False, executor="inline")


def rows(out, stage="00-ingest") -> list[dict]:
    got = []
    for part in ("kept", "rejected"):
        for f in sorted((out / "stages" / stage / part).glob("*.parquet")):
            got += pq.read_table(f).to_pylist()
    return got


def reasons(out, stage="00-ingest") -> Counter:
    return Counter(r.get("reason") for r in rows(out, stage))


def code(paths, **kw) -> dict:
    return {"kind": "code", "source": {"type": "code", "paths": [str(p) for p in paths], **kw},
            "stages": [{"type": "syntax_filter"}]}


def test_lone_surrogates_in_content_and_paths_are_undecodable_rows(tmp_path):
    lines = [{"content": "a = '\ud800'\n", "path": "a.py"}, {"content": "b = 1\n", "path": "b\udcff.py"},
             {"content": "c = 2\n", "path": "c.py"}, {"content": "d = 3\n", "path": "d.py", "repo": "r\udfff"}]
    src = tmp_path / "s.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")  # json writes them as \\ud800 escapes
    out = tmp_path / "run"
    for _ in range(2):  # the rerun too
        run(code([src]), out)
        assert verify(out) == []
    got = {r["path"]: r for r in rows(out)}
    assert got["c.py"].get("reason") is None
    bad = [r for r in rows(out) if r.get("reason") == "undecodable"]
    assert len(bad) == 3 and all("surrogate" in r["detail"] for r in bad)
    assert {r["path"] for r in bad} == {"a.py", "b\\udcff.py", "d.py"}

    docs = tmp_path / "d.jsonl"
    docs.write_text(json.dumps({"text": "fine text"}) + "\n" + json.dumps({"text": "bad \ud800 text"}) + "\n")
    out2 = tmp_path / "run2"
    run({"kind": "web", "source": {"type": "documents", "paths": [str(docs)]}, "stages": [{"type": "length_filter"}]},
        out2)
    assert verify(out2) == [] and reasons(out2) == Counter({None: 1, "undecodable": 1})


def test_a_file_name_of_undecodable_bytes_is_a_row(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok.py").write_text("x = 1\n")
    with open(os.path.join(os.fsencode(tree), b"caf\xe9.py"), "w") as f:
        f.write("y = 2\n")
    out = tmp_path / "run"
    run(code([tree]), out)
    assert verify(out) == [] and reasons(out) == Counter({None: 1, "undecodable": 1})


def test_a_file_listed_again_is_read_once_with_one_duplicate_row_per_extra_listing(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"content": [f"v{i} = {i}\n" for i in range(30)], "path": [f"m{i}.py" for i in range(30)]}),
                   src, row_group_size=10)
    (tmp_path / "link.parquet").symlink_to(src)
    os.link(src, tmp_path / "hard.parquet")
    listed = [src, tmp_path / "." / "in.parquet", tmp_path / "link.parquet", tmp_path / "hard.parquet", src]
    for shard_bytes in (1, 10**9):  # every file its own shard, or all in one
        out = tmp_path / f"run{shard_bytes}"
        run(code(listed, shard_bytes=shard_bytes), out)
        assert verify(out) == []
        assert reasons(out) == Counter({None: 30, "duplicate_id": 4})
        data = pq.read_table(out / "dataset" / "data").column("id").to_pylist()
        assert len(data) == len(set(data)) == 30


def test_a_corrupt_parquet_in_the_documents_source_is_a_row(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": ["a page of text", "another page"]}), good)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet at all")
    truncated = tmp_path / "cut.parquet"
    truncated.write_bytes(good.read_bytes()[:-20])
    pq.write_table(pa.table({"body": ["no text column"]}), tmp_path / "other.parquet")
    out = tmp_path / "run"
    run({"kind": "web", "source": {"type": "documents", "paths": [str(tmp_path / "*.parquet")]},
         "stages": [{"type": "length_filter"}]}, out)
    assert verify(out) == []
    assert reasons(out) == Counter({None: 2, "corrupt_file": 2, "missing_text_column": 1})


def test_the_run_directory_inside_the_input_folder_is_never_read(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        (data / f"m{i}.py").write_text(f"x{i} = {i}\n")
    out = data / "runs" / "first"
    for _ in range(2):
        run(code([data], languages=[]), out)
        assert verify(out) == []
    assert {r["path"] for r in rows(out)} == {str(data / f"m{i}.py") for i in range(5)}
    # another run into a new folder beside it: the first run's files are data now (the user's choice), its own not
    out2 = data / "runs" / "second"
    run(code([data], languages=[]), out2)
    assert not any(str(out2) in r["path"] for r in rows(out2))


@pytest.mark.parametrize("name", ["x/../../../y", "../up", "a b", "UPPER", "", "x" * 65, "a\ud800"])
def test_a_stage_name_is_a_plain_word(tmp_path, name):
    raw = code([tmp_path / "none.jsonl"])
    raw["stages"][0]["name"] = name
    if name == "":  # empty: the type's name is used
        assert load_config(None, raw=raw).stages[0].name == "syntax_filter"
        return
    with pytest.raises(ConfigError, match="not a stage name"):
        load_config(None, raw=raw)
