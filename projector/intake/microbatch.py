"""The micro-batch: records taken since the last commit, and the rules for committing them.

A batch holds the decoded events and dead letters of the records it took,
where each partition's records start and end (the offsets to store, the log
mark of the last record, where to read again if the batch is dropped), and
the acknowledgements to give once it is committed. It is due when its oldest
record has waited ``interval`` seconds, full at ``max_events``; a commit that
fails puts it back in front of what arrived meanwhile (quix-streams'
``checkpointing/checkpoint.py`` is the model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from projector.store.bookkeeping import DeadLetter
from projector.store.logmark import LogMark, marks_of

TopicPartition = tuple[str, int]
Ack = Callable[[], Any]


@dataclass
class MicroBatch:
    events: list[Any] = field(default_factory=list)
    # The source partition of each event (a sharded store commits each
    # partition's events with that partition's offsets: projector.store.shards).
    parts: list[int] = field(default_factory=list)
    # The offset of the next record to read, per partition: stored with the rows.
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # Last record per partition (offset, value): digested into a LogMark at commit.
    last: dict[TopicPartition, tuple[int, bytes | None]] = field(default_factory=dict)
    # First offset per partition: where to read again if the batch is dropped.
    first: dict[TopicPartition, int] = field(default_factory=dict)
    # (dead letter, record key, raw value) for the dead-letter topic.
    deadletters: list[tuple[DeadLetter, bytes | None, bytes]] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    # Kafka timestamps (epoch seconds) of the records, for the freshness histogram.
    stamps: list[float] = field(default_factory=list)
    records: int = 0
    started: float = 0.0  # monotonic time of the first record

    def __len__(self) -> int:
        return len(self.events) + len(self.deadletters)

    def take(
        self,
        tp: TopicPartition,
        offset: int,
        value: bytes | None,
        ack: Ack | None,
        timestamp: float | None,
    ) -> None:
        """Account for one record (its events and dead letters are added by the caller)."""
        if not self.records:
            self.started = time.monotonic()
        self.records += 1
        self.offsets[tp] = offset + 1
        self.last[tp] = (offset, value)
        self.first.setdefault(tp, offset)
        if ack is not None:
            self.acks.append(ack)
        if timestamp is not None:
            self.stamps.append(timestamp)

    def full(self, max_events: int) -> bool:
        return len(self) >= max_events

    def due(self, interval: float, now: float | None = None) -> float:
        """Seconds until the batch must be committed (0 or less: now)."""
        return self.started + interval - (time.monotonic() if now is None else now)

    def marks(self) -> dict[TopicPartition, LogMark]:
        """The log mark of the last record of each partition (``projector.store.logmark``)."""
        return marks_of(self.last)

    def restore(self, newer: MicroBatch) -> MicroBatch:
        """This uncommitted batch put back in front of ``newer`` (what arrived meanwhile)."""
        self.events.extend(newer.events)
        self.parts.extend(newer.parts)
        self.deadletters.extend(newer.deadletters)
        self.acks.extend(newer.acks)
        self.stamps.extend(newer.stamps)
        self.offsets.update(newer.offsets)
        self.last.update(newer.last)
        for tp, offset in newer.first.items():
            self.first.setdefault(tp, offset)
        self.records += newer.records
        return self

    def acknowledge(self) -> None:
        """After the commit: tell the consumer it may move past every record taken."""
        for ack in self.acks:
            ack()
