"""Offset reading on the real broker: log ends and starts, record digests, the long-lived reader."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from projector.intake.offsets import (
    LogReader,
    OffsetsError,
    beginning_offsets,
    log_end_offsets,
    record_digests,
)
from projector.intake.topics import ensure_topics
from projector.settings import Topics
from projector.store.logmark import digest
from projector.tools.broker import EmbeddedBroker

TopicsFactory = Callable[..., Topics]


async def test_log_end_offsets_batched_and_single(
    bootstrap: str, topics_factory: TopicsFactory
) -> None:
    topics = topics_factory(partitions=4)
    t = topics.runs
    # 100 records in one batch to partition 0: Tansu's ListOffsets says 1 here.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        batch = producer.create_batch()
        for i in range(100):
            assert batch.append(key=b"k", value=f"b{i}".encode(), timestamp=None) is not None
        await (await producer.send_batch(batch, t, partition=0))
        # Then 7 single-record sends to partition 1, and a mixed partition 2.
        for i in range(7):
            await producer.send_and_wait(t, value=f"s{i}".encode(), partition=1)
        batch = producer.create_batch()
        for _ in range(30):
            batch.append(key=None, value=b"x", timestamp=None)
        await (await producer.send_batch(batch, t, partition=2))
        await producer.send_and_wait(t, value=b"tail", partition=2)
    finally:
        await producer.stop()

    began = time.monotonic()
    ends = await log_end_offsets(bootstrap, [t, topics.dlrs])
    elapsed = time.monotonic() - began
    assert ends == {
        (t, 0): 100,
        (t, 1): 7,
        (t, 2): 31,
        (t, 3): 0,
        **{(topics.dlrs, p): 0 for p in range(4)},
    }
    assert elapsed < 2.0
    starts = await beginning_offsets(bootstrap, [t])
    assert starts == {(t, p): 0 for p in range(4)}


async def test_log_end_offsets_fast_for_20_partitions(
    bootstrap: str, topics_factory: TopicsFactory
) -> None:
    topics = topics_factory(partitions=20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futs = [
            await producer.send(topics.submits, value=b"v", partition=i % 20)
            for i in range(1000)
            if i % 20 != 19  # leave partition 19 empty
        ]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    began = time.monotonic()
    ends = await log_end_offsets(bootstrap, [topics.submits])
    elapsed = time.monotonic() - began
    assert ends == {(topics.submits, p): (0 if p == 19 else 50) for p in range(20)}
    assert elapsed < 1.0, f"log_end_offsets took {elapsed:.3f}s"


async def test_record_digests_read_records_far_larger_than_the_fetch_size(
    bootstrap: str, topics_factory: TopicsFactory
) -> None:
    """The log-mark check fetches 64 KB per partition; a 2 MB record there must still be read.

    Kafka (and Tansu, measured) return a first batch larger than the limit
    whole; several partitions at once must each get theirs. Also: an offset
    past the log end and an absent partition read as "no record".
    """
    topics = topics_factory(partitions=4)
    t = topics.submits
    big = {q: bytes([65 + q]) * (2 * 1024 * 1024 + q) for q in range(4)}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=12 * 1024 * 1024)
    await producer.start()
    try:
        for q, value in big.items():
            for v in (b"before", value, b"after"):
                await producer.send_and_wait(t, v, partition=q)
    finally:
        await producer.stop()
    got = await record_digests(bootstrap, {**{(t, q): 1 for q in range(4)}, (topics.dlrs, 0): 0})
    assert {q: got[(t, q)] for q in range(4)} == {q: digest(v) for q, v in big.items()}
    assert got[(topics.dlrs, 0)] is None  # empty partition: nothing at offset 0
    past = await record_digests(bootstrap, {(t, 0): 3, (t, 99): 0})
    assert past == {(t, 0): None, (t, 99): None}


async def test_log_end_offsets_unknown_topic_does_not_create_it(bootstrap: str) -> None:
    name = f"missing-{os.getpid()}-{time.monotonic_ns()}"
    with pytest.raises(OffsetsError, match="unknown topics"):
        await log_end_offsets(bootstrap, [name])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        assert name not in await admin.list_topics()
    finally:
        await admin.close()


async def test_log_reader_sees_the_log_move_and_survives_a_broker_restart(
    topics_factory: TopicsFactory,
) -> None:
    """The worker's long-lived reader answers as the one-shot functions do, look
    after look, however the log moved in between: nothing (high watermarks,
    positions, paused partitions) carries over. After a restart of the memory
    broker the old records are gone: a look fails while it is down, and the
    next one sees the new log, not a cached picture of the old."""
    with EmbeddedBroker() as b:
        await ensure_topics(b.bootstrap, [f"lr-{os.getpid()}"], 2)
        t = f"lr-{os.getpid()}"
        reader = LogReader(b.bootstrap)
        producer = AIOKafkaProducer(bootstrap_servers=b.bootstrap)
        await producer.start()
        try:
            assert await reader.log_end([t]) == {(t, 0): 0, (t, 1): 0}
            for n in (1, 2, 5):
                for i in range(n):
                    await producer.send_and_wait(t, f"p0-{n}-{i}".encode(), partition=0)
                ends = await reader.log_end([t])
                assert ends == await log_end_offsets(b.bootstrap, [t])
                last = ends[(t, 0)] - 1
                want = {(t, 0): last, (t, 1): 0}
                got = await reader.digests(want)
                assert got == await record_digests(b.bootstrap, want)
                assert got == {(t, 0): digest(f"p0-{n}-{n - 1}".encode()), (t, 1): None}
                assert await reader.digests({(t, 0): 0}) == {(t, 0): digest(b"p0-1-0")}
            assert await reader.log_start([t]) == {(t, 0): 0, (t, 1): 0}
            # Looks at other topics than the last look's (a metadata blind spot once).
            other = f"lr2-{os.getpid()}"
            await ensure_topics(b.bootstrap, [other], 1)
            await producer.send_and_wait(other, b"o-0", partition=0)
            assert await reader.digests({(other, 0): 0}) == {(other, 0): digest(b"o-0")}
            assert await reader.log_end([t, other]) == {(t, 0): 8, (t, 1): 0, (other, 0): 1}
            assert await reader.digests({(t, 0): 0}) == {(t, 0): digest(b"p0-1-0")}
            # Offsets inside one producer batch: the record asked for, not the batch's first.
            sent = [await producer.send(t, f"b-{i}".encode(), partition=1) for i in range(6)]
            await asyncio.gather(*sent)
            for i in (0, 3, 5):
                assert await reader.digests({(t, 1): i}) == {(t, 1): digest(f"b-{i}".encode())}
        finally:
            await producer.stop()

        b.stop()
        with pytest.raises(OffsetsError):
            await reader.log_end([t], timeout=2.0)
        b.start()
        with pytest.raises(OffsetsError, match="unknown topics"):
            await reader.log_end([t])  # the memory broker lost the topic
        await ensure_topics(b.bootstrap, [t], 2)
        producer = AIOKafkaProducer(bootstrap_servers=b.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(t, b"new-0", partition=0)
        finally:
            await producer.stop()
        assert await reader.log_end([t]) == {(t, 0): 1, (t, 1): 0}
        assert await reader.digests({(t, 0): 0, (t, 0 + 1): 0}) == {
            (t, 0): digest(b"new-0"), (t, 1): None
        }
        assert await reader.digests({(t, 0): 7}) == {(t, 0): None}
        await reader.close()
        # A look that must start its consumer while the broker is stopped fails
        # as OffsetsError (what callers handle), not as a bare TimeoutError.
        b.pause()
        try:
            with pytest.raises(OffsetsError):
                await reader.log_end([t], timeout=1.0)
        finally:
            b.resume()
        assert await reader.log_end([t]) == {(t, 0): 1, (t, 1): 0}
        await reader.close()
