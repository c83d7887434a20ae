"""Progress of long work: shards and records done, with rates (tqdm on a terminal, plain lines in a log).

On a terminal a bar per phase, its postfix the rows done (finished shards plus the rows done so far inside the
shards under way, which they write to ``work/progress/SHARD.json``) and the rate. Where stderr is no terminal (a log
file, ``ray job submit``'s output) there is no bar: one line when the phase starts, one at most every 30 seconds, one
at its end, so a log holds lines, not thousands of carriage returns.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

#: Seconds between the plain lines of a phase in a log, and between polls of the shards under way.
LOG_EVERY_S, POLL_S = 30.0, 2.0


class Progress:
    def __init__(self, label: str, total: int, done: int = 0, enabled: bool = True, watch: list | None = None):
        self.t0 = time.time()
        self.label, self.total, self.done = label, total, done
        self.rows = 0
        self.kept = 0
        self.inside = 0  # rows done inside the shards under way
        self.tty = enabled and sys.stderr.isatty()
        self.plain = enabled and not self.tty
        self.bar = tqdm(total=total, initial=done, desc=f"{label:>16}", unit="shard", file=sys.stderr,
                        disable=not self.tty, dynamic_ncols=True)
        self.watch = [Path(w) for w in (watch or [])]
        self.last_line = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        if enabled and self.watch and done < total:
            self._thread = threading.Thread(target=self._poll, name="progress", daemon=True)
            self._thread.start()
        if self.plain and done < total:
            self._line("started")

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            inside = 0
            for d in self.watch:
                for p in (d / "work" / "progress").glob("*.json"):
                    if p.name.startswith(".tmp-") or (d / "done" / p.name).exists():
                        continue
                    try:
                        inside += json.loads(p.read_text()).get("rows_done", 0)
                    except (OSError, ValueError):
                        continue
            with self._lock:
                self.inside = inside
                self._show()

    def _show(self) -> None:
        rows = self.rows + self.inside
        rate = rows / max(time.time() - self.t0, 1e-6)
        kept = f" kept {self.kept:,}" if self.kept else ""
        under = f" (+{self.inside:,} in shards under way)" if self.inside else ""
        text = f"rows {self.rows:,}{kept}{under} ({rate:,.0f} rows/s)"
        if self.tty:
            self.bar.set_postfix_str(text)
        elif self.plain and time.time() - self.last_line >= LOG_EVERY_S:
            self._line(text)

    def _line(self, text: str) -> None:
        self.last_line = time.time()
        print(f"{self.label}: {self.done}/{self.total} shards, {text}", file=sys.stderr, flush=True)

    def update(self, stats: dict) -> None:
        """One finished task: a shard (rows in and kept) or a phase task (rows)."""
        with self._lock:
            self.rows += stats.get("in", stats.get("rows", 0))
            self.kept += stats.get("kept", 0)
            self.done += 1
            self.bar.update(1)
            self._show()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.bar.close()
        if self.plain and self.done:
            rate = self.rows / max(time.time() - self.t0, 1e-6)
            self._line(f"rows {self.rows:,}" + (f" kept {self.kept:,}" if self.kept else "")
                       + f" ({rate:,.0f} rows/s), done in {time.time() - self.t0:.0f} s")
