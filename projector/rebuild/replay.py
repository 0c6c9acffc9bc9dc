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
* accepted events are folded by ``projector.store.setfold``, the set-based
  statement of F1-F11 that tests hold equal to the live path's Python fold:
  a rebuild starts from nothing and sees every event, so one set-based pass
  replaces thousands of micro-batch upserts. Offsets, log marks and dead
  letters land in the same transaction as the rows.

Kafka records are fetched and decoded by reader processes, each owning a
share of the partitions (``projector.rebuild.readers``), which write the
accepted events' canonical JSON to Arrow files; once every reader is done,
the files are typed in one parallel pass, much cheaper than typing each
chunk as it arrives (docs/decisions/0022-kafka-replay-readers.md). The
archive is read where it lies
(its files carry the typed struct). Nothing is folded until every source is
read, so a failure leaves no database behind.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import queue
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
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

from projector.rebuild.errors import ReplayError
from projector.rebuild.readers import (
    REPORT_EVERY,
    STAGE_SCHEMA,
    Fetcher,
    ReadError,
    Share,
    ShareResult,
    init_reader,
    read_share,
    readers_for,
    split,
)
from projector.rebuild.readers import (
    Progress as ReadProgress,
)
from projector.settings import Settings
from projector.store.bookkeeping import DeadLetter
from projector.store.errors import StoreError
from projector.store.logmark import LogMark, marks_of
from projector.store.writer import FlushResult, Store
from schemas import decode_value

if TYPE_CHECKING:
    from projector.rebuild.archive import ArchiveFile

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]

BATCH_EVENTS = 50_000
# Kafka replays with fewer records are read in-process: starting reader
# processes would cost more than they save (docs/decisions/0022-kafka-replay-readers.md).
POOL_MIN_RECORDS = 2_000
STAGE_VIEW = "replay_kafka_staged"  # the readers' (event_type, event JSON), mapped
TYPED_TABLE = "replay_kafka_typed"  # (event_type, fields): what the fold reads


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
        # Last record per partition, for the log marks (projector.store.logmark).
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
        marks = marks_of(self.last)
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


def stage_from_kafka(
    store: Store,
    bootstrap: str,
    start: Mapping[TopicPartition, int],
    end: Mapping[TopicPartition, int],
    *,
    since: datetime | None = None,
    readers: int = 0,
    bar: Bar | None = None,
) -> Staged:
    """Read, decode and type every record from ``start`` up to ``end`` into ``TYPED_TABLE``.

    ``readers`` processes each read a share of the partitions
    (``projector.rebuild.readers``); 0 reads them all in this process. Their
    Arrow files are staged beside the database being built and removed at
    the end, whatever happens.
    """
    shares = split(start, end, readers or 1)
    stage_dir = Path(tempfile.mkdtemp(prefix=store.path.name + ".stage-", dir=store.path.parent))
    since_ms = int(since.timestamp() * 1000) if since is not None else None
    jobs = [
        Share(
            i,
            bootstrap,
            {tp: start.get(tp, 0) for tp in tps},
            {tp: end[tp] for tp in tps},
            str(stage_dir / f"share-{i}.arrow"),
            since_ms,
        )
        for i, tps in enumerate(shares)
    ]
    total = sum(end[tp] - start.get(tp, 0) for tps in shares for tp in tps)
    idle = len(end) - sum(len(tps) for tps in shares)  # nothing to read: done already
    staged = Staged(offsets={tp: start.get(tp, 0) for tp in end})
    seen: dict[int, ReadProgress] = {}

    def show(p: ReadProgress) -> None:
        seen[p.share] = p
        if bar is not None:
            # The readers' running totals; staged.stats gets the final ones.
            shown = Stats(started=staged.stats.started)
            shown.records = sum(q.records for q in seen.values())
            shown.events = sum(q.events for q in seen.values())
            bar.update(shown.records, shown, idle + sum(q.done for q in seen.values()))

    if bar is not None:
        bar.phase("kafka", total, len(end))
    try:
        try:
            if readers and jobs:
                results = _read_in_pool(jobs, readers, show)
            else:
                results = [read_share(job, show) for job in jobs]
        except ReadError as e:
            raise ReplayError(str(e)) from e
        stats = staged.stats
        for job, result in zip(jobs, results, strict=True):
            log.info(
                "reader %d: %d partitions, %d records, %d events in %.2f s (%.2f s of CPU)",
                job.index,
                len(job.end),
                result.records,
                result.events,
                result.seconds,
                result.cpu_seconds,
            )
            stats.records += result.records
            stats.events += result.events
            stats.deadletters += len(result.deadletters)
            staged.offsets.update(result.offsets)
            staged.marks.update(result.marks)
            staged.deadletters.extend(result.deadletters)
        _type_staged(store, [job.stage for job in jobs])
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)
    return staged


def _read_in_pool(
    jobs: list[Share], readers: int, show: Callable[[ReadProgress], None]
) -> list[ShareResult]:
    """Run ``read_share`` for every job in reader processes, relaying their progress."""
    # spawn, not fork: this process runs threads (DuckDB's).
    ctx = mp.get_context("spawn")
    reports, stop = ctx.Queue(), ctx.Event()
    with ProcessPoolExecutor(
        min(readers, len(jobs)),
        mp_context=ctx,
        initializer=init_reader,
        initargs=(reports, stop),
    ) as pool:
        futures = [pool.submit(read_share, job) for job in jobs]
        try:
            while not all(f.done() for f in futures):
                try:
                    show(reports.get(timeout=REPORT_EVERY))
                except queue.Empty:
                    pass
                for f in futures:
                    if f.done() and f.exception() is not None:
                        f.result()  # raise the first failure; the others stop
            return [f.result() for f in futures]
        except BrokenProcessPool as e:
            raise ReplayError(f"a reader process died: {e}") from e
        finally:
            stop.set()
            for f in futures:
                f.cancel()
            reports.close()


def _type_staged(store: Store, paths: list[str]) -> None:
    """Type the readers' Arrow files into ``TYPED_TABLE`` in one parallel statement.

    The files are memory-mapped, not read: DuckDB scans their record batches
    in place.
    """
    from projector.store.setfold import typed

    tables = [pa.ipc.open_file(pa.memory_map(path)).read_all() for path in paths]
    staged = pa.concat_tables(tables) if tables else STAGE_SCHEMA.empty_table()
    con = store.con
    con.register(STAGE_VIEW, staged)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {TYPED_TABLE} AS FROM {typed(STAGE_VIEW)}")
    finally:
        con.unregister(STAGE_VIEW)


@dataclass
class Staged:
    """A Kafka replay's events, typed in ``TYPED_TABLE``, and where it stopped."""

    source = f"(SELECT event_type, fields FROM {TYPED_TABLE})"
    stats: Stats = field(default_factory=Stats)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    marks: dict[TopicPartition, LogMark] = field(default_factory=dict)
    deadletters: list[DeadLetter] = field(default_factory=list)


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


def archive_part(root: Path | str, partitions: frozenset[int] | None = None) -> ArchivePart:
    """Read the archive's layout (no events yet): files, typed or not, and positions.

    Offsets are the archive's own positions, so rejected records after the
    last archived event count too. ``partitions``: only theirs (a shard's rebuild).
    """
    from projector.rebuild.archive import positions, scan

    files = [f for f in scan(root) if partitions is None or f.partition in partitions]
    source, parsed = _archive_source(files)
    ends = positions(root)
    return ArchivePart(
        source,
        parsed,
        {tp: o for tp, o in ends.items() if partitions is None or tp[1] in partitions},
        sum(f.rows for f in files),
        len({(f.topic, f.partition) for f in files}),
    )


def _archive_source(files: list[ArchiveFile]) -> tuple[str, bool]:
    """The archive as one (event_type, fields) relation for ``projector.store.setfold``.

    Files written since the archive stores ``fields`` are read as typed
    columns; older ones are parsed from their event JSON (then the relation is
    worth materialising: the second flag).
    """
    from projector.store.setfold import EMPTY, typed

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

    from projector.intake.offsets import beginning_offsets, log_end_offsets
    from projector.rebuild.archive import stop_consumer

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
    since_ms = int(since.timestamp() * 1000) if since is not None else None
    # Every partition gets a stored offset, even one with nothing to read, so
    # the database can be caught up (or swapped in) from exactly here.
    batcher.offsets.update({tp: start.get(tp, 0) for tp in end})
    fetcher = Fetcher(bootstrap, start, end, since_ms)
    total = sum(end[tp] - fetcher.reached[tp] for tp in fetcher.active)
    if bar is not None:
        bar.phase("kafka", total, len(end))
    try:
        async for records, skipped in fetcher.batches():
            batcher.offsets.update(skipped)
            for r in records:
                batcher.add_record(r.topic, r.partition, r.offset, r.value)
            if batcher.full:
                await batcher.flush_async()
            if bar is not None:
                left = sum(end[tp] - fetcher.reached[tp] for tp in fetcher.active)
                bar.update(total - left, batcher.stats, fetcher.done)
        await batcher.flush_async()
    except ReadError as e:
        raise ReplayError(str(e)) from e


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
    partitions: frozenset[int] | None = None,
) -> Outcome:
    """Build ``db`` (which must not exist) and return what was done.

    ``decode_workers``: reader processes that fetch and decode Kafka records
    (default: one per CPU; 0 reads in this process, as do replays under
    POOL_MIN_RECORDS records). ``partitions``: only these partitions of the
    source topics (a shard: ``projector.rebuild.shards``).
    """
    from projector.intake.offsets import OffsetsError

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
                part = archive_part(from_archive, partitions)
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
                    if partitions is not None:
                        start = {tp: o for tp, o in start.items() if tp[1] in partitions}
                        end = {tp: o for tp, o in end.items() if tp[1] in partitions}
                    if from_archive is not None:
                        # Continue where the archive ends; the rest from the log start.
                        start = {tp: max(o, archive_ends.get(tp, o)) for tp, o in start.items()}
                    records = sum(max(0, o - start.get(tp, 0)) for tp, o in end.items())
                    staging = time.monotonic()
                    staged = stage_from_kafka(
                        store,
                        settings.bootstrap,
                        start,
                        end,
                        since=since,
                        readers=readers_for(records, decode_workers, POOL_MIN_RECORDS),
                        bar=bar,
                    )
                    log.info(
                        "read, decoded and staged %d records in %.2f s",
                        staged.stats.records,
                        time.monotonic() - staging,
                    )
                    parts.append(staged.source)
                    offsets.update(staged.offsets)
                    marks = staged.marks
                    deadletters = staged.deadletters
                    stats = staged.stats
            bar.phase("fold (set-based, steps)", 0, len(offsets))

            def step(done: int, total: int) -> None:
                if bar.task is not None:
                    bar.progress.update(bar.task, total=total)
                bar.update(done, stats, len(offsets) if done == total else 0)

            source = "(" + " UNION ALL ".join(f"SELECT * FROM {p}" for p in parts) + ")"
            if not parts:
                from projector.store.setfold import EMPTY

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
