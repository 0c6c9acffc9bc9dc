"""``projector replay``: rebuild a fresh database from Kafka, or from the archive then Kafka.

The rebuild never touches a live database: it refuses an existing ``--db``,
builds into ``<db>.partial`` and renames it into place only when complete, so
a crashed or interrupted replay leaves nothing a swap could pick up.

Same result as the live path, by construction:

* records are decoded with ``schemas.decode_value`` and rejected items become
  ``DeadLetter`` rows at the same (topic, partition, offset, item_index); the
  dead-letter *topic* is not written (the live path did that already);
* events go through ``Store.flush`` (the same pure fold, the same writer, one
  transaction with the offsets reached); the fold is order- and
  batching-independent (F1, F2), so 50k-event flushes give the rows that the
  live path's small ones gave.

Speed: the store's write-through row cache serves the fold's prior for a
database that started empty, so flushes read nothing back from DuckDB; the
cache is bounded by ``memory_rows`` (past it, it is dropped whole and rebuilt
from misses). Flushes run in a writer thread while the next batch is fetched
and decoded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from projector.errors import ProjectorError, StoreError
from projector.logmark import LogMark, digest
from projector.settings import Settings
from projector.store import DeadLetter, FlushResult, Store
from schemas import decode_value

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]

BATCH_EVENTS = 50_000
# Rows the store's cache may hold (recipients, messages and attempts dominate,
# ~1 KB each in Python): a few GB at most.
MEMORY_ROWS = 3_000_000


class ReplayError(ProjectorError):
    """The replay could not run; nothing was published at ``--db``."""


@dataclass
class Stats:
    events: int = 0
    deadletters: int = 0
    records: int = 0
    flushes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.events / max(time.monotonic() - self.started, 1e-9)


class Batcher:
    """Collects events, dead letters and offsets; flushes in a writer thread, one at a time."""

    def __init__(self, store: Store, *, batch_events: int = BATCH_EVENTS) -> None:
        self.store = store
        self.batch_events = batch_events
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-writer")
        self.events: list[Any] = []
        self.deadletters: list[DeadLetter] = []
        self.offsets: dict[TopicPartition, int] = {}
        # Last record per partition, for the log marks (projector.logmark).
        self.last: dict[TopicPartition, tuple[int, bytes | None]] = {}
        self.stats = Stats()
        self._inflight: Future[FlushResult] | None = None

    def add_record(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        decoded = decode_value(value if value is not None else b"")
        self.events.extend(decoded.events)
        for reject in decoded.rejects:
            index = -1 if reject.index is None else reject.index
            self.deadletters.append(DeadLetter(topic, partition, offset, index, reject.reason))
        self.offsets[(topic, partition)] = offset + 1
        self.last[(topic, partition)] = (offset, value)
        self.stats.records += 1

    @property
    def full(self) -> bool:
        return len(self.events) + len(self.deadletters) >= self.batch_events

    def _submit(self) -> Future[FlushResult] | None:
        if not (self.events or self.deadletters or self.offsets):
            return None
        events, dls, offsets = self.events, self.deadletters, self.offsets
        marks = {tp: LogMark(off, digest(value)) for tp, (off, value) in self.last.items()}
        self.events, self.deadletters, self.offsets, self.last = [], [], {}, {}
        self.stats.events += len(events)
        self.stats.deadletters += len(dls)
        self.stats.flushes += 1
        return self.executor.submit(self.store.flush, events, offsets, dls, marks)

    def flush(self) -> None:
        """Start flushing the buffer once the previous flush is done (synchronous callers)."""
        if self._inflight is not None:
            self._inflight.result()
            self._inflight = None
        self._inflight = self._submit()

    async def flush_async(self) -> None:
        if self._inflight is not None:
            await asyncio.wrap_future(self._inflight)
            self._inflight = None
        self._inflight = self._submit()

    def drain(self) -> None:
        self.flush()
        self.flush()  # waits for the last one

    def close(self) -> None:
        self.executor.shutdown(wait=True)


# -- progress ------------------------------------------------------------------------


class Bar:
    """A rich progress bar on stderr: events/s, partitions done, ETA (records based)."""

    def __init__(self, enabled: bool = True) -> None:
        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[events]:>12,} events  {task.fields[rate]:>9,.0f} ev/s"),
            TextColumn("partitions {task.fields[done]}/{task.fields[parts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled or not console.is_terminal,
            refresh_per_second=4,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def phase(self, name: str, total: int, parts: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            name, total=total or None, events=0, rate=0.0, done=0, parts=parts
        )

    def update(self, completed: int, stats: Stats, done: int) -> None:
        if self.task is not None:
            self.progress.update(
                self.task, completed=completed, events=stats.events, rate=stats.rate, done=done
            )


# -- the archive phase ---------------------------------------------------------------


def replay_archive(
    batcher: Batcher, root: Path | str, bar: Bar | None = None
) -> dict[TopicPartition, int]:
    """Fold the whole archive at once; returns the archive's next offset per partition.

    The archive holds validated events only, and the database is new, so the
    set-based fold (``projector.setfold``) does it in one transaction instead
    of micro-batches through the Python fold: ~30x faster, and the rows are
    the same (tests/fold/test_setfold.py). Offsets are the archive's own
    positions, so rejected records after the last archived event count too.
    """
    from projector.archive import positions, scan

    files = scan(root)
    ends = positions(root)
    parts = len({(f.topic, f.partition) for f in files})
    source, parsed = _archive_source(files)
    if bar is not None:
        bar.phase("archive (set-based fold, steps)", 0, parts)

    def step(done: int, total: int) -> None:
        if bar is not None and bar.task is not None:
            bar.progress.update(bar.task, total=total)
            bar.update(done, batcher.stats, parts if done == total else 0)

    batcher.stats.events += batcher.store.rebuild(source, ends, on_step=step, materialise=parsed)
    batcher.stats.flushes += 1
    step(1, 1)
    return ends


def _archive_source(files: list[Any]) -> tuple[str, bool]:
    """The archive as one (event_type, fields) relation for ``projector.setfold``.

    Files written since the archive stores ``fields`` are read as typed
    columns; older ones are parsed from their event JSON (then the relation is
    worth materialising: the second flag).
    """
    import pyarrow.parquet as pq

    from projector.setfold import typed

    def listed(paths: list[Any]) -> str:
        quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
        return f"read_parquet([{quoted}])"

    with_fields = [f.path for f in files if "fields" in pq.read_schema(f.path).names]
    old = [f.path for f in files if f.path not in set(with_fields)]
    parts = []
    if with_fields:
        parts.append(f"SELECT event_type, fields FROM {listed(with_fields)}")
    if old:
        parts.append(f"SELECT * FROM {typed(listed(old))}")
    if not parts:
        empty = "(SELECT NULL::VARCHAR AS event_type, NULL::VARCHAR AS event WHERE false)"
        return typed(empty), False
    return "(" + " UNION ALL ".join(parts) + ")", bool(old)


# -- the Kafka phase -----------------------------------------------------------------


def parse_since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as e:
        raise ReplayError(f"--since {text!r} is not an RFC 3339 timestamp") from e
    if when.tzinfo is None:
        raise ReplayError(f"--since {text!r} has no UTC offset (write e.g. 2026-05-12T10:00:00Z)")
    return when


async def start_offsets(
    bootstrap: str, topics: list[str], *, since: datetime | None = None
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(start, end) offsets per partition: log start or the offset for ``since``; true log ends."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as KTP

    from projector.archive import stop_consumer
    from projector.kafka_offsets import beginning_offsets, log_end_offsets

    end = await log_end_offsets(bootstrap, topics)
    start = await beginning_offsets(bootstrap, topics)
    if since is not None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            ms = int(since.timestamp() * 1000)
            found = await consumer.offsets_for_times({KTP(t, p): ms for t, p in end})
        finally:
            await stop_consumer(consumer)
        for ktp, hit in found.items():
            tp = (ktp.topic, ktp.partition)
            # No record at or after the time: nothing to replay. Tansu answers
            # that case with offset 0 and timestamp -1 instead of None.
            if hit is None or hit.timestamp < 0:
                start[tp] = end[tp]
            else:
                start[tp] = min(max(hit.offset, start[tp]), end[tp])
    return start, end


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


async def replay_kafka(
    batcher: Batcher,
    bootstrap: str,
    start: Mapping[TopicPartition, int],
    end: Mapping[TopicPartition, int],
    *,
    since: datetime | None = None,
    bar: Bar | None = None,
) -> None:
    """Fold every record from ``start`` up to ``end`` (exclusive) of each partition."""
    from aiokafka import TopicPartition as KTP
    from aiokafka.errors import KafkaError

    from projector.archive import stop_consumer

    since_ms = int(since.timestamp() * 1000) if since is not None else None
    # Every partition gets a stored offset, even one with nothing to read, so
    # the database can be caught up (or swapped in) from exactly here.
    batcher.offsets.update({tp: start.get(tp, 0) for tp in end})
    reached = {tp: start.get(tp, 0) for tp in end}
    active = {tp for tp in end if reached[tp] < end[tp]}
    total = sum(end[tp] - reached[tp] for tp in active)
    if bar is not None:
        bar.phase("kafka", total, len(end))
    # offsets_for_times may answer with a batch's base offset on some brokers:
    # skip records older than --since until the first one at or after it.
    waiting = set(active) if since_ms is not None else set()
    consumer = bulk_consumer(bootstrap)
    try:
        await consumer.start()
        if active:
            consumer.assign([KTP(t, p) for t, p in sorted(active)])
            for t, p in active:
                consumer.seek(KTP(t, p), reached[(t, p)])
        while active:
            fetched = await consumer.getmany(timeout_ms=1000)
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
                        if r.timestamp < since_ms:  # type: ignore[operator]
                            batcher.offsets[tp] = r.offset + 1
                            continue
                        waiting.discard(tp)
                    batcher.add_record(r.topic, r.partition, r.offset, r.value)
                if reached[tp] >= stop:
                    active.discard(tp)
                    consumer.pause(ktp)
            if batcher.full:
                await batcher.flush_async()
            if bar is not None:
                done = sum(1 for tp in end if tp not in active)
                bar.update(total - sum(end[tp] - reached[tp] for tp in active), batcher.stats, done)
        await batcher.flush_async()
    except KafkaError as e:
        raise ReplayError(f"reading from {bootstrap} failed: {e!r}") from e
    finally:
        await stop_consumer(consumer)


# -- the command ---------------------------------------------------------------------


@dataclass
class Outcome:
    stats: Stats
    offsets: dict[TopicPartition, int]
    kafka: bool
    elapsed: float


def replay(
    settings: Settings,
    db: Path,
    *,
    since: datetime | None = None,
    from_archive: Path | None = None,
    use_kafka: bool = True,
    progress: bool = True,
    batch_events: int = BATCH_EVENTS,
    memory_rows: int = MEMORY_ROWS,
) -> Outcome:
    """Build ``db`` (which must not exist) and return what was done."""
    from projector.kafka_offsets import OffsetsError

    if db.exists() or Path(f"{db}.wal").exists():
        raise ReplayError(f"{db} exists: replay only builds new databases (never a live one)")
    partial = db.with_name(db.name + ".partial")
    if partial.exists() or Path(f"{partial}.wal").exists():
        raise ReplayError(
            f"{partial} exists: another replay is running, or one crashed (remove it)"
        )
    sources = list(settings.topics.sources)
    t0 = time.monotonic()
    # A fresh database is served wholly from the store's row cache (no DuckDB
    # reads per flush) until it passes memory_rows; then the cache is dropped
    # whole and rebuilt from misses: bounded, and the same rows.
    store = Store(partial, memory_limit=settings.duckdb_memory_limit, cache_max_rows=memory_rows)
    kafka_used = False
    try:
        store.open()
        batcher = Batcher(store, batch_events=batch_events)
        try:
            with Bar(progress) as bar:
                archive_ends: dict[TopicPartition, int] = {}
                if from_archive is not None:
                    archive_ends = replay_archive(batcher, from_archive, bar)
                    batcher.drain()
                if use_kafka:
                    try:
                        start, end = asyncio.run(
                            start_offsets(settings.bootstrap, sources, since=since)
                        )
                    except OffsetsError as e:
                        if from_archive is None:
                            raise ReplayError(str(e)) from e
                        print(
                            f"projector replay: no broker ({e}); the archive alone was replayed",
                            file=sys.stderr,
                        )
                    else:
                        kafka_used = True
                        if from_archive is not None:
                            # Continue where the archive ends; the rest from the log start.
                            start = {tp: max(o, archive_ends.get(tp, o)) for tp, o in start.items()}
                        asyncio.run(
                            replay_kafka(
                                batcher, settings.bootstrap, start, end, since=since, bar=bar
                            )
                        )
                batcher.drain()
        finally:
            batcher.close()
        offsets = store.offsets()
        store.checkpoint()
    except BaseException as e:
        store.close()
        # Ours alone (it did not exist before): a failed build must not linger.
        for leftover in (partial, Path(f"{partial}.wal")):
            leftover.unlink(missing_ok=True)
        if isinstance(e, StoreError):
            raise ReplayError(f"writing {partial} failed: {e}") from e
        raise
    store.close()
    partial.rename(db)
    return Outcome(batcher.stats, offsets, kafka_used, time.monotonic() - t0)


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    """``projector replay``: exit 0 when built, 2 when refused or failed."""
    try:
        since = parse_since(args.since) if args.since else None
        if since is not None and args.from_archive:
            raise ReplayError("--since applies to Kafka replays; not with --from-archive")
        if args.no_kafka and not args.from_archive:
            raise ReplayError("--no-kafka needs --from-archive")
        out = replay(
            settings,
            Path(args.db),
            since=since,
            from_archive=Path(args.from_archive) if args.from_archive else None,
            use_kafka=not args.no_kafka,
        )
    except ReplayError as e:
        print(f"projector replay: {e}", file=sys.stderr)
        return 2
    s = out.stats
    sources = (
        "archive + kafka"
        if args.from_archive and out.kafka
        else ("archive" if args.from_archive else "kafka")
    )
    print(
        f"projector replay: {s.events:,} events, {s.deadletters:,} dead letters from {sources} "
        f"into {args.db} in {out.elapsed:.1f}s ({s.events / max(out.elapsed, 1e-9):,.0f} events/s, "
        f"{s.flushes} flushes)",
        flush=True,
    )
    print(
        "offsets: " + ", ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(out.offsets.items())),
        flush=True,
    )
    return 0
