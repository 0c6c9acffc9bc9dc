"""True log-start and log-end offsets, for lag, catch-up checks and tests.

Tansu 0.6.0 answers ``ListOffsets(latest)`` with the newest *batch's* base
offset + 1, which is wrong whenever a producer batches (100 records in one
batch: it says 1). The high watermark in a Fetch response is right, so
:func:`log_end_offsets` reads that: it seeks each partition to just before
what ListOffsets claims (always inside the last batch, or the last record on
a correct broker), fetches once, and reads ``consumer.highwater(tp)``. This is
correct on Apache Kafka as well.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from projector.intake.errors import OffsetsError
from projector.store.logmark import digest

Offsets = dict[tuple[str, int], int]


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    # Metadata for *all* topics: naming a missing topic in a Metadata request
    # would make Tansu create it. Partitions are read from this answer, not
    # from the consumer's own metadata: once a consumer was assigned
    # partitions it tracks only their topics, so a long-lived one (LogReader)
    # would see any other topic as having no partitions (seen: partitions
    # flagged "no longer in the log" by a look at a topic the last look did
    # not assign).
    if not topics:
        return []
    cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - topics() drops it
    known = cluster.topics()
    missing = [t for t in topics if t not in known]
    if missing:
        raise OffsetsError(f"unknown topics: {', '.join(missing)}")
    tps: list[TopicPartition] = []
    for topic in topics:
        parts = cluster.partitions_for_topic(topic) or set()
        tps.extend(TopicPartition(topic, p) for p in sorted(parts))
    return tps


async def _fetch_until(
    consumer: AIOKafkaConsumer,
    tps: Iterable[TopicPartition],
    timeout: float,
    what: str,
    answered: Callable[[Any, set[TopicPartition]], set[TopicPartition]],
) -> None:
    """Fetch until ``answered(batches, pending)`` has settled every partition.

    Raises:
        OffsetsError: Some partition got no answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    pending = set(tps)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OffsetsError(
                f"no {what} within {timeout:.1f}s for "
                f"{', '.join(f'{tp.topic}[{tp.partition}]' for tp in sorted(pending))}"
            )
        # One record per call: a look needs at most one per partition, and
        # aiokafka unpacks records lazily, so the rest of a fetched batch
        # (hundreds of records when producers batch) is never materialised.
        batches = await consumer.getmany(
            *pending, timeout_ms=int(min(remaining, 0.2) * 1000), max_records=1
        )
        pending -= answered(batches, pending)


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    """A group-less consumer for one quick look at the log.

    Fetches stay small (64 KB per partition): only watermarks or one record
    are wanted, and a broker returns a first batch larger than that whole.
    """
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        # Out of range (log start moved past it, or the log is shorter): read
        # from the start.
        auto_offset_reset="earliest",
        # Empty partitions make the broker hold a fetch this long; keep it short.
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=64 * 1024,
        request_timeout_ms=10_000,
    )


async def log_end_offsets(
    bootstrap: str, topics: Iterable[str], *, timeout: float = 10.0
) -> Offsets:
    """Log-end offset (next offset to be written) of every partition of ``topics``.

    Args:
        bootstrap: Kafka ``HOST:PORT``.
        topics: Existing topic names.
        timeout: Seconds to wait for fetch responses for every partition.

    Returns:
        ``{(topic, partition): end_offset}``; 0 for an empty partition.

    Raises:
        OffsetsError: A topic is unknown, the broker is unreachable, or no
            fetch response arrived in time.
    """
    async with _one_look(bootstrap) as consumer:
        return await _log_end(consumer, topics, timeout)


async def _log_end(consumer: AIOKafkaConsumer, topics: Iterable[str], timeout: float) -> Offsets:
    tps = await _partitions(consumer, list(dict.fromkeys(topics)))
    if not tps:
        return {}
    consumer.assign(tps)
    claimed = await consumer.end_offsets(tps)  # ListOffsets: a lower bound on Tansu
    for tp in tps:
        consumer.seek(tp, max(0, claimed[tp] - 1))
    # Records are discarded; the fetch is only for its high watermarks.
    await _fetch_until(
        consumer,
        tps,
        timeout,
        "fetch response",
        lambda _batches, pending: {tp for tp in pending if consumer.highwater(tp) is not None},
    )
    return {(tp.topic, tp.partition): int(consumer.highwater(tp)) for tp in tps}  # type: ignore[arg-type]


async def beginning_offsets(
    bootstrap: str, topics: Iterable[str], *, timeout: float = 10.0
) -> Offsets:
    """Log-start offset of every partition of ``topics`` (ListOffsets earliest).

    ``earliest`` is right on Tansu (tested); it is 0 there, since the memory
    engine neither runs retention nor implements DeleteRecords.

    Raises:
        OffsetsError: A topic is unknown or the broker is unreachable.
    """
    async with _one_look(bootstrap) as consumer:
        return await _log_start(consumer, topics, timeout)


async def _log_start(consumer: AIOKafkaConsumer, topics: Iterable[str], timeout: float) -> Offsets:
    tps = await _partitions(consumer, list(dict.fromkeys(topics)))
    if not tps:
        return {}
    try:
        got = await asyncio.wait_for(consumer.beginning_offsets(tps), timeout)
    except TimeoutError as e:
        raise OffsetsError(f"no log-start offsets within {timeout:.1f}s") from e
    return {(tp.topic, tp.partition): int(off) for tp, off in got.items()}


async def record_digests(
    bootstrap: str, wanted: Mapping[tuple[str, int], int], *, timeout: float = 10.0
) -> dict[tuple[str, int], int | None]:
    """Digest of the record value at one offset per partition (see ``projector.store.logmark``).

    Returns:
        ``{(topic, partition): digest}``, or None for a partition whose log has
        no record at that offset (below the log start, at or past the log end,
        or a gap).

    Raises:
        OffsetsError: A topic is unknown, the broker is unreachable, or no
            answer arrived in time for every partition.
    """
    if not wanted:
        return {}
    async with _one_look(bootstrap) as consumer:
        return await _digests(consumer, wanted, timeout)


async def _digests(
    consumer: AIOKafkaConsumer, wanted: Mapping[tuple[str, int], int], timeout: float
) -> dict[tuple[str, int], int | None]:
    # Reset to the log start when out of range shows the offset is not there.
    # 64 KB per partition is plenty: a broker returns the first record batch
    # whole even when it is larger, and bigger fetches made a check behind a
    # backlog several times dearer (docs/decisions/0008-one-log-reader-consumer.md;
    # the measurement is in docs/reliability.md, "Cost").
    found: dict[tuple[str, int], int | None] = {}
    if not wanted:
        return found
    known = set(await _partitions(consumer, sorted({t for t, _ in wanted})))
    tps = [TopicPartition(t, p) for t, p in wanted]
    for tp in tps:
        if tp not in known:
            found[(tp.topic, tp.partition)] = None  # the partition itself is gone
    tps = [tp for tp in tps if tp in known]
    if not tps:
        return found
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, wanted[(tp.topic, tp.partition)])

    def answered(batches: Any, pending: set[TopicPartition]) -> set[TopicPartition]:
        done = set()
        for tp in pending:
            want = wanted[(tp.topic, tp.partition)]
            record = next((r for r in batches.get(tp, ()) if r.offset >= want), None)
            if record is not None:
                found[(tp.topic, tp.partition)] = (
                    digest(record.value) if record.offset == want else None
                )
            elif (high := consumer.highwater(tp)) is not None and high <= want:
                found[(tp.topic, tp.partition)] = None
            else:
                continue
            done.add(tp)
            consumer.pause(tp)
        return done

    await _fetch_until(consumer, tps, timeout, "record fetched", answered)
    return found


@asynccontextmanager
async def _one_look(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer for one call, stopped after it; Kafka errors become OffsetsError."""
    consumer = _consumer(bootstrap)
    try:
        await consumer.start()
        yield consumer
    except KafkaError as e:
        raise OffsetsError(f"reading the log at {bootstrap} failed: {e!r}") from e
    finally:
        await consumer.stop()


async def committed_offsets(
    bootstrap: str, group: str, tps: Iterable[tuple[str, int]], *, timeout: float = 10.0
) -> Offsets:
    """The consumer group's committed offsets of ``tps`` (OffsetFetch; no join).

    A member that owned a partition commits to Kafka only what its database
    holds, so this is at most how far the partition's last owner had stored
    (projector.intake.membership restores a gained partition up to it).
    Partitions the group never committed are left out.

    Raises:
        OffsetsError: The broker is unreachable or did not answer in time.
    """
    wanted = [TopicPartition(t, p) for t, p in dict.fromkeys(tps)]
    if not wanted:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout)
        out: Offsets = {}
        for tp in wanted:
            offset = await asyncio.wait_for(consumer.committed(tp), timeout)
            if offset is not None:
                out[(tp.topic, tp.partition)] = int(offset)
        return out
    except (KafkaError, TimeoutError) as e:
        raise OffsetsError(f"reading the group's offsets at {bootstrap} failed: {e!r}") from e
    finally:
        await consumer.stop()


class LogReader:
    """The same three looks at the log through one long-lived consumer.

    The worker looks before every commit (log marks) and once a second (lag,
    log start, marks): a consumer per look cost a connection, a metadata
    round trip and a shutdown each time, a visible share of the main thread
    (docs/decisions/0008-one-log-reader-consumer.md). Every look assigns its
    partitions afresh (new fetch positions and high watermarks: nothing is
    carried over from the previous look) and leaves them paused, so the
    consumer fetches nothing between looks. Looks are serialised (one
    consumer); after any failure the consumer is dropped and the next look
    starts a new one, so a restarted broker is met with fresh connections.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def log_end(self, topics: Iterable[str], *, timeout: float = 10.0) -> Offsets:
        return await self._look(_log_end, topics, timeout)  # type: ignore[no-any-return]

    async def log_start(self, topics: Iterable[str], *, timeout: float = 10.0) -> Offsets:
        return await self._look(_log_start, topics, timeout)  # type: ignore[no-any-return]

    async def digests(
        self, wanted: Mapping[tuple[str, int], int], *, timeout: float = 10.0
    ) -> dict[tuple[str, int], int | None]:
        if not wanted:
            return {}
        return await self._look(_digests, wanted, timeout)  # type: ignore[no-any-return]

    async def _look(self, how: Callable[..., Awaitable[Any]], what: Any, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A consumer belongs to the loop it started on (a look at start-up
            # runs on its own loop, before faust's): begin anew on this one.
            self._loop, self._consumer, self._lock = loop, None, asyncio.Lock()
        async with self._lock:
            try:
                # Starting and looking are each bounded (a started consumer
                # retries metadata for as long as the broker is away); a
                # timeout of either is an OffsetsError, what callers handle (a
                # bare TimeoutError once made a flush give up its batch).
                try:
                    if self._consumer is None:
                        self._consumer = _consumer(self.bootstrap)
                        await asyncio.wait_for(self._consumer.start(), timeout)
                    return await asyncio.wait_for(how(self._consumer, what, timeout), timeout)
                except TimeoutError as e:
                    raise OffsetsError(
                        f"no answer from {self.bootstrap} within {timeout:.1f}s"
                    ) from e
                finally:
                    if self._consumer is not None:
                        # Parked: paused partitions are not fetched. (Not
                        # unsubscribe(): after it aiokafka's stop() hangs.)
                        self._consumer.pause(*self._consumer.assignment())
            except KafkaError as e:
                await self._drop()
                raise OffsetsError(f"reading the log at {self.bootstrap} failed: {e!r}") from e
            except BaseException:
                await self._drop()
                raise

    async def _drop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:  # already broken: nothing more to release
                pass

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
