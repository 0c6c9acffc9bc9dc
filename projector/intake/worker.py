"""Faust glue: one agent feeding records to the ``Pipeline``, nothing more.

The app is built by ``create_app(settings, ...)`` (no module-level app with a
hard-coded broker). Values stay raw bytes; ``schemas`` decodes them. The
stream is ``noack``: a record is acked only after the DuckDB transaction that
applied it commits, so faust's Kafka commits never run ahead of DuckDB.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
import mode

from projector.intake.deadletters import DeadLetterSink
from projector.intake.epoch import LogEpoch
from projector.intake.health import PipelineStatus
from projector.intake.membership import Membership
from projector.intake.metrics import Metrics
from projector.intake.offsets import (
    LogReader,
    OffsetsError,
    beginning_offsets,
    committed_offsets,
)
from projector.intake.pipeline import Pipeline
from projector.intake.placement import Placement
from projector.settings import Settings
from projector.store.errors import InvariantError
from projector.store.shards import Shards
from projector.store.writer import Store

log = logging.getLogger(__name__)

# A partition that has records DuckDB lacks but delivers none for this long is re-sought.
STALL_SECONDS = 3.0

# The group's session: a member silent this long is expelled (new_faust_app).
SESSION_TIMEOUT_SECONDS = 6
HEARTBEAT_SECONDS = 1
# The membership's lease (projector.intake.membership): the last heartbeat the
# broker saw may be up to one interval older than the worker's last tick, so a
# gap of the session timeout less one heartbeat may already have expelled us.
LEASE_SECONDS = SESSION_TIMEOUT_SECONDS - HEARTBEAT_SECONDS
TICK_SECONDS = 0.5


class Projector:
    """Everything a running projector holds, whatever process hosts it."""

    def __init__(
        self,
        settings: Settings,
        store: Store | Shards,
        *,
        status: PipelineStatus | None = None,
        metrics: Metrics | None = None,
        exit_when_caught_up: bool = False,
    ) -> None:
        self.settings = settings
        self.exit_when_caught_up = exit_when_caught_up
        self.loop: asyncio.AbstractEventLoop | None = None
        self.store = store
        # A store per partition (--data-dir): shards follow the assignment.
        self.shards = store if isinstance(store, Shards) else None
        self.placement: Placement | None = None  # set by create_app when sharded
        self.status = status or PipelineStatus(mode="live")
        self.metrics = metrics or Metrics()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer")
        # Every look at the log after start-up (marks, lag) goes through one consumer.
        self.log = LogReader(settings.bootstrap)
        self.pipeline = Pipeline(
            store,
            executor=self.executor,
            deadletters=DeadLetterSink(settings.bootstrap, settings.topics.deadletter),
            status=self.status,
            metrics=self.metrics,
            flush_max_events=settings.flush_max_events,
            flush_interval_ms=settings.flush_interval_ms,
        )
        self.membership = Membership(
            settings.advertised_url(),
            settings.partitions,
            settings.topics.sources,
            metrics=self.metrics,
            lease_seconds=LEASE_SECONDS,
        )
        # Nothing is committed for partitions that may be another node's now.
        self.pipeline.lease = self.membership.lease_lost
        self.pipeline.on_invariant_broken = stop_on_broken_invariant
        if settings.check_invariants:
            log.info("invariant mode on: memory is compared with DuckDB after every flush")
        self.app = create_app(settings, self)

    def advertise(self, url: str) -> None:
        """Advertise ``url`` to the group (before faust starts: the leader checks it)."""
        self.membership.url = url
        self.app.conf.canonical_url = self.membership.url

    def prepare(self) -> None:
        """Create topics, check they are co-partitioned, load DuckDB offsets.

        Call before faust starts (so before the group is joined).

        Raises:
            PartitionCountError: The source topics differ in partition count.
        """
        from projector.intake.topics import ensure_topics, require_copartitioned

        sources = list(self.settings.topics.sources)

        async def _prepare() -> dict[tuple[str, int], int]:
            counts = await ensure_topics(
                self.settings.bootstrap, self.settings.topics.all, self.settings.partitions
            )
            self.membership.partitions = require_copartitioned(counts, sources)
            if self.shards is not None:
                self.shards.partitions = self.membership.partitions
                self.pipeline.holds = self.shards.holds
            return await beginning_offsets(self.settings.bootstrap, sources)

        self.pipeline.prepare(asyncio.run(_prepare()))

        async def _check_marks() -> None:
            try:
                await self.pipeline.check_marks()
            finally:
                await self.log.close()  # its consumer belongs to this loop

        try:
            asyncio.run(_check_marks())
        except OffsetsError as e:  # the log poll checks again every second
            log.warning("could not check the stored log marks at start: %s", e)
        log.info("projector resumes at %s", self.status.snapshot().watermark or "log start")


# Exit status of a process stopped by the invariant mode (EX_SOFTWARE: a bug).
EXIT_INVARIANT_BROKEN = 70


def stop_on_broken_invariant(error: InvariantError) -> None:
    """Stop the process at once: its memory no longer matches DuckDB.

    Not a clean stop: the final flush would only fail the check again, and
    every answer given meanwhile could be wrong. What was committed is in
    DuckDB (its WAL replays on open), and a restart reloads memory from it.
    """
    log.critical("invariant broken, stopping: %s", error)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_INVARIANT_BROKEN)


# After a fatal fetcher error: how long a clean stop may take before the process exits.
GIVE_UP_SECONDS = 20.0


def fetcher_died(app: Any) -> str | None:
    """Why faust's record fetcher is dead for good, or None while it lives.

    faust restarts the fetcher after the cancellation a rebalance causes; any
    other exception ends it (seen: a ``KeyError`` in aiokafka's
    ``fetched_records`` after a rebalance, robinhood/aiokafka#19), and the node
    would go on answering for partitions whose records it no longer reads,
    beside their new owner.
    """
    fetcher = getattr(app, "_fetcher", None)
    reason = getattr(fetcher, "crash_reason", None)
    if fetcher is None or not getattr(fetcher, "crashed", False) or reason is None:
        return None
    if isinstance(reason, asyncio.CancelledError):
        return None
    return f"faust's fetcher died: {reason!r}"


def give_up(projector: Projector, why: str) -> None:
    """Stop answering for anything now, and stop the process (a supervisor restarts it).

    SIGTERM is faust's clean stop (the buffered batch is flushed or left
    unacked); should that hang, the process exits after ``GIVE_UP_SECONDS``:
    what was committed is in DuckDB, and the next start resumes from it.
    """
    log.critical("%s: this node answers for nothing and stops; restart it", why)
    projector.membership.left()
    projector.status.update(ready=False, last_error=why)
    timer = threading.Timer(GIVE_UP_SECONDS, os._exit, (1,))
    timer.daemon = True
    timer.start()
    os.kill(os.getpid(), signal.SIGTERM)


class ProjectorService(mode.Service):
    """Starts the pipeline before the agent runs; flushes it on a clean stop."""

    def __init__(self, projector: Projector, **kwargs: Any) -> None:
        self.projector = projector
        self._ready_target: dict[tuple[str, int], int] | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        # Other threads (the API's admin swap) schedule work on this loop.
        self.projector.loop = asyncio.get_running_loop()

    async def on_stop(self) -> None:
        self.projector.membership.left()
        if self.projector.placement is not None:
            await self.projector.placement.stop()
        await self.projector.pipeline.close()
        await self.projector.log.close()

    @mode.Service.task
    async def _keep_lease(self) -> None:
        """Tick the membership's lease; after a loss, have the consumer rejoin the group.
        Give up at once if faust's fetcher died (``fetcher_died``)."""
        p = self.projector
        while not self.should_stop:
            if p.membership.tick():
                _request_rejoin(p.app)
            if (why := fetcher_died(p.app)) is not None:
                give_up(p, why)
                return
            await self.sleep(TICK_SECONDS)

    async def _unstall(self, end: dict[tuple[str, int], int]) -> None:
        from faust.types import TP

        p = self.projector
        consumer = p.app.consumer
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        # The group's offsets as faust read them on assignment (and its own
        # commits since, which never pass DuckDB's: we ack only what is stored).
        committed = {
            (tp.topic, tp.partition): offset
            # No public view; a faust without it leaves only the sought-back case.
            for tp, offset in getattr(consumer, "_committed_offset", {}).items()
            if offset is not None
        }
        for (topic, partition), offset in p.pipeline.stalled(end, STALL_SECONDS, committed).items():
            if (topic, partition) in assigned:
                log.warning(
                    "%s[%d] delivers nothing below the log end; seeking to %d",
                    topic,
                    partition,
                    offset,
                )
                p.pipeline.last_seen[(topic, partition)] = time.monotonic()
                await consumer.seek_wait({TP(topic, partition): offset})

    @mode.Service.task
    async def _poll_log(self) -> None:
        """Lag, readiness and truncation checks from true log ends (fetch high watermarks)."""
        p = self.projector
        sources = list(p.settings.topics.sources)
        while not self.should_stop:
            try:
                whole_end = await p.log.log_end(sources, timeout=5.0)
                start = await p.log.log_start(sources, timeout=5.0)
                # Lag, readiness and truncation are this node's partitions' only:
                # the others are another member's (projector.intake.membership).
                in_place, local = p.membership.in_place, p.membership.local
                end = {tp: o for tp, o in whole_end.items() if tp[1] in local}
                for topic, partition in whole_end.keys() - end.keys():
                    with contextlib.suppress(KeyError):
                        p.metrics.lag.remove(topic, str(partition))
                p.pipeline.observe_log(start, end)
                await p.pipeline.check_marks()
                await self._unstall(end)
                if self._ready_target is None and in_place:
                    self._ready_target = end
                if (
                    not p.status.ready
                    and self._ready_target is not None
                    and all(
                        p.pipeline.applied.get(tp, 0) >= target or tp in p.pipeline.inconsistent
                        for tp, target in self._ready_target.items()
                        if target > start.get(tp, 0)
                    )
                ):
                    p.status.update(ready=True)
                    log.info("caught up with the log ends seen at start: ready")
                    if p.exit_when_caught_up:
                        await p.pipeline.flush()
                        # faust's worker turns SIGTERM into a clean shutdown.
                        os.kill(os.getpid(), signal.SIGTERM)
            except Exception as e:  # broker down: keep serving, report, retry
                # The log ends seen before are stale now: forget them, so the
                # API reports the lag as unknown instead of a stale figure.
                p.status.update(last_error=f"log poll failed: {e}", log_end={})
                log.debug("log poll failed", exc_info=True)
            await self.sleep(p.settings.log_poll_seconds)


def _request_rejoin(app: faust.App) -> None:
    """Have the group consumer rejoin: a rebalance, after which the lease is renewed.

    The broker may still count this member in (its loop was blocked while the
    consumer thread went on heartbeating, or the broker was slow to expel it):
    then no rebalance would come by itself. The coordinator lives on the
    consumer thread's loop, so the request is handed to that loop.
    """
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    if thread is None or coordinator is None:
        return  # not joined yet: the first assignment settles it
    log.info("asking the group for a new assignment")
    thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)


def _set_fetch_max_wait(app: faust.App, ms: int) -> None:
    """Give faust's Kafka consumer our fetch wait instead of its hard-coded 1500 ms.

    faust offers no setting for it (``AIOKafkaConsumerThread._create_worker_consumer``
    passes a literal), so the consumer it builds is adjusted before it starts:
    aiokafka hands ``_fetch_max_wait_ms`` to its fetcher in ``start()``.
    """
    thread = app.consumer._thread  # noqa: SLF001 - no public hook exists
    create = thread._create_worker_consumer  # noqa: SLF001

    def create_with_wait(transport: Any) -> Any:
        consumer = create(transport)
        consumer._fetch_max_wait_ms = ms  # noqa: SLF001
        return consumer

    thread._create_worker_consumer = create_with_wait  # noqa: SLF001


def _watch_log_epoch(app: faust.App, epoch: LogEpoch) -> None:
    """Have ``epoch`` watch the Kafka consumer faust builds (its connections and leaders)."""
    thread = app.consumer._thread  # noqa: SLF001 - no public hook exists
    create = thread._create_worker_consumer  # noqa: SLF001

    def create_watched(transport: Any) -> Any:
        consumer = create(transport)
        epoch.watch(consumer)
        return consumer

    thread._create_worker_consumer = create_watched  # noqa: SLF001


DATADIR_PREFIX = "projector-faust-"


def sweep_datadirs(root: str) -> list[str]:
    """Remove the faust data dirs of projector processes that are gone; returns them.

    A worker killed with SIGKILL never runs its atexit. Only names with a
    pid (``projector-faust-<pid>-<random>``) are touched, and only when no
    process has that pid: a live one, ours or not, keeps its dir.
    """
    removed = []
    for path in sorted(Path(root).glob(f"{DATADIR_PREFIX}*-*")):
        pid = path.name[len(DATADIR_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def new_faust_app(
    group_id: str,
    bootstrap: str,
    *,
    partitions: int,
    fetch_max_wait_ms: int,
    canonical_url: str | None = None,
) -> faust.App:
    """The faust app as the projector configures it (the ceiling benchmark uses it too)."""
    # faust makes its data dir (tables, unused with memory stores) in the
    # working directory by default: one `<group>-data` per group id left
    # behind wherever the projector ran. A private temporary one instead,
    # named by our pid: atexit removes it, and a process killed before that
    # leaves one that the next projector to start removes.
    sweep_datadirs(tempfile.gettempdir())
    datadir = tempfile.mkdtemp(prefix=f"{DATADIR_PREFIX}{os.getpid()}-")
    atexit.register(shutil.rmtree, datadir, ignore_errors=True)
    app = faust.App(
        group_id,
        datadir=datadir,
        broker=f"kafka://{bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,  # topics are created by projector.intake.topics, once
        topic_disable_leader=True,
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        # faust's default session and rebalance timeouts made every group join
        # on Tansu wait for them; these let a join finish in seconds.
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=HEARTBEAT_SECONDS,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=16384,
        # Don't wait for every delivered message to be acked before a stop or
        # rebalance: with the noack stream a message is acked only by the
        # flush that commits it, so faust's wait_empty() would hang until the
        # next size- or time-triggered flush (or forever once the stream is
        # stopped). Offsets live in DuckDB; whatever is not committed is
        # simply read again.
        stream_wait_empty=False,
        producer_acks=-1,
        logging_config=None,
    )
    if canonical_url is not None:
        # The leader's assignment carries every member's URL (projector.intake.membership).
        app.conf.canonical_url = canonical_url
    _set_fetch_max_wait(app, fetch_max_wait_ms)
    return app


def create_app(settings: Settings, projector: Projector) -> faust.App:
    app = new_faust_app(
        settings.group_id,
        settings.bootstrap,
        partitions=settings.partitions,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        canonical_url=projector.membership.url,
    )
    pipeline = projector.pipeline
    membership = projector.membership
    # A restoring partition answers again once a flush has caught it up.
    pipeline.listeners.append(lambda _flushed: membership.caught_up(pipeline.applied))
    placement = (
        None
        if projector.shards is None
        else Placement(projector.shards, pipeline, membership, pipeline.in_writer)
    )
    projector.placement = placement
    channel = app.topic(*settings.topics.sources, value_serializer="raw", key_serializer="raw")

    async def seek(topic: str, partition: int, offset: int) -> None:
        from faust.types import TP

        tp = TP(topic, partition)
        if tp not in app.consumer.assignment():
            return  # not ours now: whoever is assigned it starts from DuckDB's offset
        # seek_wait runs on faust's consumer thread; a plain seek from this
        # loop races aiokafka's fetcher (seen: KeyError in fetched_records).
        # It also resets faust's read offset, below which faust drops records.
        await app.consumer.seek_wait({tp: offset})

    pipeline.seeker = seek

    async def verify(wanted: dict[tuple[str, int], int]) -> dict[tuple[str, int], int | None]:
        return await projector.log.digests(wanted, timeout=5.0)

    pipeline.verifier = verify
    # Marks are read back before a commit only after an assignment or a
    # reconnection of this consumer (docs/decisions/0034-log-marks-once-per-epoch.md).
    epoch = LogEpoch(on_bump=lambda _why: projector.metrics.log_epochs.inc())
    _watch_log_epoch(app, epoch)
    pipeline.epoch = epoch

    async def project(stream: faust.StreamT[bytes]) -> None:
        # ``stream.events()`` inlined: it is this loop inside one more async
        # generator, resumed once per record
        # (docs/decisions/0011-agent-iterates-the-stream.md).
        records = stream.noack()
        async for _ in records:
            event = records.current_event
            if event is None:  # as events() does: a value without a record
                continue
            m = event.message
            await pipeline.add(
                m.topic, m.partition, m.offset, m.key, m.value, event.ack, m.timestamp
            )

    app.agent(channel, name="projector", concurrency=1)(project)

    @app.on_partitions_assigned.connect
    async def seek_to_stored(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # A (re)join of the consumer group: worth a line, as faust's own are silenced.
        log.info("consumer group joined: %d partitions assigned", len(assigned))
        # Start where DuckDB says. faust may still re-seek to Kafka-committed
        # offsets afterwards; the pipeline detects that and seeks back.
        tps = {(tp.topic, tp.partition) for tp in assigned}
        if placement is not None:
            # Shards first: the seeks below go to the offsets they hold.
            await placement.follow(frozenset(p for _, p in tps))
        pipeline.assigned(tps)
        stored = {}
        for tp in assigned:
            expected = pipeline.expected_offset(tp.topic, tp.partition)
            if expected is not None and (
                placement is None or placement.shards.holds(tp.partition)
            ):
                stored[tp] = expected
        if stored:
            # On faust's consumer thread, as every seek of ours: faust's plain
            # ``seek`` calls aiokafka's from this thread, which races the
            # fetcher's own (a KeyError in fetched_records killed it when
            # opening the shards let records arrive before these seeks).
            await app.consumer.seek_wait(stored)
        # Their records wait for the marks read back anyway; reading them now
        # also flags a replaced log that has nothing new to deliver.
        pipeline.confirm_soon(tps)
        # How far each partition's last owner had stored: the group's commits
        # (projector.intake.membership holds back a gained partition behind them).
        try:
            committed = await committed_offsets(settings.bootstrap, settings.group_id, tps)
        except OffsetsError as e:
            log.warning("could not read the group's offsets; no partition restores: %s", e)
            committed = {}
        membership.assigned(
            app.assignor.external_topics_metadata(), tps, committed, pipeline.applied
        )

    @app.on_partitions_revoked.connect
    async def unsettle(sender: Any, revoked: Any, **kwargs: Any) -> None:
        membership.revoked()

    class _Service(ProjectorService):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(projector, **kwargs)

    app.service(_Service)
    return app


def run_worker(app: faust.App) -> int:
    """Run faust in the foreground until SIGINT/SIGTERM; returns the exit code."""
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        return int(e.code or 0)
    return 0
