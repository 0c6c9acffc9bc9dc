"""The producer SDK: send contract events to Kafka the way the projector expects them.

``EventEmitter`` validates every event against the contract (``schemas``),
routes it by ``type`` to its topic, keys it by ``campaign_id`` and sends it as
compact JSON. With ``array_size > 1`` it packs up to that many events of one
campaign and topic into one JSON-array record, which the contract allows and
which cuts the per-record cost of producing and consuming several-fold.

Usage::

    from projector.tools.emit import EventEmitter, InvalidEventError

    async with EventEmitter("127.0.0.1:9092", array_size=50) as emitter:
        await emitter.emit(
            {
                "event_id": "3f45a095-0122-f75a-ea35-b7b97bcd3680",
                "type": "run.claimed",
                "occurred_at": "2026-05-12T18:43:16.000Z",
                "workspace_id": "ws_beta",
                "campaign_id": "72dc8cf8-f5fd-16a9-5b75-433973c022b7",
                "run_id": "run_1_0_748",
            }
        )
        await emitter.emit_many(more_events)
        await emitter.flush()  # optional: waits until the broker acknowledged everything

An invalid event raises ``InvalidEventError`` (its ``reason`` uses the same
codes as the projector's dead-letter records) and nothing of it is sent.
Leaving the ``async with`` block flushes. Errors from Kafka surface as
``EmitError`` from ``emit``/``flush``. One emitter serves one task at a time;
events of one campaign on one topic keep their order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Iterable
from types import TracebackType
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from pydantic import BaseModel, ValidationError

from projector.settings import Topics
from projector.tools.errors import EmitError, InvalidEventError
from schemas import EVENT_ADAPTER, TOPIC_KIND_OF_TYPE, Event, decode_value
from schemas.decode import DEFAULT_MAX_BYTES


class _Buffer:
    __slots__ = ("parts", "size", "since")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 2  # the brackets
        self.since = time.monotonic()


class EventEmitter:
    """Async context manager producing contract events to Kafka.

    Args:
        bootstrap: Kafka ``HOST:PORT``.
        topics: topic names; default the contract's.
        array_size: events per record; above 1, events of one campaign and
            topic are packed into JSON-array records.
        linger_ms: how long the Kafka client waits to fill a request.
        acks: ``"all"``, 1 or 0, as in Kafka.
        enable_idempotence: Kafka's idempotent producer (needs ``acks="all"``).
        array_linger_ms: a partly filled array record is sent at the latest
            this long after its first event, so slow streams still flow.
        max_record_bytes: array records are cut before they grow past this;
            the projector dead-letters larger records.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics | None = None,
        *,
        array_size: int = 1,
        linger_ms: int = 5,
        acks: Literal["all", 0, 1, -1] = "all",
        enable_idempotence: bool = False,
        array_linger_ms: int = 100,
        max_record_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if array_size < 1:
            raise ValueError(f"array_size must be >= 1, got {array_size}")
        self.bootstrap = bootstrap
        self.topics = topics or Topics()
        self.array_size = array_size
        self.max_record_bytes = max_record_bytes
        self._array_linger = array_linger_ms / 1000
        self._producer_options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "linger_ms": linger_ms,
            "acks": acks,
            "enable_idempotence": enable_idempotence,
            # Larger client batches than the 16 KiB default: array records of
            # a few dozen events are bigger than that on their own.
            "max_batch_size": 512 * 1024,
            "max_request_size": max(1_048_576, max_record_bytes + 64 * 1024),
        }
        self._topic_of_type = {t: getattr(self.topics, k) for t, k in TOPIC_KIND_OF_TYPE.items()}
        self._producer: AIOKafkaProducer | None = None
        self._buffers: dict[tuple[str, bytes], _Buffer] = {}
        self._pending: list[asyncio.Future[Any]] = []
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._error: BaseException | None = None
        self._linger_task: asyncio.Task[None] | None = None
        self.events_sent = 0
        """Events handed to Kafka (still buffered ones not included)."""
        self.records_sent = 0
        """Records handed to Kafka."""

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        producer = AIOKafkaProducer(**self._producer_options)
        try:
            await producer.start()
        except (KafkaError, OSError) as e:
            await producer.stop()
            raise EmitError(f"cannot connect to Kafka at {self.bootstrap}: {e!r}") from e
        self._producer = producer
        if self.array_size > 1:
            self._linger_task = asyncio.create_task(self._linger_loop())

    async def stop(self) -> None:
        """Flush and close; safe to call twice."""
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._linger_task is not None:
            self._linger_task.cancel()
            try:
                await self._linger_task
            except asyncio.CancelledError:
                pass
            self._linger_task = None
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def __aenter__(self) -> EventEmitter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.stop()
        else:
            # Leaving on an error: do not block on the broker, drop what is buffered.
            self._buffers.clear()
            await self._close()

    # -- sending -----------------------------------------------------------

    async def emit(self, event: dict[str, Any] | Event, *, validate: bool = True) -> None:
        """Send one event (buffered when ``array_size > 1``).

        Args:
            event: a JSON-ready dict (datetimes allowed) or a ``schemas`` model.
            validate: check dicts against the contract first; pass False only
                for events validated already (``projector produce`` does).

        Raises:
            InvalidEventError: the event breaks the contract; nothing was sent.
            EmitError: Kafka refused or failed an earlier send, or is unreachable.
        """
        value, type_, campaign_id = self._encode(event, validate)
        topic = self._topic_of_type.get(type_)  # type: ignore[arg-type]
        if topic is None:
            raise InvalidEventError(f"unknown_type: {type_!r} is not one of the contract's types")
        key = campaign_id.encode()
        if self.array_size == 1:
            await self._send(topic, key, value, 1)
            return
        buffer = self._buffers.get((topic, key))
        if buffer is not None and buffer.size + len(value) + 1 > self.max_record_bytes:
            await self._send_buffer(topic, key)
            buffer = None
        if buffer is None:
            buffer = self._buffers[(topic, key)] = _Buffer()
        buffer.parts.append(value)
        buffer.size += len(value) + 1
        if len(buffer.parts) >= self.array_size:
            await self._send_buffer(topic, key)

    async def emit_many(
        self,
        events: Iterable[dict[str, Any] | Event] | AsyncIterable[dict[str, Any] | Event],
        *,
        validate: bool = True,
    ) -> int:
        """Send events in order; returns how many. Stops at the first invalid one."""
        n = 0
        if isinstance(events, AsyncIterable):
            async for event in events:
                await self.emit(event, validate=validate)
                n += 1
        else:
            for event in events:
                await self.emit(event, validate=validate)
                n += 1
        return n

    async def flush(self) -> None:
        """Send every buffered array and wait until Kafka acknowledged all sends.

        Raises:
            EmitError: a send failed.
        """
        for topic, key in list(self._buffers):
            await self._send_buffer(topic, key)
        if self._pending:
            await asyncio.wait(self._pending)
            self._prune()
        self._raise_if_failed()

    # -- internals ---------------------------------------------------------

    def _encode(self, event: dict[str, Any] | Event, validate: bool) -> tuple[bytes, str, str]:
        if isinstance(event, BaseModel):
            # Models were validated when they were built.
            return event.model_dump_json().encode(), event.type, event.campaign_id
        if not isinstance(event, dict):
            raise InvalidEventError(
                f"not_an_object: expected a dict or an event model, got {type(event).__name__}"
            )
        try:
            value = orjson.dumps(event)
        except TypeError as e:
            raise InvalidEventError(f"invalid_json: {e}") from e
        if len(value) > self.max_record_bytes:
            raise InvalidEventError(
                f"too_large: the event is {len(value)} bytes, limit is {self.max_record_bytes}"
            )
        if validate:
            # Validate the bytes that go on the wire, as the projector will.
            try:
                EVENT_ADAPTER.validate_json(value)
            except ValidationError as e:
                rejects = decode_value(value, max_bytes=len(value)).rejects
                raise InvalidEventError(rejects[0].reason if rejects else str(e)) from None
        type_, campaign_id = event.get("type"), event.get("campaign_id")
        if not isinstance(type_, str) or not isinstance(campaign_id, str):
            raise InvalidEventError("missing_field: type or campaign_id")
        return value, type_, campaign_id

    async def _send_buffer(self, topic: str, key: bytes) -> None:
        # Taken out of the dict before awaiting, so the linger task never
        # sends the same buffer twice.
        buffer = self._buffers.pop((topic, key), None)
        if buffer is None or not buffer.parts:
            return
        value = b"[" + b",".join(buffer.parts) + b"]"
        await self._send(topic, key, value, len(buffer.parts))

    async def _send(self, topic: str, key: bytes, value: bytes, events: int) -> None:
        self._raise_if_failed()
        producer = self._producer
        if producer is None:
            raise EmitError("the emitter is not started (use `async with EventEmitter(...)`)")
        try:
            partition = self._partition_of.get((topic, key))
            if partition is None:
                partition = await self._partition(producer, topic, key)
            future = await producer.send(topic, value=value, key=key, partition=partition)
        except KafkaError as e:
            raise EmitError(f"producing to {topic} on {self.bootstrap} failed: {e!r}") from e
        self._pending.append(future)
        self.records_sent += 1
        self.events_sent += events
        if len(self._pending) >= 10_000:
            self._prune()
            # send() rarely suspends; give the client's sender task a turn so
            # requests leave steadily rather than only when a batch is full.
            await asyncio.sleep(0)

    async def _partition(self, producer: AIOKafkaProducer, topic: str, key: bytes) -> int:
        # The client's default partitioner (Java-compatible murmur2 of the key)
        # is slow in pure Python; a campaign's partition only changes if the
        # topic is repartitioned, so compute it once per key.
        partitions = sorted(await producer.partitions_for(topic))
        partition: int = DefaultPartitioner()(key, partitions, partitions)
        if len(self._partition_of) >= 100_000:
            self._partition_of.clear()
        self._partition_of[(topic, key)] = partition
        return partition

    def _prune(self) -> None:
        """Drop acknowledged sends, remembering the first failure."""
        still: list[asyncio.Future[Any]] = []
        for future in self._pending:
            if not future.done():
                still.append(future)
            elif self._error is None and not future.cancelled() and future.exception():
                self._error = future.exception()
        self._pending = still

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise EmitError(
                f"producing to {self.bootstrap} failed: {self._error!r}"
            ) from self._error

    async def _linger_loop(self) -> None:
        while True:
            await asyncio.sleep(self._array_linger / 2)
            cutoff = time.monotonic() - self._array_linger
            for (topic, key), buffer in list(self._buffers.items()):
                if buffer.since <= cutoff:
                    try:
                        await self._send_buffer(topic, key)
                    except EmitError:
                        return  # surfaces from the next emit() or flush()
