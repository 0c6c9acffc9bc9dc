"""What the pipeline tells the API about itself: position, lag, readiness.

The worker writes it from its event loop; API threads read snapshots. A plain
lock keeps both sides simple; reads copy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class PipelineSnapshot:
    mode: str  # "live" (projector in process) or "read-only" (a database file alone)
    ready: bool
    offsets: dict[TopicPartition, int]
    log_end: dict[TopicPartition, int]
    inconsistent: dict[TopicPartition, str]
    flush_seq: int
    events_applied: int
    last_error: str | None

    @property
    def lag(self) -> int | None:
        """Records behind the log end over all partitions; None when unknown."""
        if not self.log_end:
            return None
        return sum(max(0, end - self.offsets.get(tp, 0)) for tp, end in self.log_end.items())

    @property
    def watermark(self) -> str:
        """Compact position: 'topic:partition=next_offset,...' sorted."""
        return ",".join(f"{t}:{p}={o}" for (t, p), o in sorted(self.offsets.items()))


@dataclass
class PipelineStatus:
    mode: str = "live"
    ready: bool = False
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    log_end: dict[TopicPartition, int] = field(default_factory=dict)
    inconsistent: dict[TopicPartition, str] = field(default_factory=dict)
    flush_seq: int = 0
    events_applied: int = 0
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **values: object) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(self, k, v)

    def snapshot(self) -> PipelineSnapshot:
        with self._lock:
            return PipelineSnapshot(
                self.mode,
                self.ready,
                dict(self.offsets),
                dict(self.log_end),
                dict(self.inconsistent),
                self.flush_seq,
                self.events_applied,
                self.last_error,
            )
