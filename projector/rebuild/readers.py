"""The Kafka replay's readers: processes that each fetch, decode and stage some partitions.

A replay from Kafka used to fetch every record in the main process, ship
every value to decoding processes and stage what they sent back from a
writer thread, so one core did all the fetching and all the staging. Each
reader now owns whole partitions: it fetches them itself (a group-less
consumer), decodes each chunk of records as the live path does
(``decode_chunk``), and appends the accepted events to an Arrow IPC file.
The main process only maps those files and types them in one parallel
statement. What crosses the process boundary is small: offsets, log marks,
dead letters and progress counts (docs/decisions/0022-kafka-replay-readers.md).

Partitions are shared by record count, largest first (each reader pays for
its own consumer, so there are as many shares as readers).
"""

from __future__ import annotations

import asyncio
import heapq
import os
import queue
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from projector.rebuild.errors import ReadError
from projector.store.bookkeeping import DeadLetter
from projector.store.logmark import LogMark, marks_of
from schemas import decode_value
from schemas.fastdecode import fast_decode

TopicPartition = tuple[str, int]

# Raw Kafka records per decoding chunk (whichever bound comes first).
CHUNK_RECORDS = 5_000
CHUNK_BYTES = 2_000_000
# Seconds between a reader's progress reports.
REPORT_EVERY = 0.25

STAGE_SCHEMA = pa.schema([("event_type", pa.string()), ("event", pa.string())])


def decode_chunk(values: list[bytes | None]) -> tuple[pa.Table, list[tuple[int, int, str]]]:
    """Decode records like the live path: accepted events as (event_type, event JSON), rejects.

    Each record is offered to the compiled fast path first
    (``schemas.fastdecode``, docs/decisions/0012-compiled-fast-decoder.md), which
    hands anything it is not sure of to ``decode_value``, the judge. Rejects
    are ``(record position in values, item index or -1, reason)``.
    """
    types: list[str] = []
    events: list[str] = []
    rejects: list[tuple[int, int, str]] = []
    for i, value in enumerate(values):
        data = value if value is not None else b""
        fast = fast_decode(data)
        if fast is not None:
            for kind, doc in fast:
                types.append(kind)
                events.append(doc)
            continue
        decoded = decode_value(data)
        for ev in decoded.events:
            types.append(ev.type)
            events.append(ev.model_dump_json())
        for r in decoded.rejects:
            rejects.append((i, -1 if r.index is None else r.index, r.reason))
    table = pa.table(
        {"event_type": pa.array(types, pa.string()), "event": pa.array(events, pa.string())},
        schema=STAGE_SCHEMA,
    )
    return table, rejects


@dataclass(frozen=True)
class Share:
    """What one reader reads: its partitions, each from ``start`` up to ``end`` (exclusive)."""

    index: int
    bootstrap: str
    start: dict[TopicPartition, int]
    end: dict[TopicPartition, int]
    stage: str  # the Arrow IPC file it writes
    since_ms: int | None = None


@dataclass
class ShareResult:
    """What a reader hands back besides its stage file."""

    records: int = 0
    events: int = 0
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    marks: dict[TopicPartition, LogMark] = field(default_factory=dict)
    deadletters: list[DeadLetter] = field(default_factory=list)
    seconds: float = 0.0  # wall time, start-up included
    cpu_seconds: float = 0.0  # this process's, for the balance of the shares


@dataclass(frozen=True)
class Progress:
    """A reader's running totals (cumulative, so a lost report loses nothing)."""

    share: int
    records: int
    events: int
    done: int  # partitions read to their end


def split(
    start: Mapping[TopicPartition, int], end: Mapping[TopicPartition, int], readers: int
) -> list[list[TopicPartition]]:
    """Partitions with records to read, in ``readers`` shares balanced by record count.

    Largest partition first onto the lightest share (LPT); empty shares are dropped.
    """
    todo = sorted(
        (tp for tp in end if end[tp] > start.get(tp, 0)),
        key=lambda tp: (start.get(tp, 0) - end[tp], tp),
    )
    heap = [(0, i) for i in range(max(1, readers))]
    shares: list[list[TopicPartition]] = [[] for _ in heap]
    for tp in todo:
        load, i = heapq.heappop(heap)
        shares[i].append(tp)
        heapq.heappush(heap, (load + end[tp] - start.get(tp, 0), i))
    return [sorted(s) for s in shares if s]


def bulk_consumer(bootstrap: str) -> Any:
    """A group-less consumer that reads whole partitions fast (big fetches, no CRC checks).

    The replay reads with it, and so does the raw-consumption baseline of
    ``bench.replay_bench``, so that baseline measures the same reads.
    """
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_wait_ms=100,
        check_crcs=False,
    )


# Set in each pool process by ``init_reader``: where progress reports go, and
# the event the main process sets when another reader failed (stop early).
_REPORTS: Any = None
_STOP: Any = None


def init_reader(reports: Any, stop: Any) -> None:
    global _REPORTS, _STOP
    _REPORTS, _STOP = reports, stop


def read_share(share: Share, report: Callable[[Progress], None] | None = None) -> ShareResult:
    """Fetch, decode and stage one share (in a pool process, or in this one for small replays)."""
    if report is None:
        reports = _REPORTS

        def report(p: Progress) -> None:
            if reports is not None:
                try:
                    reports.put_nowait(p)
                except queue.Full:
                    pass

    wall, cpu = time.monotonic(), time.process_time()
    out = asyncio.run(_read(share, report))
    out.seconds, out.cpu_seconds = time.monotonic() - wall, time.process_time() - cpu
    return out


class Fetcher:
    """Fetches each partition from ``start`` up to ``end`` (exclusive), group-less.

    ``batches()`` yields, per fetch, the records to apply and, for partitions
    where records older than ``since_ms`` were skipped, the offset after them.
    ``reached`` is each partition's next offset; ``done`` how many are at their end.
    """

    def __init__(
        self,
        bootstrap: str,
        start: Mapping[TopicPartition, int],
        end: Mapping[TopicPartition, int],
        since_ms: int | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.end = dict(end)
        self.since_ms = since_ms
        self.reached = {tp: start.get(tp, 0) for tp in end}
        self.active = {tp for tp in end if self.reached[tp] < end[tp]}
        self.done = len(end) - len(self.active)

    async def batches(self) -> AsyncIterator[tuple[list[Any], dict[TopicPartition, int]]]:
        from aiokafka import TopicPartition as KTP
        from aiokafka.errors import KafkaError

        from projector.rebuild.archive import stop_consumer

        reached, end, active = self.reached, self.end, self.active
        # offsets_for_times may answer with a batch's base offset on some
        # brokers: skip records older than --since until the first one at or after it.
        waiting = set(active) if self.since_ms is not None else set()
        consumer = bulk_consumer(self.bootstrap)
        try:
            await consumer.start()
            if active:
                consumer.assign([KTP(t, p) for t, p in sorted(active)])
                for t, p in active:
                    consumer.seek(KTP(t, p), reached[(t, p)])
            while active:
                fetched = await consumer.getmany(timeout_ms=1000)
                out: list[Any] = []
                skipped: dict[TopicPartition, int] = {}
                for ktp, records in fetched.items():
                    tp = (ktp.topic, ktp.partition)
                    if tp not in active:
                        continue
                    stop = end[tp]
                    for r in records:
                        if r.offset < reached[tp]:
                            continue  # a re-fetch
                        if r.offset >= stop:
                            break
                        reached[tp] = r.offset + 1
                        if tp in waiting:
                            if r.timestamp < self.since_ms:  # type: ignore[operator]
                                skipped[tp] = r.offset + 1
                                continue
                            waiting.discard(tp)
                        out.append(r)
                    if reached[tp] >= stop:
                        active.discard(tp)
                        consumer.pause(ktp)
                        self.done += 1
                yield out, skipped
        except KafkaError as e:
            raise ReadError(f"reading from {self.bootstrap} failed: {e!r}") from e
        finally:
            await stop_consumer(consumer)


async def _read(share: Share, report: Callable[[Progress], None]) -> ShareResult:
    out = ShareResult()
    last: dict[TopicPartition, tuple[int, bytes | None]] = {}
    meta: list[tuple[str, int, int]] = []  # (topic, partition, offset) per value
    values: list[bytes | None] = []
    size = 0
    reported = 0.0
    fetcher = Fetcher(share.bootstrap, share.start, share.end, share.since_ms)

    with pa.OSFile(share.stage, "wb") as sink, pa.ipc.new_file(sink, STAGE_SCHEMA) as writer:

        def stage() -> None:
            nonlocal values, meta, size
            table, rejects = decode_chunk(values)
            for i, index, reason in rejects:
                topic, partition, offset = meta[i]
                out.deadletters.append(DeadLetter(topic, partition, offset, index, reason))
            if table.num_rows:
                writer.write_table(table)
            out.events += table.num_rows
            values, meta, size = [], [], 0

        async for records, _ in fetcher.batches():
            if _STOP is not None and _STOP.is_set():
                raise ReadError("stopped: another reader failed")
            for r in records:
                meta.append((r.topic, r.partition, r.offset))
                values.append(r.value)
                size += len(r.value) if r.value is not None else 0
                last[(r.topic, r.partition)] = (r.offset, r.value)
            out.records += len(records)
            if size >= CHUNK_BYTES or len(values) >= CHUNK_RECORDS:
                stage()
            now = time.monotonic()
            if now - reported >= REPORT_EVERY:
                reported = now
                report(Progress(share.index, out.records, out.events, fetcher.done))
        if values:
            stage()
    out.offsets = fetcher.reached
    out.marks = marks_of(last)
    report(Progress(share.index, out.records, out.events, fetcher.done))
    return out


def readers_for(records: int, requested: int | None, pool_min_records: int) -> int:
    """How many reader processes: 0 (read in this process) below ``pool_min_records``."""
    if records < pool_min_records:
        return 0
    return requested if requested is not None else (os.cpu_count() or 1)
