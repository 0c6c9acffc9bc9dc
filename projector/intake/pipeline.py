"""From Kafka records to DuckDB flushes: dedupe, the micro-batch, commits with retries.

One walk per record and per batch: ``add`` checks the record's offset
against what DuckDB needs, decodes it (``decoding``: the fast path, pydantic
as judge) into the current ``MicroBatch``; ``flush`` checks the log marks,
produces the batch's dead letters (``deadletters``), commits it in one
transaction (``Store.flush``), acknowledges its records, then notifies
(metrics, health, the API's change feed). Framework-free on purpose: the
faust agent (``projector.intake.worker``) only feeds records in, and the
replay tool can feed it from a plain aiokafka consumer.

Exactly-once against DuckDB rests on three rules:

* ``expected[tp]`` is the next offset DuckDB still needs for a partition; a
  record below it was already applied (redelivery after a crash or a faust
  re-seek) and is skipped; a record above it means the consumer skipped ahead
  (faust seeks to Kafka-committed offsets, which are only a convenience), so
  we seek back and drop records until the expected one arrives.
* A flush writes the events and the new ``expected`` values in one
  transaction; a record is acked to faust only after that commit, so faust
  never commits past what DuckDB holds.
* Dead letters are produced (and acknowledged by the broker) before the
  transaction that moves past them commits: at worst a crash duplicates a
  dead letter, never loses one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from projector.intake.deadletters import DeadLetterSink
from projector.intake.decoding import decode, fast
from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.intake.microbatch import Ack, MicroBatch
from projector.intake.offsets import OffsetsError
from projector.store.bookkeeping import DeadLetter
from projector.store.errors import InvariantError, StoreError
from projector.store.logmark import LogMark, mismatch
from projector.store.writer import FlushResult, Store

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
Seeker = Callable[[str, int, int], Awaitable[None]]
# What the log holds at given offsets (kafka_offsets.record_digests): digests, None if absent.
Verifier = Callable[[dict[TopicPartition, int]], Awaitable[dict[TopicPartition, int | None]]]
FlushListener = Callable[[FlushResult], None]

# A partition still delivering past the expected offset this long after we
# sought it back has been moved again: seek again.
RESEEK_SECONDS = 1.0


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background flush failed", exc_info=task.exception())


class Pipeline:
    def __init__(
        self,
        store: Store,
        *,
        executor: ThreadPoolExecutor,
        deadletters: DeadLetterSink | None,
        status: PipelineStatus,
        metrics: Metrics,
        flush_max_events: int = 5000,
        flush_interval_ms: int = 100,
    ) -> None:
        self.store = store
        self.executor = executor
        self.sink = deadletters
        self.status = status
        self.metrics = metrics
        self.flush_max_events = flush_max_events
        self.flush_interval = flush_interval_ms / 1000
        self.expected: dict[TopicPartition, int] = {}
        # Where each partition's log starts (a partition no store applied reads from there).
        self.log_start: dict[TopicPartition, int] = {}
        # With a sharded store: is the partition's shard attached here? Records
        # of one that is not are left unread and unacked (projector.store.shards).
        self.holds: Callable[[int], bool] | None = None
        # Partitions whose shard is being attached: their records wait for it
        # (projector.intake.placement) instead of being left.
        self.attaching: dict[int, asyncio.Future[None]] = {}
        self.applied: dict[TopicPartition, int] = {}
        # The last record applied per partition, checked against the log on
        # every poll and before every commit (projector.store.logmark): offsets
        # alone miss a replaced log.
        self.marks: dict[TopicPartition, LogMark] = {}
        # Partitions we sought back, and when: records fetched before the seek
        # may still drain for a moment and are dropped without a new seek.
        self.resyncing: dict[TopicPartition, float] = {}
        self.last_seen: dict[TopicPartition, float] = {}
        # Partitions assigned but silent since: the only ones the stall watchdog
        # may re-seek (a partition that delivers anything is positioned sanely).
        self.awaiting_first: set[TopicPartition] = set()
        self._flush_task: asyncio.Task[Any] | None = None
        self.inconsistent: dict[TopicPartition, str] = {}
        # Set once a partition's log was lost or replaced: the broker's history
        # is not the one DuckDB holds, so a partition that never had a record
        # applied cannot be told apart from one of a new, unrelated stream.
        self.log_lost: str | None = None
        self.seeker: Seeker | None = None
        self.verifier: Verifier | None = None
        # The consumer's log epoch (projector.intake.epoch), and the epoch in
        # which each partition's mark was last read back intact: within one
        # epoch and one assignment the log cannot have been replaced, so a
        # commit reads back only marks not yet confirmed in the current one.
        # Without an epoch every commit reads its partitions' marks back.
        self.epoch: Callable[[], int] | None = None
        self.confirmed: dict[TopicPartition, tuple[int, int]] = {}
        # Counts assignments, so a read begun before one confirms nothing after it.
        self._assignments = 0
        self.listeners: list[FlushListener] = []
        # Why this node may not commit now (projector.intake.membership's lease:
        # paused past its group session, its partitions may be another's), or None.
        self.lease: Callable[[], str | None] | None = None
        self._fenced: str | None = None
        # Called when a flush finds memory unlike DuckDB (the invariant mode);
        # the process hosting the pipeline decides how to stop.
        self.on_invariant_broken: Callable[[InvariantError], None] | None = None
        self._batch = MicroBatch()
        self._flush_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------
    def prepare(self, log_start: dict[TopicPartition, int] | None = None) -> None:
        """Load stored offsets before any record arrives.

        Partitions DuckDB has never applied start at their log start, whatever
        the consumer group committed: a fresh database must see all history.
        """
        stored = self.store.offsets()
        self.log_start = dict(log_start or {})
        self.applied = dict(stored)
        self.marks = self.store.marks()
        self.expected = {**(log_start or {}), **stored}
        self.status.update(offsets=dict(self.applied), flush_seq=self.store.seq)

    async def close(self, timeout: float = 8.0) -> None:
        """Flush what is buffered (bounded in time), then stop the timer."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self.flush(retry=False), timeout)
        except (TimeoutError, StoreError, OffsetsError):
            # Abandoning is safe: nothing buffered was acked or stored, so the
            # records are read again on the next start. (OffsetsError: the
            # broker is gone, so the log marks cannot be checked before the commit.)
            log.warning("final flush abandoned; buffered records will be re-read on restart")
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._checks):
            task.cancel()
        if self.sink is not None:
            await self.sink.stop()

    async def in_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the writer's thread, in turn with the flushes."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def expected_offset(self, topic: str, partition: int) -> int | None:
        return self.expected.get((topic, partition))

    # -- intake ------------------------------------------------------------------
    async def add(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        ack: Ack | None = None,
        timestamp: float | None = None,
    ) -> None:
        tp = (topic, partition)
        if self.holds is not None and not self.holds(partition):
            if (ready := self.attaching.get(partition)) is not None:
                await ready
            if not self.holds(partition):
                return  # its shard is not open here: read again once it is
        if tp in self.awaiting_first:
            self.awaiting_first.discard(tp)
        if tp in self.inconsistent:
            return  # refused until an operator replays; never acked, never applied
        if self.log_lost is not None and self._never_applied(tp):
            self.mark_inconsistent(tp, self._unapplied_reason())
            return
        expected = self.expected.get(tp)
        if expected is not None and offset < expected:
            if ack is not None:
                ack()  # already in DuckDB (or buffered): a redelivery
            return
        if expected is not None and offset > expected:
            await self._resync(tp, expected, offset)
            return
        self.resyncing.pop(tp, None)
        self.expected[tp] = offset + 1
        self.metrics.records_consumed.labels(topic).inc()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_on_time())
        batch = self._batch
        if not batch.records:
            self._wakeup.set()
        batch.take(tp, offset, value, ack, timestamp)
        data = value if value is not None else b""
        accepted = fast(data)
        if accepted is not None:
            batch.events.extend(accepted)
            batch.parts.extend([partition] * len(accepted))
            decoded = None
        else:
            decoded = decode(data)
            batch.events.extend(decoded.events)
            batch.parts.extend([partition] * len(decoded.events))
        for reject in decoded.rejects if decoded is not None else ():
            dl = DeadLetter(
                topic,
                partition,
                offset,
                -1 if reject.index is None else reject.index,
                reject.reason,
            )
            batch.deadletters.append((dl, key, reject.raw))
        if batch.full(self.flush_max_events):
            if not self._flush_lock.locked():
                # Commit in the background: DuckDB releases the GIL while it
                # writes, so decoding the next records overlaps the commit.
                self._flush_task = asyncio.get_running_loop().create_task(self.flush())
                self._flush_task.add_done_callback(_log_failure)
            elif batch.full(2 * self.flush_max_events):
                await self.flush()  # backpressure: at most two batches in memory

    async def _resync(self, tp: TopicPartition, expected: int, got: int) -> None:
        sought = self.resyncing.get(tp)
        if sought is not None and time.monotonic() - sought < RESEEK_SECONDS:
            return  # records fetched before our seek are still draining
        # First gap, or still ahead well after our seek: the consumer was moved
        # again (a rebalance, faust re-seeking to committed offsets). Seek again,
        # or the partition would drop every record from now on.
        self.resyncing[tp] = time.monotonic()
        log.warning(
            "%s[%d]: consumer is at offset %d but DuckDB needs %d; seeking back",
            tp[0],
            tp[1],
            got,
            expected,
        )
        if self.seeker is not None:
            await self.seeker(tp[0], tp[1], expected)

    def assigned(self, tps: set[TopicPartition]) -> None:
        """The consumer (re)started reading these partitions."""
        now = time.monotonic()
        self._assignments += 1
        for tp in tps:
            self.awaiting_first.add(tp)
            self.last_seen[tp] = now
            # Not applied again before its mark is read back: the partition
            # may come from another node, or the group from a restarted broker.
            self.confirmed.pop(tp, None)

    def shard_attached(
        self,
        partition: int,
        offsets: Mapping[TopicPartition, int],
        marks: Mapping[TopicPartition, LogMark],
    ) -> list[TopicPartition]:
        """Take the position of partition's shard, just attached; its topic-partitions.

        The shard's offsets and marks are the partition's truth now, whatever
        this node held of it before (its last owner may have been another
        node, on a shared volume). A partition the shard never applied reads
        from its log start.
        """
        tps = [tp for tp in set(self.log_start) | set(offsets) if tp[1] == partition]
        for tp in tps:
            self.confirmed.pop(tp, None)
            self.resyncing.pop(tp, None)
            self._take_position(tp, offsets.get(tp), marks.get(tp), self.log_start.get(tp, 0))
        self.status.update(offsets=dict(self.applied))
        return sorted(tps)

    def _take_position(
        self, tp: TopicPartition, offset: int | None, mark: LogMark | None, unapplied: int
    ) -> None:
        """``tp``'s position is a store's as it is (``offset``, ``mark``), not the newer
        of the two: a partition that store never applied reads from ``unapplied``."""
        if offset is None:
            self.applied.pop(tp, None)
            self.expected[tp] = unapplied
        else:
            self.applied[tp] = self.expected[tp] = offset
        if mark is None:
            self.marks.pop(tp, None)
        else:
            self.marks[tp] = mark

    def shard_detached(self, partition: int) -> None:
        """Forget partition's position: its shard is closed here (another node's now).
        As if an empty shard were attached: nothing applied, read from the log start."""
        self.shard_attached(partition, {}, {})

    def confirm_soon(self, tps: Iterable[TopicPartition]) -> asyncio.Task[None]:
        """Read the marks of ``tps`` back now, in the background (after an assignment).

        Commits read them back anyway; this flags a replaced log that
        delivers nothing new (refilled just up to the stored offset) without
        waiting for the log poll. A failed read is left to the next commit.
        """
        task = asyncio.get_running_loop().create_task(self.check_marks(list(tps), unconfirmed=True))
        self._checks.add(task)
        task.add_done_callback(self._checked)
        return task

    def _checked(self, task: asyncio.Task[None]) -> None:
        self._checks.discard(task)
        if not task.cancelled() and (e := task.exception()) is not None:
            log.warning("could not read the log marks back after an assignment: %s", e)

    def stalled(
        self,
        log_end: dict[TopicPartition, int],
        quiet_for: float,
        committed: Mapping[TopicPartition, int | None],
    ) -> dict[TopicPartition, int]:
        """Assigned partitions with records DuckDB lacks that delivered nothing usable.

        That happens when the consumer group committed past DuckDB (a fresh or
        restored database), the consumer started there, and no newer record
        arrives to reveal the gap. ``committed`` is the group's committed
        offset per partition as the consumer read it on assignment: a
        partition silent since assignment is re-sought only if that offset is
        past DuckDB's. Otherwise it is merely waiting behind other partitions'
        backlog, and a seek would throw away what the consumer already fetched
        for it (docs/decisions/0020-stall-watchdog.md). A partition that
        delivered anything since assignment is never re-sought here: a slow
        flush must not look like a stall.
        """
        now = time.monotonic()
        out = {}
        # Also partitions we sought back that never delivered the expected
        # record since: the records after our seek may have been drained (and
        # dropped) up to the log end before a re-seek, and nothing newer comes.
        pending = {tp for tp, at in self.resyncing.items() if now - at > quiet_for}
        moved = {
            tp
            for tp in self.awaiting_first
            if (c := committed.get(tp)) is not None and c > self.expected.get(tp, c)
        }
        for tp in moved | pending:
            expected = self.expected.get(tp)
            if (
                expected is not None
                and log_end.get(tp, 0) > expected
                and tp not in self.inconsistent
                and now - self.last_seen.get(tp, 0.0) > quiet_for
            ):
                out[tp] = expected
                if tp in self.resyncing:
                    self.resyncing[tp] = now  # the caller seeks it now
        return out

    def mark_inconsistent(self, tp: TopicPartition, reason: str) -> None:
        if tp not in self.inconsistent:
            log.error(
                "%s[%d] is inconsistent: %s. Its records are no longer applied; reads keep "
                "serving the last projections. Operator action: rebuild with `projector replay` "
                "(see docs/operations.md).",
                tp[0],
                tp[1],
                reason,
            )
        self.inconsistent[tp] = reason
        self.metrics.inconsistent.labels(tp[0], str(tp[1])).set(1)
        self.status.update(inconsistent=dict(self.inconsistent))

    def adopt(
        self,
        offsets: dict[TopicPartition, int],
        marks: dict[TopicPartition, LogMark],
        repaired: dict[TopicPartition, int],
    ) -> None:
        """Take the position of a database swapped in (its ``offsets`` and ``marks``).

        Where it is ahead of the live position (a replay read further), the
        records it holds must not be applied again. The ``repaired``
        partitions (flagged inconsistent, caught up to the log end given)
        take its position as it is, since the old one belongs to a log that
        is gone, and are unflagged; one it holds no offset for had no record
        below that log end.
        """
        for tp, offset in offsets.items():
            if tp in repaired:
                continue
            if offset > self.expected.get(tp, 0):
                self.expected[tp] = offset
            if offset > self.applied.get(tp, 0):
                self.applied[tp] = offset
        for tp, mark in marks.items():
            if tp not in repaired and (tp not in self.marks or mark.offset > self.marks[tp].offset):
                self.marks[tp] = mark
                self.confirmed.pop(tp, None)  # a mark of NEW's: read back before it is relied on
        for tp, log_end in repaired.items():
            self._take_position(tp, offsets.get(tp), marks.get(tp), log_end)
            self.confirmed.pop(tp, None)
            self.resyncing.pop(tp, None)
            if self.inconsistent.pop(tp, None) is not None:
                self.metrics.inconsistent.labels(tp[0], str(tp[1])).set(0)
                log.warning("%s[%d]: inconsistent flag cleared by a swap", tp[0], tp[1])
        if not self.inconsistent:
            self.log_lost = None
        self.status.update(inconsistent=dict(self.inconsistent))

    async def reposition(self, tps: Iterable[TopicPartition]) -> None:
        """Seek the consumer of ``tps`` to the offsets DuckDB needs now (after ``adopt``).

        A swap can lower a partition's expected offset below where the
        consumer stands: a repaired partition takes the rebuilt database's
        position in the new log, while the consumer was sought, at the group
        join after the broker lost the log, to the old log's offset. faust
        drops every record below the offset it was last sought to (its read
        offset), so the records between the two would never reach ``add``,
        and with no later record nothing would seek back. Marked as
        resyncing, so the stall watchdog seeks again should this seek be
        overtaken by records fetched before it.
        """
        if self.seeker is None:
            return
        for tp in tps:
            expected = self.expected.get(tp)
            if expected is None or tp in self.inconsistent:
                continue
            self.resyncing[tp] = time.monotonic()
            await self.seeker(tp[0], tp[1], expected)

    def _lost(self, tp: TopicPartition, reason: str) -> None:
        """Flag ``tp``, whose log was lost or replaced, and every partition never applied.

        A broker that lost one partition's log lost its history: records that
        now arrive where DuckDB never applied anything (no stored offset, no
        mark to compare) may belong to another stream, and applying them would
        mix two histories. Only a replay can tell.
        """
        self.mark_inconsistent(tp, reason)
        if self.log_lost is None:
            self.log_lost = f"{tp[0]}[{tp[1]}]"
        # Every source partition has an expected offset from the start (its
        # log start); later ones are refused by add() on their first record.
        for other in sorted(set(self.expected) | set(self.last_seen)):
            if other not in self.inconsistent and self._never_applied(other):
                self.mark_inconsistent(other, self._unapplied_reason())

    def _never_applied(self, tp: TopicPartition) -> bool:
        # Offset 0 is stored for partitions a replay found empty: none applied either.
        return not self.applied.get(tp)

    def _unapplied_reason(self) -> str:
        return (
            f"no record applied yet, and the broker lost the log of {self.log_lost}: "
            "records here may belong to another history"
        )

    # -- flushing ------------------------------------------------------------------
    async def _flush_on_time(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            started = self._batch.started
            delay = self._batch.due(self.flush_interval)
            if delay > 0:
                await asyncio.sleep(delay)
            if self._batch.records and self._batch.started == started:
                try:
                    await self.flush()
                except Exception:  # keep the timer alive; flush() logged it
                    log.exception("timed flush failed")
            elif self._batch.records:
                self._wakeup.set()

    async def flush(self, *, retry: bool = True) -> FlushResult | None:
        """Commit the buffered batch; on a store error retry with backoff (nothing acked)."""
        async with self._flush_lock:
            batch = self._batch
            if not batch.records:
                return None
            self._batch = MicroBatch()
            delay = 0.1
            try:
                while True:
                    try:
                        if await self._replaced(batch):
                            await self._rewind(batch)
                            return None
                        if self.lease is not None and (why := self.lease()) is not None:
                            # Dropped, not held: the next assignment seeks every
                            # partition to its stored offset and reads it again.
                            if why != self._fenced:  # once per loss, not per batch
                                log.warning("not committing: %s", why)
                            self._fenced = why
                            await self._rewind(batch)
                            return None
                        result = await self._commit(batch)
                        break
                    except InvariantError as e:
                        # Committed, but memory is now wrong: never retried.
                        self.status.update(last_error=str(e))
                        if self.on_invariant_broken is not None:
                            self.on_invariant_broken(e)
                        raise
                    except (StoreError, OffsetsError) as e:
                        self.metrics.flush_failures.inc()
                        self.status.update(last_error=str(e))
                        if not retry:
                            raise
                        log.error("flush failed, retrying in %.1fs: %s", delay, e)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
            except BaseException:
                # Every exit by exception (retry=False, a bug, a cancellation,
                # during the backoff too) puts the batch back, or its records
                # would be skipped, their offsets passed by the next commit.
                # Re-applying after a commit that did land changes nothing (F1).
                self._batch = batch.restore(self._batch)
                raise
            batch.acknowledge()
            self.applied.update(batch.offsets)
            self._notify(batch, result)
            return result

    def _notify(self, batch: MicroBatch, result: FlushResult) -> None:
        """After a commit: metrics, health, and the listeners (the API's change feed)."""
        now = time.time()
        for stamp in batch.stamps:
            self.metrics.freshness.observe(now - stamp)
        self.status.update(
            offsets=dict(self.applied),
            flush_seq=result.seq,
            events_applied=self.status.events_applied + result.events,
            last_error=None,
        )
        for listener in self.listeners:
            try:
                listener(result)
            except Exception:
                log.exception("flush listener failed")

    async def _replaced(self, batch: MicroBatch) -> bool:
        """Does any partition of ``batch`` come from a log other than the one applied so far?

        Checked before a commit: a broker that restarted empty and was
        refilled hands out the offsets we expect next, so nothing in the
        records themselves shows it, and once committed the marks would name
        records of the new log. The log poll alone (1 s) came too late for
        that in tests. Only marks not yet confirmed in the consumer's current
        log epoch are read back (after an assignment or a reconnection; every
        time without an epoch). Until they are, the batch is held: a failed
        read fails the flush, which retries. Flags the replaced partitions.
        """
        # A partition without a mark (its first records) has nothing to compare
        # with: its records are trusted only while every other mark still holds.
        unmarked = any(tp not in self.marks for tp in batch.offsets)
        await self.check_marks(None if unmarked else batch.offsets, unconfirmed=True)
        return any(tp in self.inconsistent for tp in batch.offsets)

    async def check_marks(
        self, tps: Iterable[TopicPartition] | None = None, *, unconfirmed: bool = False
    ) -> None:
        """Ask the log for the last record applied in ``tps`` (default: every marked partition).

        Flags the partitions whose log holds another record there, or none;
        the others are confirmed for the current log epoch and assignment,
        unless either changed while asking. With ``unconfirmed``, marks
        confirmed for the current ones are not asked again. Without a
        verifier nothing is asked.
        """
        epoch = self.epoch
        stamp = (epoch(), self._assignments) if epoch is not None else None
        marks = (
            self.marks if tps is None else {tp: self.marks[tp] for tp in tps if tp in self.marks}
        )
        checked = {
            tp: mark
            for tp, mark in marks.items()
            if tp not in self.inconsistent
            and not (unconfirmed and stamp is not None and self.confirmed.get(tp) == stamp)
        }
        if not checked or self.verifier is None:
            return
        self.metrics.mark_checks.inc(len(checked))
        found = await self.verifier({tp: mark.offset for tp, mark in checked.items()})
        self.observe_marks(checked, found)
        # Confirmed only if no reconnection or assignment came while asking.
        if epoch is not None and stamp is not None and stamp == (epoch(), self._assignments):
            for tp in checked:
                if tp in found and tp not in self.inconsistent:
                    self.confirmed[tp] = stamp

    async def _rewind(self, batch: MicroBatch) -> None:
        """Drop ``batch`` and what came after it (nothing of it is acked) and read again.

        Partitions flagged inconsistent refuse their records from now on; the
        others are read again from the batch's first offsets.
        """
        newer, self._batch = self._batch, MicroBatch()
        starts = dict(newer.first)
        starts.update(batch.first)  # the older batch starts earlier
        for tp, offset in starts.items():
            if tp in self.inconsistent:
                continue
            self.expected[tp] = offset
            self.resyncing[tp] = time.monotonic()
            if self.seeker is not None:
                await self.seeker(tp[0], tp[1], offset)
        log.warning(
            "dropped %d uncommitted records; reading them again", batch.records + newer.records
        )

    async def _commit(self, batch: MicroBatch) -> FlushResult:
        if batch.deadletters and self.sink is not None:
            await self.sink.start()
            await self.sink.send(batch.deadletters)
        marks = batch.marks()
        t0 = time.perf_counter()
        result: FlushResult = await self.in_writer(
            self.store.flush,
            batch.events,
            batch.offsets,
            [d for d, _, _ in batch.deadletters],
            marks,
            batch.parts,
        )
        self.marks.update(marks)
        self.metrics.flush_seconds.observe(time.perf_counter() - t0)
        self.metrics.flush_events.observe(result.events)
        self.metrics.flushes.inc()
        self.metrics.events_applied.inc(result.events)
        for dl, _, _ in batch.deadletters:
            self.metrics.deadlettered.labels(dl.reason_code).inc()
        return result

    # -- lag and consistency ------------------------------------------------------
    def observe_marks(
        self, checked: dict[TopicPartition, LogMark], found: dict[TopicPartition, int | None]
    ) -> None:
        """Flag partitions whose log holds another record where we applied one.

        ``found`` is what the log holds at the offset of each ``checked`` mark
        (a copy of ``self.marks`` taken before reading the log: flushes move
        the marks on meanwhile, and a newer mark must not be compared with
        the record at an older one's offset).
        """
        for tp, got in found.items():
            mark = checked.get(tp)
            if mark is None or tp in self.inconsistent:
                continue
            reason = mismatch(tp, mark, got)
            if reason is not None:
                self._lost(tp, reason)

    def observe_log(
        self, log_start: dict[TopicPartition, int], log_end: dict[TopicPartition, int]
    ) -> None:
        """Record log ends; flag partitions whose log no longer holds our position."""
        for tp, end in log_end.items():
            applied = self.applied.get(tp)
            if applied is not None and end < applied:
                self._lost(
                    tp, f"log end {end} is behind the stored offset {applied} (broker lost records)"
                )
            start = log_start.get(tp)
            if start is not None and applied is not None and start > applied:
                self.mark_inconsistent(
                    tp, f"log start {start} is past the stored offset {applied} (records expired)"
                )
            behind = max(0, end - (applied or 0))
            self.metrics.lag.labels(tp[0], str(tp[1])).set(behind)
        snapshot_lag = sum(max(0, end - self.applied.get(tp, 0)) for tp, end in log_end.items())
        self.metrics.lag_total.set(snapshot_lag)
        self.status.update(log_end=dict(log_end))
