"""The log epoch on a real consumer and broker: still in steady state, moved by a reconnection."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from projector.intake.epoch import LogEpoch
from projector.intake.topics import ensure_topics
from projector.tools.broker import EmbeddedBroker

TOPIC = "epoch.probe"


async def _produce(bootstrap: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(TOPIC, value, partition=0)
    finally:
        await producer.stop()


async def _read(consumer: AIOKafkaConsumer, n: int, timeout: float = 20.0) -> list[bytes]:
    """The next ``n`` records of the partition, fetching until they came."""
    got: list[bytes] = []

    async def fetch() -> None:
        while len(got) < n:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                got.extend(r.value for r in records)

    await asyncio.wait_for(fetch(), timeout)
    return got


async def test_the_epoch_stays_while_connected_and_moves_on_reconnection() -> None:
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap
        await ensure_topics(bootstrap, [TOPIC], 1)
        await _produce(bootstrap, [b"a0", b"a1", b"a2"])
        epoch = LogEpoch()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
        )
        epoch.watch(consumer)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(TOPIC, 0)])
            assert await _read(consumer, 3) == [b"a0", b"a1", b"a2"]
            connected = epoch()
            assert connected > 0  # the first connections count too

            # Steady state: more fetches, more records, the same connections.
            await _produce(bootstrap, [b"a3"])
            assert await _read(consumer, 1) == [b"a3"]
            for _ in range(10):
                await consumer.getmany(timeout_ms=50)
            assert epoch() == connected

            # The broker restarts empty and is refilled past our position: the
            # records come over a new connection, and the epoch moved first.
            broker.restart()
            await ensure_topics(bootstrap, [TOPIC], 1)
            await _produce(bootstrap, [b"b0", b"b1", b"b2", b"b3", b"b4", b"b5"])
            assert await _read(consumer, 2) == [b"b4", b"b5"]
            assert epoch() > connected
        finally:
            await consumer.stop()


pytestmark = pytest.mark.timeout(90)
