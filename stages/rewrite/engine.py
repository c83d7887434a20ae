"""One vLLM engine fed continuously by several shards at once.

``LLM.generate`` adds a batch of requests and steps the engine until *all* of them finish: the engine drains at
the end of every call, and a shard smaller than ``max_num_seqs`` caps the batch at its row count (16 shards of
~62 requests ran at < 0.63 of one big ``generate`` on an H100). Here one thread owns the engine and makes the same
two calls ``generate`` makes (``add_request``, then ``step`` while anything is unfinished), but the shards'
threads hand it their requests whenever they are ready: the next shard's requests join the running batch while
the current one drains, and each shard gets its outputs (in its own order) as soon as its last request finishes.
Tokenization and validation happen in the shards' threads, beside generation.

If the engine dies (its engine-core process killed, CUDA error), every waiting shard gets ``EngineDead``: the
worker holding the engine is then broken, and the executor replaces it and retries those shards. The engine's
processes are also watched directly: when vLLM's engine-core process is killed, vLLM 0.32's synchronous client
marks itself dead but leaves ``step()`` waiting forever on its output queue, so an exception alone would never come.
"""

from __future__ import annotations

import itertools
import queue
import threading
from concurrent.futures import Future
from typing import Any

from pipeline.core.stage import WorkerBroken


class EngineDead(WorkerBroken):
    """The vLLM engine failed; the shards waiting on it are retried on a new worker."""


class _Batch:
    __slots__ = ("future", "outputs", "left")

    def __init__(self, n: int):
        self.future: Future = Future()
        self.outputs: list[Any] = [None] * n
        self.left = n


class EngineLoop:
    def __init__(self, engine, watch: list[int] = ()):
        """``watch``: pids of the engine's processes (its engine core); the loop fails when one exits."""
        self._engine = engine
        self.pids = list(watch)
        self._queue: queue.Queue = queue.Queue()
        self._where: dict[str, tuple[_Batch, int]] = {}
        self._ids = itertools.count()
        self._dead: BaseException | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="vllm-engine-loop", daemon=True)
        self._thread.start()
        if watch:
            threading.Thread(target=self._watch, args=(list(watch),), name="vllm-engine-watch", daemon=True).start()

    def generate(self, prompts: list, params) -> list:
        """Outputs of ``prompts`` (one ``RequestOutput`` each, in order); blocks this thread only. ``params``: one
        ``SamplingParams`` for all, or a list with one per prompt."""
        if not prompts:
            return []
        batch = _Batch(len(prompts))
        with self._lock:
            if self._dead is not None:
                raise EngineDead(f"the vLLM engine died earlier: {self._dead!r}")
            self._queue.put((batch, prompts, params))
        return batch.future.result()

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _watch(self, pids: list[int]) -> None:
        import time

        import psutil

        procs = []
        for pid in pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                pass
        while not self._closed and self._dead is None:
            for p in procs:
                try:
                    alive = p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                except psutil.Error:
                    alive = False
                if not alive and not self._closed:
                    self._fail(RuntimeError(f"engine process {p.pid} exited"))
                    return
            time.sleep(0.2)

    def _fail(self, exc: BaseException) -> None:
        """Every waiting shard, and every later one, gets EngineDead (or it would wait forever)."""
        with self._lock:
            if self._dead is not None:
                return
            self._dead = exc
            err = EngineDead(f"the vLLM engine failed: {type(exc).__name__}: {exc}"[:1000])
            for batch, _ in list(self._where.values()):
                if not batch.future.done():
                    batch.future.set_exception(err)
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None and not item[0].future.done():
                    item[0].future.set_exception(err)

    # -- the engine's thread -------------------------------------------------------------------------------
    def _add(self, item) -> None:
        from vllm.sampling_params import RequestOutputKind

        batch, prompts, params = item
        b = next(self._ids)
        for j, prompt in enumerate(prompts):
            rid = f"{b}-{j}"
            p = params[j] if isinstance(params, list) else params
            # only the finished output, as LLM.generate asks: no per-step detokenized copies of running requests
            p.output_kind = RequestOutputKind.FINAL_ONLY
            self._where[rid] = (batch, j)
            self._engine.add_request(rid, prompt, p)

    def _run(self) -> None:
        try:
            while True:
                items = [] if self._where else [self._queue.get()]  # idle: wait for work
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                for item in items:
                    if item is None:
                        return
                    self._add(item)
                for out in self._engine.step():
                    if not out.finished:
                        continue
                    batch, j = self._where.pop(out.request_id)
                    batch.outputs[j] = out
                    batch.left -= 1
                    if batch.left == 0:
                        batch.future.set_result(batch.outputs)
        except BaseException as exc:  # noqa: BLE001 - every waiting shard must learn it, or it waits forever
            self._fail(exc)
