"""The event archive: every accepted event in Parquet, by event date, with its Kafka position.

History then outlives Kafka retention: ``projector replay --from-archive`` rebuilds
from these files and continues from Kafka where they end.

Layout: ``DIR/date=YYYY-MM-DD/part-<topic>-<partition>-<first_offset>.parquet``,
one file per (event date, topic, partition) of a *chunk* (what the archiver
buffered for ~100k events or 5 s). Rows are sorted by (offset, item_index).
Each row holds the validated event as JSON (``event``: what pydantic's
``model_dump_json`` gives, or the same values from the compiled fast path
``schemas.fastdecode``, which archives most records) and, in files written
since rebuilds became set-based, the same event as a typed struct
(``fields``, ``projector.store.setfold.EVENT_STRUCT``) that rebuilds read without
parsing JSON; older files without it are still read.

Crash safety and exactly-once, with the archive as the only source of truth for
its own position (no consumer group):

* each file is written as a hidden ``.tmp`` and renamed, so a reader never
  sees half a file;
* every file of a chunk carries in its Parquet metadata the chunk's id, how
  many files the chunk has, and the next offset the chunk reached for every
  partition it consumed (rejected records included, which leave no rows);
* on start, a chunk with fewer files on disk than it declares (a crash between
  renames) is deleted with the leftover ``.tmp`` files, and the archiver resumes
  from the largest next offset of the complete chunks. The deleted records are
  read again, so nothing is lost and nothing is archived twice.

Readers (:func:`read_archive`) skip incomplete chunks too, so reading beside a
running archiver is safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from projector.rebuild.errors import ArchiveError
from projector.settings import Settings
from projector.store.setfold import EVENT_STRUCT
from schemas import decode_value
from schemas.fastdecode import fast_events
from schemas.union import EVENT_LIST_ADAPTER

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]

CHUNK_EVENTS = 100_000
CHUNK_SECONDS = 5.0

ARCHIVE_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("item_index", pa.int32()),  # position in an array record; -1 for a single-event record
        ("event_type", pa.string()),
        ("campaign_id", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        # The validated event as canonical JSON: model_dump_json(), or the same
        # values from the compiled fast path (schemas.fastdecode).
        ("event", pa.string()),
    ]
)
_META_CHUNK = b"projector.chunk"
_META_FILES = b"projector.chunk_files"
_META_NEXT = b"projector.next_offsets"


# -- the archive on disk -----------------------------------------------------------


@dataclass(frozen=True)
class ArchiveFile:
    path: Path
    topic: str
    partition: int
    first_offset: int
    chunk: str
    chunk_files: int
    next_offsets: dict[TopicPartition, int]
    rows: int
    typed: bool  # holds ``fields`` (written since rebuilds read typed columns)


def _parse_next(raw: bytes) -> dict[TopicPartition, int]:
    return {(t, int(p)): o for t, parts in orjson.loads(raw).items() for p, o in parts.items()}


def _dump_next(offsets: dict[TopicPartition, int]) -> bytes:
    doc: dict[str, dict[str, int]] = defaultdict(dict)
    for (t, p), o in sorted(offsets.items()):
        doc[t][str(p)] = o
    return orjson.dumps(doc)


def scan(root: Path | str, *, repair: bool = False) -> list[ArchiveFile]:
    """The files of complete chunks; with ``repair``, delete incomplete chunks and tmp files."""
    root = Path(root)
    if not root.exists():
        return []
    files: list[ArchiveFile] = []
    stray: list[Path] = []
    for path in sorted(root.glob("date=*/*")):
        if path.name.endswith(".tmp"):
            stray.append(path)
            continue
        if not path.name.endswith(".parquet"):
            continue
        try:
            footer = pq.read_metadata(path)
            meta = footer.metadata or {}
            stem = path.name[len("part-") : -len(".parquet")]
            rest, first = stem.rsplit("-", 1)
            topic, partition = rest.rsplit("-", 1)
            files.append(
                ArchiveFile(
                    path,
                    topic,
                    int(partition),
                    int(first),
                    meta[_META_CHUNK].decode(),
                    int(meta[_META_FILES]),
                    _parse_next(meta[_META_NEXT]),
                    footer.num_rows,
                    "fields" in footer.schema.to_arrow_schema().names,
                )
            )
        except (OSError, KeyError, ValueError, pa.ArrowException) as e:
            raise ArchiveError(f"{path} is not an archive file: {e}") from e
    by_chunk: dict[str, list[ArchiveFile]] = defaultdict(list)
    for f in files:
        by_chunk[f.chunk].append(f)
    complete = []
    for chunk, members in by_chunk.items():
        if len(members) >= members[0].chunk_files:
            complete.extend(members)
        elif repair:
            log.warning("archive chunk %s is incomplete (crash while writing): removing it", chunk)
            stray.extend(f.path for f in members)
    if repair:
        for path in stray:
            path.unlink(missing_ok=True)
    return complete


def positions(root: Path | str) -> dict[TopicPartition, int]:
    """Next offset to archive per partition: the largest any complete chunk reached."""
    out: dict[TopicPartition, int] = {}
    for f in scan(root):
        for tp, o in f.next_offsets.items():
            if o > out.get(tp, -1):
                out[tp] = o
    return out


# -- writing -----------------------------------------------------------------------


@dataclass
class _Rows:
    offset: list[int] = field(default_factory=list)
    item_index: list[int] = field(default_factory=list)
    event_type: list[str] = field(default_factory=list)
    campaign_id: list[str] = field(default_factory=list)
    occurred_at: list[datetime] = field(default_factory=list)
    event: list[str] = field(default_factory=list)


class ArchiveWriter:
    """Buffers accepted events and writes them as chunks of atomic Parquet files."""

    def __init__(
        self,
        root: Path | str,
        *,
        chunk_events: int = CHUNK_EVENTS,
        chunk_seconds: float = CHUNK_SECONDS,
    ) -> None:
        self.root = Path(root)
        self.chunk_events = chunk_events
        self.chunk_seconds = chunk_seconds
        self.root.mkdir(parents=True, exist_ok=True)
        scan(self.root, repair=True)
        self.positions = positions(self.root)
        self._rows: dict[tuple[str, str, int], _Rows] = defaultdict(_Rows)
        self._pending: dict[TopicPartition, int] = {}
        self._events = 0
        self._started = time.monotonic()
        self.events_written = 0
        self.rejected = 0
        self._duck: duckdb.DuckDBPyConnection | None = None

    def add(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        """Decode one record like the live path and buffer its accepted events."""
        tp = (topic, partition)
        if offset < self.positions.get(tp, 0) or offset < self._pending.get(tp, 0):
            return  # archived already (re-delivery)
        data = value if value is not None else b""
        self._pending[tp] = offset + 1
        if not self._events and not self._rows:
            self._started = time.monotonic()
        fast = fast_events(data)
        if fast is not None:  # the compiled path (schemas.fastdecode): most records
            events, is_array = fast
            for index, ev in enumerate(events):
                # The fast path's timestamps are UTC ``YYYY-MM-DDTHH:MM:SS...Z``.
                rows = self._rows[(ev.occurred_at[:10], topic, partition)]
                rows.offset.append(offset)
                rows.item_index.append(index if is_array else -1)
                rows.event_type.append(ev.type)
                rows.campaign_id.append(ev.campaign_id)
                rows.occurred_at.append(ev.occurred)
                rows.event.append(ev.json)
            self._events += len(events)
            return
        decoded = decode_value(data)
        self.rejected += len(decoded.rejects)
        indexes = _item_indexes(data, len(decoded.events), [r.index for r in decoded.rejects])
        for ev, index in zip(decoded.events, indexes, strict=True):
            occurred = ev.occurred_at
            rows = self._rows[(occurred.strftime("%Y-%m-%d"), topic, partition)]
            rows.offset.append(offset)
            rows.item_index.append(index)
            rows.event_type.append(ev.type)
            rows.campaign_id.append(ev.campaign_id)
            rows.occurred_at.append(occurred)
            rows.event.append(ev.model_dump_json())
        self._events += len(decoded.events)

    def _with_fields(self, table: pa.Table) -> pa.Table:
        """Add ``fields``: the typed struct a rebuild folds (``projector.store.setfold``).

        Parsed once here, in DuckDB, so rebuilds read typed columns instead of
        parsing every event's JSON again (the JSON stays: it is the record of
        what was accepted, and readers of older files use it).
        """
        if self._duck is None:
            self._duck = duckdb.connect(config={"threads": 1})
            self._duck.execute("SET TimeZone = 'UTC'")
        rel = self._duck.from_arrow(table.select(["event"]))
        fields = rel.select(f"json_transform(event, '{EVENT_STRUCT}') AS fields")
        return table.append_column("fields", fields.to_arrow_table().column("fields"))

    def due(self) -> bool:
        return self._events >= self.chunk_events or (
            bool(self._pending) and time.monotonic() - self._started >= self.chunk_seconds
        )

    def flush(self) -> int:
        """Write the buffered chunk; returns the number of events written."""
        if not self._pending:
            return 0
        chunk = f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
        groups = sorted(self._rows.items())
        meta = {
            _META_CHUNK: chunk.encode(),
            _META_FILES: str(len(groups)).encode(),
            _META_NEXT: _dump_next({**self.positions, **self._pending}),
        }
        staged: list[tuple[Path, Path]] = []
        try:
            for (date, topic, partition), rows in groups:
                table = pa.table(
                    {
                        "topic": pa.array([topic] * len(rows.offset), pa.string()),
                        "partition": pa.array([partition] * len(rows.offset), pa.int32()),
                        "offset": pa.array(rows.offset, pa.int64()),
                        "item_index": pa.array(rows.item_index, pa.int32()),
                        "event_type": rows.event_type,
                        "campaign_id": rows.campaign_id,
                        "occurred_at": pa.array(rows.occurred_at, pa.timestamp("us", tz="UTC")),
                        "event": rows.event,
                    },
                    schema=ARCHIVE_SCHEMA,
                )
                table = self._with_fields(table).replace_schema_metadata(meta)
                # Records arrive in offset order per partition, so rows are sorted already.
                folder = self.root / f"date={date}"
                folder.mkdir(exist_ok=True)
                final = folder / f"part-{topic}-{partition}-{rows.offset[0]}.parquet"
                tmp = folder / f".{final.name}.tmp"
                pq.write_table(table, tmp, compression="zstd")
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                staged.append((tmp, final))
            for tmp, final in staged:
                os.replace(tmp, final)
        except OSError as e:
            raise ArchiveError(f"writing archive chunk {chunk} failed: {e}") from e
        written = self._events
        if groups:
            self.positions.update(self._pending)
        # A chunk of rejects only writes no file; its records are simply read again
        # after a restart (they produce nothing).
        self._rows.clear()
        self._pending.clear()
        self._events = 0
        self.events_written += written
        return written


def _item_indexes(data: bytes, n_events: int, reject_indexes: list[int | None]) -> list[int]:
    """Array positions of the accepted events (``decode_value`` keeps their order)."""
    if n_events == 0:
        return []
    if data.lstrip()[:1] != b"[":
        return [-1]
    skipped = {i for i in reject_indexes if i is not None}
    if not skipped:
        return list(range(n_events))
    out: list[int] = []
    i = 0
    while len(out) < n_events:
        if i not in skipped:
            out.append(i)
        i += 1
    return out


# -- reading -----------------------------------------------------------------------


ArchivedEvent = tuple[str, int, int, int, Any]


def read_archive(root: Path | str) -> Iterator[ArchivedEvent]:
    """Yield ``(topic, partition, offset, item_index, event)`` per partition in offset order.

    For tools and tests that want the archived events as models (rebuilds
    read the files with DuckDB instead: ``projector.rebuild.replay.archive_part``).
    Partitions come one after another; within one, events come in (offset,
    item_index) order, a chunk at a time, so memory stays bounded by a chunk.
    Events are re-validated in bulk: one ``TypeAdapter(list[Event]).validate_json``
    over a JSON array assembled from the ``event`` column per chunk.
    """
    files = scan(root)
    groups: dict[tuple[str, int, str], list[ArchiveFile]] = defaultdict(list)
    for f in files:
        groups[(f.topic, f.partition, f.chunk)].append(f)
    # Chunks of one partition cover disjoint offset ranges: order them by their first offset.
    ordered = sorted(
        groups.items(), key=lambda g: (g[0][0], g[0][1], min(f.first_offset for f in g[1]))
    )
    for (topic, partition, _chunk), members in ordered:
        tables = [pq.read_table(f.path, columns=["offset", "item_index", "event"]) for f in members]
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if len(tables) > 1:
            table = table.sort_by([("offset", "ascending"), ("item_index", "ascending")])
        offsets = table.column("offset").to_pylist()
        indexes = table.column("item_index").to_pylist()
        body = b",".join(s.encode() for s in table.column("event").to_pylist())
        events = EVENT_LIST_ADAPTER.validate_json(b"[" + body + b"]")
        for off, idx, ev in zip(offsets, indexes, events, strict=True):
            yield topic, partition, off, idx, ev


# -- the archiver ------------------------------------------------------------------


async def stop_consumer(consumer: Any) -> None:
    """``consumer.stop()``, minus an aiokafka quirk.

    Without a group, aiokafka's coordinator starts a background task; stopping
    the consumer before that task first ran re-raises the task's cancellation
    as ``CancelledError`` in ``stop()``. Only a cancellation of our own task
    is passed on.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def archive(
    settings: Settings,
    root: Path | str,
    *,
    until_caught_up: bool = False,
    stop: asyncio.Event | None = None,
) -> ArchiveWriter:
    """Consume the source topics into the archive (no consumer group)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as KTP
    from aiokafka.errors import KafkaError

    from projector.intake.offsets import beginning_offsets, log_end_offsets

    writer = ArchiveWriter(root)
    sources = list(settings.topics.sources)
    start = await beginning_offsets(settings.bootstrap, sources)
    target = await log_end_offsets(settings.bootstrap, sources) if until_caught_up else {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_wait_ms=200,
        check_crcs=False,
    )
    try:
        await consumer.start()
        tps = [KTP(t, p) for t, p in sorted(start)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(
                tp,
                max(
                    writer.positions.get((tp.topic, tp.partition), 0),
                    start[(tp.topic, tp.partition)],
                ),
            )
        reached = {tp: max(writer.positions.get(tp, 0), start[tp]) for tp in start}
        while stop is None or not stop.is_set():
            if until_caught_up and all(reached[tp] >= end for tp, end in target.items()):
                break
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    writer.add(r.topic, r.partition, r.offset, r.value)
                    reached[(r.topic, r.partition)] = r.offset + 1
            if writer.due():
                writer.flush()
        writer.flush()
    except KafkaError as e:
        raise ArchiveError(f"consuming from {settings.bootstrap} failed: {e!r}") from e
    finally:
        await stop_consumer(consumer)
    return writer
