"""The web path beside datatrove's, same documents, same machine, alternating rounds (issue 25).

Both sides read the same input (``--copies`` files, each the 7 real WARC files of ../shared/data/warc
concatenated), extract with trafilatura called the same way (datatrove's Trafilatura() defaults: favor_precision,
deduplicate, no comments, 1 s per page before a page is given up; our prose fallback stays on), identify the
language with the same fastText lid.176 (English ≥ 0.65) and apply Gopher quality, Gopher repetition, C4 and
FineWeb at datatrove 0.10.1's defaults, with ``--workers`` processes:

ours:      ``swallow run`` of the config written below (warc → extract with math off, or on with ``--math`` →
           language_id → the four rule stages), an embedded Ray
datatrove: ``LocalPipelineExecutor`` (WarcReader → Trafilatura → LanguageFilter → the four filters → JsonlWriter),
           ``tasks`` = the number of files

Measured per round, for the whole process tree of each side (sampled every 0.2 s with psutil; rusage misses Ray's
workers and datatrove's forkserver children): wall seconds, CPU seconds (user + system, each process's last
sample: a process living under 0.2 s is missed on both sides), peak PSS summed over the tree. Then: distinct
documents kept by each (by WARC record id: the copies repeat them), kept by both, and the share of those whose
extracted texts are identical. Both sides get the same time limit. Last, untimed: datatrove once more on one file
with a writer after the extractor and an exclusion writer on every filter, and per filter the verdicts of both
sides on the documents whose extracted texts are identical.

    pip install faust-cchardet python-magic fasteners orjson   # what datatrove's reader, LID and writer need
    python benchmarks/bench_web_peer.py [--rounds 2] [--copies 4] [--workers 2] [--math]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
LID = SHARED / "fasttext" / "lid.176.ftz"

DATATROVE = r'''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter, LanguageFilter)
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.writers import JsonlWriter

src, out, logs, tasks, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
pipeline = [WarcReader(src, glob_pattern="*.warc.gz"), Trafilatura(), LanguageFilter(languages=["en"]),
            GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter(),
            JsonlWriter(out, output_filename="${rank}.jsonl.gz")]
LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logs).run()
'''


# The same pipeline, once more after the timed rounds (not timed: its writers cost), writing what trafilatura gave
# and what each filter dropped: the verdicts per filter, compared with ours on the documents whose texts agree.
DATATROVE_VERDICTS = r'''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                        GopherRepetitionFilter, LanguageFilter)
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.writers import JsonlWriter

src, out, logs = sys.argv[1], sys.argv[2], sys.argv[3]
w = lambda name: JsonlWriter(f"{out}/{name}", output_filename="${rank}.jsonl.gz")
pipeline = [WarcReader(src, glob_pattern="*.warc.gz"), Trafilatura(), w("extracted"),
            LanguageFilter(languages=["en"], exclusion_writer=w("language_id")),
            GopherQualityFilter(exclusion_writer=w("gopher_quality")),
            GopherRepetitionFilter(exclusion_writer=w("gopher_repetition")),
            C4QualityFilter(exclusion_writer=w("c4_filter")),
            FineWebQualityFilter(exclusion_writer=w("fineweb_filter")),
            w("kept")]
LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=logs).run()
'''
FILTERS = ["language_id", "gopher_quality", "gopher_repetition", "c4_filter", "fineweb_filter"]


def make_input(dest: Path, copies: int) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    blob = b"".join(p.read_bytes() for p in sorted((SHARED / "warc").glob("*.warc.gz")))
    for i in range(copies):
        (dest / f"part{i:02d}.warc.gz").write_bytes(blob)
    return dest


def our_config(src: Path, path: Path, workers: int, math: bool = False) -> Path:
    import yaml

    # trafilatura called as datatrove's Trafilatura() calls it: favor_precision, deduplicate, no comments, 1 s a page;
    # --math: formulas kept (the LaTeX pre-pass and the whole-article fallback, our defaults), which datatrove lacks
    stages = [{"type": "extract", "math": math, "math_fallback": math, "include_comments": False,
               "favor_precision": True, "deduplicate": True, "timeout_s": 1},
              {"type": "language_id", "model": str(LID), "languages": ["en"], "min_score": 0.65, "max_chars": 0,
               "mask_math": False},
              {"type": "gopher_quality"}, {"type": "gopher_repetition"}, {"type": "c4_filter"},
              {"type": "fineweb_filter"}]
    # one shard per input file, as datatrove's side has one task per file (ours groups small files up to 512 MB by
    # default: three 4 MB files would be one shard on one worker)
    raw = {"kind": "web", "source": {"type": "warc", "paths": [str(src)], "shard_bytes": 1}, "stages": stages,
           "export": {"enabled": False}, "ray": {"num_cpus": workers}}
    path.write_text(yaml.safe_dump(raw))
    return path


def datatrove_home(home: Path) -> dict:
    """An HF cache holding lid.176 where datatrove's LanguageFilter looks for its download (no network here)."""
    env = {**os.environ, "HF_HOME": str(home)}
    code = ("import os; from datatrove.io import cached_assets_path, strip_protocol; "
            "from datatrove.utils.lid import FT176LID; print(os.path.join(cached_assets_path(library_name='datatrove',"
            " namespace='lid', subfolder='ft176'), strip_protocol(FT176LID.MODEL_URL).replace('/', '_')))")
    target = Path(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip())  # where datatrove looks, as datatrove names it
    shutil.copy(LID, target)
    Path(f"{target}.completed").touch()
    # datatrove insists on the distribution fasttext-numpy2-wheel; the same module is installed here as
    # fasttext-numpy2. Every process of that side (its forkserver children too) accepts it through sitecustomize.
    shim = home / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import datatrove.utils._import_utils as u\n_orig = u._is_distribution_available\n"
        "u._is_distribution_available = lambda name: name == 'fasttext-numpy2-wheel' or _orig(name)\n")
    env["PYTHONPATH"] = str(shim)
    return env


def ours_command() -> tuple[str, dict]:
    """The ``swallow`` command beside this interpreter and its environment: an embedded Ray of its own (no
    cluster address inherited), without Ray's token auth."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled")
    return str(Path(sys.executable).with_name("swallow")), env


def measure(cmd: list[str], env: dict, timeout: float, cwd: Path) -> dict:
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    cpu: dict[int, float] = {}
    peak = 0
    while proc.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        pss = 0
        for p in tree:
            try:
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system  # not children_*: the children are sampled themselves
                pss += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        peak = max(peak, pss)
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            break
        time.sleep(0.2)
    err = proc.stderr.read().decode("utf-8", "replace")[-2000:] if proc.stderr else ""
    proc.wait()
    return {"wall": time.perf_counter() - t0, "cpu": sum(cpu.values()), "pss": peak, "rc": proc.returncode,
            "err": err}


def kept_ours(run: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    folder = sorted(d for d in (run / "stages").iterdir() if d.name.endswith("fineweb_filter"))[-1] / "kept"
    out = {}
    for f in sorted(folder.glob("*.parquet")):
        for r in pq.read_table(f, columns=["warc_record_id", "text"]).to_pylist():
            out[r["warc_record_id"]] = r["text"]
    return out


def kept_datatrove(out: Path) -> dict[str, str]:
    docs = {}
    for f in sorted(out.glob("*.jsonl.gz")):
        for line in gzip.open(f, "rt"):
            d = json.loads(line)
            docs[d["id"]] = d["text"]
    return docs


def jsonl_docs(folder: Path) -> dict[str, str]:
    return {d["id"]: d["text"] for f in sorted(folder.glob("*.jsonl.gz")) for d in map(json.loads, gzip.open(f, "rt"))}


def verdict_agreement(run: Path, tmp: Path, env_dt: dict) -> None:
    """Per filter, on the documents both sides extracted to the same text: how many each filter judged on both
    sides and how many verdicts (pass / drop) agree. One input file (the copies repeat it)."""
    import pyarrow.parquet as pq

    one = tmp / "one"
    one.mkdir()
    first = sorted((tmp / "input").glob("*.warc.gz"))[0]
    (one / first.name).symlink_to(first)
    out = tmp / "dt-verdicts"
    r = subprocess.run([sys.executable, "-c", DATATROVE_VERDICTS, str(one), str(out), str(out / "logs")], env=env_dt,
                       capture_output=True, text=True)
    if r.returncode:
        print("datatrove's verdict run failed:", r.stderr[-1500:])
        return
    theirs_text = jsonl_docs(out / "extracted")
    theirs_fate = {i: name for name in FILTERS for i in jsonl_docs(out / name)}
    stages = {d.name.split("-", 1)[1]: d for d in (run / "stages").iterdir()}
    ours_text = {}
    for f in sorted((stages["extract"] / "kept").glob("*.parquet")):
        for row in pq.read_table(f, columns=["warc_record_id", "text"]).to_pylist():
            ours_text[row["warc_record_id"]] = row["text"]
    ours_fate = {}
    for name in FILTERS:
        for f in sorted((stages[name] / "rejected").glob("*.parquet")):
            for i in pq.read_table(f, columns=["warc_record_id"]).column("warc_record_id").to_pylist():
                ours_fate[i] = name
    both = [i for i in theirs_text if i in ours_text]
    same = [i for i in both if theirs_text[i].strip() == ours_text[i].strip()]
    print(f"\nverdicts per filter (one file): extracted by both {len(both)}, same text {len(same)} "
          f"({len(same) / max(len(both), 1):.0%}); on those:")
    print("| filter | judged by both | same verdict | agreement |")
    print("|---|---:|---:|---:|")
    for k, name in enumerate(FILTERS):
        def reached(fate):  # the document got to this filter: no earlier filter dropped it
            return fate is None or FILTERS.index(fate) >= k
        judged = [i for i in same if reached(ours_fate.get(i)) and reached(theirs_fate.get(i))]
        agree = sum((ours_fate.get(i) == name) == (theirs_fate.get(i) == name) for i in judged)
        print(f"| {name} | {len(judged)} | {agree} | {agree / max(len(judged), 1):.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--math", action="store_true", help="ours keeps formulas (math: true, math_fallback: true)")
    ap.add_argument("--inline", action="store_true",
                    help="also ours with --executor inline (no Ray: one process, one shard at a time)")
    a = ap.parse_args()
    import importlib.util

    missing = [m for m in ("cchardet", "magic", "fasteners", "orjson") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"datatrove's WarcReader, LanguageFilter and JsonlWriter need {', '.join(missing)}: "
                         "pip install faust-cchardet python-magic fasteners orjson")
    tmp = Path(tempfile.mkdtemp(prefix="webpeer-"))
    src = make_input(tmp / "input", a.copies)
    env_dt = datatrove_home(tmp / "hf")
    swallow, env_ours = ours_command()
    config = our_config(src, tmp / "web.yaml", a.workers, a.math)
    sides = ["ours", "datatrove"] + (["ours-inline"] if a.inline else [])
    results: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(a.rounds):
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            if side.startswith("ours"):
                run = tmp / f"{side}{r}"
                cmd = [swallow, "run", str(config), "--output", str(run), "--no-progress", "--no-export"]
                cmd += ["--executor", "inline"] if side == "ours-inline" else []
                m = measure(cmd, env_ours, a.timeout, tmp)
                m["kept"] = kept_ours(run) if m["rc"] == 0 else {}
            else:
                out = tmp / f"dt{r}"
                cmd = [sys.executable, "-c", DATATROVE, str(src), str(out / "out"), str(out / "logs"),
                       str(a.copies), str(a.workers)]
                m = measure(cmd, env_dt, a.timeout, tmp)
                m["kept"] = kept_datatrove(out / "out") if m["rc"] == 0 else {}
            results[side].append(m)
            print(f"round {r + 1} {side:<11} wall {m['wall']:6.1f} s  cpu {m['cpu']:6.1f} s  peak PSS "
                  f"{m['pss'] / 2**30:.2f} GiB  kept {len(m['kept'])}  rc {m['rc']}", flush=True)
            if m["rc"]:
                print(m["err"])
    print(f"\n{a.copies} files x 7 WARCs, {a.workers} workers, {a.rounds} rounds, {os.cpu_count()} cores, ours with "
          f"math {'on' if a.math else 'off'}")
    print("| side | wall min / median s | CPU median s | peak PSS GiB | kept |")
    print("|---|---:|---:|---:|---:|")
    for side, ms in results.items():
        walls, cpus = [m["wall"] for m in ms], [m["cpu"] for m in ms]
        print(f"| {side} | {min(walls):.0f} / {statistics.median(walls):.0f} | {statistics.median(cpus):.0f} | "
              f"{max(m['pss'] for m in ms) / 2**30:.2f} | {len(ms[-1]['kept'])} |")
    ours, theirs = results["ours"][-1]["kept"], results["datatrove"][-1]["kept"]
    both = set(ours) & set(theirs)
    same = sum(1 for k in both if ours[k].strip() == theirs[k].strip())
    ratio = statistics.median(m["cpu"] for m in results["ours"]) / \
        statistics.median(m["cpu"] for m in results["datatrove"])
    if "ours-inline" in results:
        inline = statistics.median(m["cpu"] for m in results["ours-inline"]) / \
            statistics.median(m["cpu"] for m in results["datatrove"])
        print(f"\nCPU ours with --executor inline / datatrove (medians): {inline:.2f}; kept "
              f"{len(results['ours-inline'][-1]['kept'])}, the same documents as ours with Ray: "
              f"{set(results['ours-inline'][-1]['kept']) == set(ours)}")
    print(f"\nCPU ours / datatrove (medians): {ratio:.2f}; kept by both {len(both)}, only ours "
          f"{len(set(ours) - both)}, only datatrove {len(set(theirs) - both)}; identical text on {same} of {len(both)}")
    if results["ours"][-1]["rc"] == 0:
        verdict_agreement(tmp / f"ours{a.rounds - 1}", tmp, env_dt)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
