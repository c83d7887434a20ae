"""The warc source on every real WARC file, corrupt and truncated members, remote reads and a CC paths listing."""

from __future__ import annotations

import collections
import functools
import gzip
import http.server
import io
import threading
import zlib

import pyarrow.parquet as pq
import pytest

from pipeline.run.config import load_config
from pipeline.run.runner import run_pipeline
from pipeline.run.verify import verify
from pipeline.store.ledger import collect_stats
from pipeline.store.shards import KEPT, REJECTED
from stages.ingest.warc import WarcSource
from tests.conftest import LID, WARC

pytestmark = pytest.mark.shared_data

#: response + revisit + conversion records per file (warcio counts in ../shared/data/README.md)
ROWS = {"cc-main-2024-22_whirlwind.warc.gz": 1, "cc-main-2024-22_whirlwind.warc.wat.gz": 0,
        "cc-main-2024-22_whirlwind.warc.wet.gz": 1, "clueweb09-ja_quirk.warc.gz": 29, "dolma_sample-0000.warc.gz": 22,
        "dolma_sample-0001.warc.gz": 15, "ia-heritrix-2008_archive.org.warc.gz": 299,
        "pywb_iana.org.warc.gz": 48 + 123}


def read_all(src: WarcSource) -> tuple[list[dict], collections.Counter]:
    rows, counts = [], collections.Counter()
    for spec in src.plan():
        for t in src.read(spec):
            if isinstance(t, dict):
                counts.update(t)
            else:
                rows += t.to_pylist()
    return rows, counts


@pytest.fixture(scope="module")
def web_run(tmp_path_factory, ray_session):
    run_dir = tmp_path_factory.mktemp("web") / "run"
    raw = {"kind": "web", "source": {"type": "warc", "paths": [str(WARC)], "shard_bytes": 1_000_000},
           "stages": [{"type": "extract"}, {"type": "language_id", "model": str(LID), "languages": []}],
           "export": {"enabled": False}}
    run_pipeline(load_config(None, raw=raw), run_dir, progress=False)
    return run_dir


def stage_rows(run_dir, stage, part):
    return [r for f in sorted((run_dir / "stages" / stage / part).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]  # noqa: E501


def test_every_real_warc_file_runs_to_the_end(web_run):
    """CC (WARC, WET, WAT), wget, Heritrix WARC/0.17 with dns: records, pywb revisits, ClueWeb WARC/0.18 with EUC-JP
    and a malformed date: the ledger adds up, verify passes, every record is a row or a counted non-row."""
    assert verify(web_run) == []
    rows = stage_rows(web_run, "00-ingest", KEPT) + stage_rows(web_run, "00-ingest", REJECTED)
    per_file = collections.Counter(r["source_file"].rsplit("/", 1)[-1] for r in rows)
    assert {k: per_file.get(k, 0) for k in ROWS} == ROWS
    ingest = collect_stats(web_run)["stages"][0]
    assert ingest["counters"]["records_request"] == 470 and ingest["counters"]["records_warcinfo"] == 8
    reasons = ingest["reasons"]
    assert reasons["revisit"] == 123 and reasons["non_html"] > 100 and reasons["http_status"] > 0
    heritrix = [r for r in rows if "heritrix" in r["source_file"]]
    assert any((r["url"] or "").startswith("dns:") and r["reason"] == "non_html" for r in heritrix)


def test_japanese_pages_are_correct_japanese(web_run):
    ja = [r for r in stage_rows(web_run, "02-language_id", KEPT) if "clueweb" in r["source_file"]]
    assert len(ja) == 29 and all(r["language"] == "ja" for r in ja)
    assert any("ヘッドポーター" in r["text"] for r in ja)  # decoded from EUC-JP, not mojibake
    ingest = {r["id"]: r for r in stage_rows(web_run, "00-ingest", KEPT)}
    assert {ingest[r["id"]]["charset"] for r in ja} == {"euc-jp"}
    assert all(ingest[r["id"]]["warc_date"].startswith("2008-10-") for r in ja)  # the malformed date, kept as is


@pytest.mark.parametrize("damage", ["flip_bytes", "garbage", "truncate", "zero_tail"])
@pytest.mark.parametrize("victim", [0, 11, 30, 47])
def test_a_broken_member_rejects_what_it_broke_and_reading_goes_on(tmp_path, damage, victim):
    """Each kind of damage at several records: the broken record is one ``corrupt_record`` or
    ``truncated_record`` row at its offset; every undamaged response before and after it is read."""
    from fastwarc.warc import ArchiveIterator

    data = (WARC / "dolma_sample-0000.warc.gz").read_bytes()
    recs = [(r.stream_pos, str(r.record_type).rsplit(".", 1)[-1]) for r in ArchiveIterator(io.BytesIO(data))]
    pos = recs[victim][0]
    nxt = recs[victim + 1][0] if victim + 1 < len(recs) else len(data)
    if damage == "flip_bytes":
        blob = data[:pos + 30] + bytes(b ^ 0xFF for b in data[pos + 30:pos + 60]) + data[pos + 60:]
    elif damage == "garbage":
        blob = data[:pos] + b"NOT A GZIP MEMBER " * 40 + data[pos:]
    elif damage == "truncate":
        blob = data[:pos + (nxt - pos) // 2]
    else:
        blob = data[:pos + 20] + b"\x00" * (nxt - pos - 20) + data[nxt:]
    f = tmp_path / "damaged.warc.gz"
    f.write_bytes(blob)
    rows, _ = read_all(WarcSource(paths=[str(f)]))
    responses = [i for i, (_, k) in enumerate(recs) if k == "response"]
    if damage == "garbage":  # junk between two members: every record is intact
        expected_kept = len(responses)
    elif damage == "truncate":  # everything after the cut is gone; the cut record itself is truncated
        expected_kept = sum(1 for i in responses if i < victim)
    else:  # the victim's member is unreadable; the others are not
        expected_kept = sum(1 for i in responses if i != victim)
    kept = [r for r in rows if r["reason"] is None]
    broken = [r for r in rows if r["reason"] in ("corrupt_record", "truncated_record")]
    assert len(kept) == expected_kept
    expected_broken = 1
    if damage == "truncate":  # the cut record is a row when it is a response, or when its header was cut too
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob[pos:])
        expected_broken = int(victim in responses or b"\r\n\r\n" not in head)
    assert len(broken) == expected_broken
    if damage != "truncate":
        assert broken[0]["reason"] == "corrupt_record" and broken[0]["source_offset"] == pos
    assert len({r["id"] for r in rows}) == len(rows)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server (127.0.0.1) serving the shared WARC folder and a generated paths listing."""
    listing = tmp_path / "warc.paths.gz"
    listing.write_bytes(gzip.compress(b"dolma_sample-0001.warc.gz\ncc-main-2024-22_whirlwind.warc.gz\n"))
    handler = functools.partial(_Quiet, directory=str(WARC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", listing
    server.shutdown()


def test_remote_read_gives_the_same_rows_as_the_local_file(http_server):
    url, _ = http_server
    local, _ = read_all(WarcSource(paths=[str(WARC / "pywb_iana.org.warc.gz")]))
    remote, _ = read_all(WarcSource(paths=[f"{url}/pywb_iana.org.warc.gz"]))
    strip = [{k: v for k, v in r.items() if k not in ("id", "source_file")} for r in local]
    assert [{k: v for k, v in r.items() if k not in ("id", "source_file")} for r in remote] == strip
    assert all(r["source_file"].startswith("http://127.0.0.1") for r in remote)


def test_common_crawl_paths_listing(http_server):
    url, listing = http_server
    src = WarcSource(paths=[str(listing)], prefix=url + "/", max_files=2)
    assert src.expand() == [f"{url}/dolma_sample-0001.warc.gz", f"{url}/cc-main-2024-22_whirlwind.warc.gz"]
    rows, counts = read_all(src)
    assert len(rows) == 16 and counts["records_request"] == 16


@pytest.mark.fast
def test_saved_html_pages_packed_into_a_warc_read_back_as_they_were(tmp_path):
    """`make demo-math` packs a folder of saved pages into a WARC (pipeline.tiny.html_warc): our reader gives one
    200 response per page, its bytes and its name intact, no reason; a second call keeps the file."""
    from pipeline.tiny import html_warc

    pages = {"a.html": "<html><body><p>$x^2$ and \\(y\\)</p></body></html>",
             "sub/b.html": "<html><body><math><mi>z</mi></math> é 日本</body></html>"}
    for name, text in pages.items():
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text(text, encoding="utf-8")
    (tmp_path / "in" / "notes.txt").write_text("not a page")
    warc = html_warc(tmp_path / "in", tmp_path / "pages.warc.gz")
    rows, counts = read_all(WarcSource(paths=[str(warc)]))
    assert counts["records_response"] == 2 and all(r["reason"] is None for r in rows)
    assert {r["url"]: r["html"] for r in rows} == {f"file:///{k}": v for k, v in pages.items()}
    stamp = warc.stat().st_mtime_ns
    assert html_warc(tmp_path / "in", warc) == warc and warc.stat().st_mtime_ns == stamp
