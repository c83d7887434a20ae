"""What travels to a worker with each task: where the component reads and writes, and which unit of work it is.
Plain, typed data (paths as strings), so it pickles to any node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.store.shards import StageDir

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class StageContext:
    """Where one component of a run reads and writes."""

    run_dir: str
    stage_dir: str
    #: The previous stage's directory (None for the source).
    prev_dir: str | None
    kind: str
    index: int

    @property
    def dir(self) -> StageDir:
        return StageDir(self.stage_dir)

    @property
    def prev(self) -> StageDir | None:
        return StageDir(self.prev_dir) if self.prev_dir else None


@dataclass
class ShardContext:
    """What ``process`` (or a global stage's ``scan``) may need besides the rows: which shard, where the stage
    writes, and what the framework read for this shard."""

    stage: StageContext
    shard: str
    #: The shard's position among the stage's inputs (a scan's compact row keys); None outside a scan.
    shard_index: int | None = None
    #: A global stage's decisions for this shard's rows (the last global phase's output), read once per shard.
    decisions: "pa.Table | None" = None


@dataclass(frozen=True)
class Task:
    """One unit of work of one phase: a shard (``00012``) or a partition (``p003``)."""

    phase: str
    key: str
    #: Input files of the task (the previous stage's kept shard; nothing for a source or a reduce).
    inputs: tuple[str, ...] = ()
    #: A source shard's plan entry.
    spec: dict | None = None
