"""Memory over a long run: the demo's code path (exact dedup, syntax, lint, MinHash, length, tokenize; the two
rewrite stages left out, see docs/reliability.md) on COPIES x the demo's data, with the resident memory of the
driver and of every worker sampled through the run. Flat means: no process grows with the shards it has done
(the peak over the last third of a process's life is not above the peak over its first third, plus 10 %).

    python benchmarks/memory.py --copies 20 --out docs/memory.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_corpus(dest: Path, copies: int) -> int:
    """``copies`` copies of the demo's standard-library sample, each file given a header naming its copy (so
    exact dedup keeps them; MinHash still finds them near-identical, as it would forks)."""
    from pipeline.tiny import stdlib_sample

    sample = stdlib_sample(dest / "sample")
    files = sorted(sample.rglob("*.py"))
    n = 0
    for k in range(copies):
        for f in files:
            out = dest / "corpus" / f"copy{k:03d}" / f.relative_to(sample)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(f"# copy {k} of {f.name}\n" + f.read_text(encoding="utf-8", errors="replace"))
            n += 1
    return n


def config(dest: Path) -> Path:
    demo = yaml.safe_load((ROOT / "configs" / "demo_code.yaml").read_text())
    from tests.reliability.configs import GPT2

    stages = [s for s in demo["stages"] if s["type"] not in ("rewrite", "tokenize")]
    stages.append({"type": "tokenize", "tokenizer": str(GPT2)})
    raw = {"kind": "code", "source": {**demo["source"], "paths": [str(dest / "corpus")]}, "stages": stages,
           "export": {"enabled": False}, "ray": {"num_cpus": 2, "object_store_memory": 300_000_000}}
    path = dest / "memory.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def role(p: psutil.Process, driver: int) -> str | None:
    if p.pid == driver:
        return "driver"
    try:
        line = " ".join(p.cmdline())
    except psutil.Error:
        return None
    if line.startswith("ray::swallow ") or line.startswith("ray::_Worker"):
        return "worker"
    if "lint/server.py" in line:
        return "lint server"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--out", default="docs/memory.png", help="the plot (PNG)")
    ap.add_argument("--json", help="also write the samples here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_files = make_corpus(tmp, args.copies)
        cfg = config(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(cfg), "--output",
                                 str(tmp / "run"), "--no-progress"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        samples: dict[int, list] = {}  # pid -> [(t, rss_mb, role, title)]
        while proc.poll() is None:
            try:
                procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            now = time.time() - t0
            for p in procs:
                r = role(p, proc.pid)
                if r is None:
                    continue
                try:
                    samples.setdefault(p.pid, []).append((round(now, 2), p.memory_info().rss / 2**20, r,
                                                          " ".join(p.cmdline())[:60]))
                except psutil.Error:
                    pass
            time.sleep(0.25)
        wall = time.time() - t0
        assert proc.returncode == 0, f"the run failed (exit code {proc.returncode})"
        from pipeline.store.ledger import collect_stats

        stats = collect_stats(tmp / "run")
    shards = len(stats["stages"][0].get("shards", [])) if isinstance(stats["stages"][0].get("shards"), list) else None
    summary = []
    for pid, s in samples.items():
        if s[-1][0] - s[0][0] < 20:  # a worker of a short phase: too few samples to speak of growth
            continue
        third = len(s) // 3
        first, last = max(x[1] for x in s[:third]), max(x[1] for x in s[-third:])
        summary.append({"pid": pid, "role": s[0][2], "samples": len(s), "life_s": round(s[-1][0] - s[0][0], 1),
                        "peak_first_third_mb": round(first, 1), "peak_last_third_mb": round(last, 1),
                        "peak_mb": round(max(x[1] for x in s), 1), "flat": last <= first * 1.10})
    summary.sort(key=lambda r: -r["life_s"])
    print(json.dumps({"files": n_files, "copies": args.copies, "wall_s": round(wall, 1), "shards": shards,
                      "processes": summary}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "samples": samples}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    colors = {"driver": "tab:red", "worker": "tab:blue", "lint server": "tab:green"}
    for pid, s in samples.items():
        ax.plot([x[0] for x in s], [x[1] for x in s], color=colors[s[0][2]], lw=0.8, alpha=0.7)
    for r, c in colors.items():
        ax.plot([], [], color=c, label=r)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_title(f"RSS per process, {n_files} files ({args.copies}x the demo data), {wall:.0f} s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
