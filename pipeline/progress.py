"""Progress of long work: shards and records done, with rates (tqdm on stderr)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, label: str, total: int, done: int = 0, enabled: bool = True):
        self.t0 = time.time()
        self.rows = 0
        self.kept = 0
        self.bar = tqdm(total=total, initial=done, desc=f"{label:>16}", unit="shard", file=sys.stderr,
                        disable=not enabled, dynamic_ncols=True)

    def update(self, stats: dict) -> None:
        """One finished task: a shard (rows in and kept) or a phase task (rows)."""
        self.rows += stats.get("in", stats.get("rows", 0))
        rate = self.rows / max(time.time() - self.t0, 1e-6)
        if "kept" in stats:
            self.kept += stats["kept"]
            self.bar.set_postfix_str(f"rows {self.rows:,} kept {self.kept:,} ({rate:,.0f} rows/s)")
        else:
            self.bar.set_postfix_str(f"rows {self.rows:,} ({rate:,.0f} rows/s)")
        self.bar.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
