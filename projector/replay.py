"""``projector replay``: rebuild a fresh database from Kafka, or from the archive then Kafka.

The rebuild never touches a live database: it refuses an existing ``--db``,
builds into ``<db>.partial`` and renames it into place only when complete, so
a crashed or interrupted replay leaves nothing a swap could pick up.

Same result as the live path, by construction:

* records are decoded like the live path: the compiled fast path
  (``schemas.fastdecode``) takes what it is sure of, ``schemas.decode_value``
  decides the rest, and rejected items become ``DeadLetter`` rows at the same
  (topic, partition, offset, item_index); the dead-letter *topic* is not
  written (the live path did that already);
* accepted events are folded by ``projector.setfold``, the set-based
  statement of F1-F11 that tests hold equal to the live path's Python fold:
  a rebuild starts from nothing and sees every event, so one set-based pass
  replaces thousands of micro-batch upserts. Offsets, log marks and dead
  letters land in the same transaction as the rows.

Kafka records are decoded while they are fetched (in worker processes, which
hand back Arrow tables: a buffer copy instead of pickling a million strings)
and their canonical JSON is staged in a DuckDB temporary table by a writer
thread, then typed in one parallel pass once everything is read, which
costs a fifth of typing each chunk as it arrives (0.5 s against 2.3-2.8 s
per million events, measured in one process). The archive is read where it
lies (its files carry the typed struct). Nothing is folded until every
source is read, so a failure leaves no database behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import sys
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
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
from schemas.fastdecode import fast_decode

if TYPE_CHECKING:
    from projector.archive import ArchiveFile

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]

BATCH_EVENTS = 50_000
# Raw Kafka records per decoding chunk (whichever bound comes first).
STAGE_RECORDS = 5_000
STAGE_BYTES = 2_000_000
# Kafka replays with fewer records decode in-process (worker start-up ~1 s).
POOL_MIN_RECORDS = 2_000
STAGE_TABLE = "replay_kafka_events"  # (event_type, event JSON) as decoded
TYPED_TABLE = "replay_kafka_typed"  # (event_type, fields): what the fold reads


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


def decode_chunk(values: list[bytes | None]) -> tuple[pa.Table, list[tuple[int, int, str]]]:
    """Decode records like the live path: accepted events as (event_type, event JSON), rejects.

    Each record is offered to the compiled fast path first
    (``schemas.fastdecode``, ~3 times faster with the JSON included), which
    hands anything it is not sure of to ``decode_value``, the judge. A
    module-level function so worker processes can run it; the events come
    back as an Arrow table, which crosses the process boundary as buffers
    (pickling the strings one by one cost ~1 s per million events, both
    sides). Rejects are ``(record position in values, item index or -1, reason)``.
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
        {"event_type": pa.array(types, pa.string()), "event": pa.array(events, pa.string())}
    )
    return table, rejects


_Decoded = tuple[pa.Table, list[tuple[int, int, str]]]


class Stager:
    """Collects a Kafka replay for the set-based fold.

    Buffers raw records, decodes them in chunks (``decode_chunk``, in worker
    processes when ``workers`` > 0), and appends the accepted events' JSON
    to a DuckDB temporary table of the new database from a writer thread;
    ``drain`` types them all at once (``projector.setfold.typed``) into
    ``source``, the relation the fold reads. The same interface as
    ``Batcher``, so ``replay_kafka`` feeds either.
    """

    source = f"(SELECT event_type, fields FROM {TYPED_TABLE})"

    def __init__(self, store: Store, *, workers: int = 0) -> None:
        self.store = store
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-stager")
        self.pool: ProcessPoolExecutor | None = None
        if workers > 0:
            # spawn, not fork: this process runs threads (DuckDB, the writer).
            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        self.max_inflight = 2 * max(workers, 1)
        self.meta: list[tuple[str, int, int]] = []
        self.values: list[bytes | None] = []
        self.buffered = 0
        self.deadletters: list[DeadLetter] = []
        self.offsets: dict[TopicPartition, int] = {}
        self.last: dict[TopicPartition, tuple[int, bytes | None]] = {}
        self.stats = Stats()
        self._decoding: deque[tuple[list[tuple[str, int, int]], Future[_Decoded]]] = deque()
        self._appending: Future[None] | None = None
        store.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {STAGE_TABLE} (event_type VARCHAR, event VARCHAR)"
        )

    def add_record(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        self.meta.append((topic, partition, offset))
        self.values.append(value)
        self.buffered += len(value) if value is not None else 0
        self.offsets[(topic, partition)] = offset + 1
        self.last[(topic, partition)] = (offset, value)
        self.stats.records += 1

    @property
    def full(self) -> bool:
        return self.buffered >= STAGE_BYTES or len(self.values) >= STAGE_RECORDS

    def marks(self) -> dict[TopicPartition, LogMark]:
        return {tp: LogMark(off, digest(value)) for tp, (off, value) in self.last.items()}

    def _start_chunk(self) -> None:
        if not self.values:
            return
        meta, values = self.meta, self.values
        self.meta, self.values, self.buffered = [], [], 0
        if self.pool is not None:
            self._decoding.append((meta, self.pool.submit(decode_chunk, values)))
        else:
            done: Future[_Decoded] = Future()
            done.set_result(decode_chunk(values))
            self._decoding.append((meta, done))

    def _take(self, meta: list[tuple[str, int, int]], decoded: _Decoded) -> None:
        events, rejects = decoded
        for i, index, reason in rejects:
            topic, partition, offset = meta[i]
            self.deadletters.append(DeadLetter(topic, partition, offset, index, reason))
        self.stats.events += events.num_rows
        self.stats.deadletters += len(rejects)
        if events.num_rows:
            if self._appending is not None:
                self._appending.result()
            self._appending = self.writer.submit(self._append, events)

    def _append(self, events: pa.Table) -> None:
        self.store.con.execute(f"INSERT INTO {STAGE_TABLE} SELECT * FROM events")

    async def flush_async(self) -> None:
        """Hand the buffered records to a decoder; take finished chunks, bounded in flight."""
        self._start_chunk()
        while len(self._decoding) > self.max_inflight or (
            self._decoding and self._decoding[0][1].done()
        ):
            meta, future = self._decoding.popleft()
            try:
                decoded = await asyncio.wrap_future(future)
            except BrokenProcessPool as e:
                raise ReplayError(f"a decoding worker process died: {e}") from e
            if self._appending is not None:
                await asyncio.wrap_future(self._appending)
            self._take(meta, decoded)

    def drain(self) -> None:
        """Decode and stage everything still buffered (after the event loop ends)."""
        self._start_chunk()
        while self._decoding:
            meta, future = self._decoding.popleft()
            try:
                decoded = future.result()
            except BrokenProcessPool as e:
                raise ReplayError(f"a decoding worker process died: {e}") from e
            self._take(meta, decoded)
        if self._appending is not None:
            self._appending.result()
            self._appending = None
        from projector.setfold import typed

        con = self.store.con
        con.execute(f"CREATE OR REPLACE TEMP TABLE {TYPED_TABLE} AS FROM {typed(STAGE_TABLE)}")
        con.execute(f"DROP TABLE {STAGE_TABLE}")

    def close(self) -> None:
        self.writer.shutdown(wait=True)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


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


@dataclass
class ArchivePart:
    """The archive as a source of the set-based fold, with where it ends."""

    source: str
    parsed: bool  # some files predate ``fields``: worth materialising
    ends: dict[TopicPartition, int]
    events: int
    partitions: int


def archive_part(root: Path | str) -> ArchivePart:
    """Read the archive's layout (no events yet): files, typed or not, and positions.

    Offsets are the archive's own positions, so rejected records after the
    last archived event count too.
    """
    from projector.archive import positions, scan

    files = scan(root)
    source, parsed = _archive_source(files)
    return ArchivePart(
        source,
        parsed,
        positions(root),
        sum(f.rows for f in files),
        len({(f.topic, f.partition) for f in files}),
    )


def _archive_source(files: list[ArchiveFile]) -> tuple[str, bool]:
    """The archive as one (event_type, fields) relation for ``projector.setfold``.

    Files written since the archive stores ``fields`` are read as typed
    columns; older ones are parsed from their event JSON (then the relation is
    worth materialising: the second flag).
    """
    from projector.setfold import EMPTY, typed

    def listed(paths: list[Any]) -> str:
        quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
        return f"read_parquet([{quoted}])"

    with_fields = [f.path for f in files if f.typed]
    old = [f.path for f in files if not f.typed]
    parts = []
    if with_fields:
        parts.append(f"SELECT event_type, fields FROM {listed(with_fields)}")
    if old:
        parts.append(f"SELECT * FROM {typed(listed(old))}")
    if not parts:
        return EMPTY, False
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
    batcher: Batcher | Stager,
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
    decode_workers: int | None = None,
) -> Outcome:
    """Build ``db`` (which must not exist) and return what was done.

    ``decode_workers``: processes decoding Kafka records (default: one per
    CPU; 0 decodes in this process, as do replays under POOL_MIN_RECORDS).
    """
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
    store = Store(partial, memory_limit=settings.duckdb_memory_limit)
    kafka_used = False
    stats = Stats()
    try:
        store.open()
        parts: list[str] = []
        offsets: dict[TopicPartition, int] = {}
        marks: dict[TopicPartition, LogMark] = {}
        deadletters: list[DeadLetter] = []
        parsed = False
        with Bar(progress) as bar:
            archive_ends: dict[TopicPartition, int] = {}
            if from_archive is not None:
                part = archive_part(from_archive)
                print(
                    f"projector replay: archive {from_archive}: {part.events:,} events "
                    f"in {part.partitions} partitions"
                    + (
                        " (some files predate typed fields: parsing their JSON)"
                        if part.parsed
                        else ""
                    ),
                    file=sys.stderr,
                    flush=True,
                )
                parts.append(part.source)
                parsed = part.parsed
                archive_ends = part.ends
                offsets.update(part.ends)
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
                    records = sum(max(0, o - start.get(tp, 0)) for tp, o in end.items())
                    workers = decode_workers if decode_workers is not None else os.cpu_count()
                    stager = Stager(
                        store, workers=(workers or 0) if records >= POOL_MIN_RECORDS else 0
                    )
                    staging = time.monotonic()
                    try:
                        asyncio.run(
                            replay_kafka(
                                stager, settings.bootstrap, start, end, since=since, bar=bar
                            )
                        )
                        stager.drain()
                    finally:
                        stager.close()
                    log.info(
                        "read, decoded and staged %d records in %.2f s",
                        stager.stats.records,
                        time.monotonic() - staging,
                    )
                    parts.append(stager.source)
                    offsets.update(stager.offsets)
                    marks = stager.marks()
                    deadletters = stager.deadletters
                    stats = stager.stats
            bar.phase("fold (set-based, steps)", 0, len(offsets))

            def step(done: int, total: int) -> None:
                if bar.task is not None:
                    bar.progress.update(bar.task, total=total)
                bar.update(done, stats, len(offsets) if done == total else 0)

            source = "(" + " UNION ALL ".join(f"SELECT * FROM {p}" for p in parts) + ")"
            if not parts:
                from projector.setfold import EMPTY

                source = EMPTY
            folding = time.monotonic()
            stats.events = store.rebuild(
                source,
                offsets,
                on_step=step,
                materialise=parsed,
                marks=marks,
                deadletters=deadletters,
            )
            log.info("folded %d events in %.2f s", stats.events, time.monotonic() - folding)
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
    return Outcome(stats, offsets, kafka_used, time.monotonic() - t0)


def run_cli(args: argparse.Namespace, settings: Settings) -> int:
    """``projector replay``: exit 0 when built, 2 when refused or failed."""
    try:
        since = parse_since(args.since) if args.since else None
        if since is not None and args.from_archive:
            raise ReplayError("--since applies to Kafka replays; not with --from-archive")
        if args.no_kafka and not args.from_archive:
            raise ReplayError("--no-kafka needs --from-archive")
        if args.decode_workers is not None and args.decode_workers < 0:
            raise ReplayError("--decode-workers must be 0 or more")
        out = replay(
            settings,
            Path(args.db),
            since=since,
            from_archive=Path(args.from_archive) if args.from_archive else None,
            use_kafka=not args.no_kafka,
            decode_workers=args.decode_workers,
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
        "folded in one transaction; primary keys are built by the first writer that opens it)",
        flush=True,
    )
    print(
        "offsets: " + ", ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(out.offsets.items())),
        flush=True,
    )
    return 0
