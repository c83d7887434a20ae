"""Which executor a run gets when none is named (``--executor auto``, the default).

Ray's fixed cost on a local machine is its start (~10-15 s on 2 cores: the raylet, the GCS, workers importing the
stages) and a worker per stage; a run whose whole work is smaller than that pays more for Ray than for the work. On
the 7 shared WARC files (177 pages) the Ray executor used 1.25-1.40x datatrove's CPU per document and the inline one
0.87x; at 12x the input the two were equal. So a local run whose estimated work (raw input MB x the components'
``work_s_per_mb``) is below ``INLINE_WORK_S`` runs inline, in this process; a cluster (``ray.address`` or
``RAY_ADDRESS``), a stage that asks for GPUs, or more work runs on Ray. The choice and its reason are logged.
"""

from __future__ import annotations

import os

#: Estimated CPU seconds of work below which a local run is cheaper inline than on Ray.
INLINE_WORK_S = 60.0


def input_mb(source) -> float:
    """Megabytes of raw input (remote inputs count as large: a crawl)."""
    total = 0
    try:
        paths = source.inputs()
    except Exception:  # noqa: BLE001 - unknown: large
        return float("inf")
    for p in paths:
        if "://" in p and not p.startswith("file://"):
            return float("inf")
        try:
            total += os.path.getsize(p.removeprefix("file://"))
        except OSError:
            continue
    return total / 2**20


def choose_executor(cfg) -> tuple[str, str]:
    """(executor, why) for ``cfg`` run on this machine."""
    if cfg.ray.address or os.environ.get("RAY_ADDRESS"):
        return "ray", "a Ray cluster is named"
    comps = cfg.components()
    cpus = cfg.ray.num_cpus or os.cpu_count() or 1
    for c in comps:  # a worker no local node can place fails here with Ray's words, before either executor starts
        for key in ("num_cpus", "reduce_num_cpus"):
            need = float(getattr(c, key, 0.0))
            if need > cpus:
                from pipeline.core.errors import ResourceError

                raise ResourceError(f"stage {c.name} needs {need:g} CPUs per worker; the largest node has {cpus:g} "
                                    f"(set stages.{c.name}.{key})")
    if any(getattr(c, "num_gpus", 0) or getattr(c, "tensor_parallel_size", 1) > 1 for c in comps):
        return "ray", "a stage asks for GPUs"
    mb = input_mb(cfg.source)
    work = mb * sum(type(c).work_s_per_mb for c in comps)
    if work < INLINE_WORK_S:
        return "inline", (f"a small local run ({mb:.1f} MB in, ~{work:.0f} CPU-s of work < {INLINE_WORK_S:.0f}): "
                          f"inline costs less than Ray's start; --executor ray to use Ray")
    return "ray", f"~{work:.0f} CPU-s of work ({mb:.1f} MB in): spread over Ray's workers"
