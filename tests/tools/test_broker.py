"""The embedded broker speaks real Kafka; topic creation and offset reading are right on it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
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
from projector.tools.broker import BrokerPortInUseError, EmbeddedBroker

TopicsFactory = Callable[..., Topics]


async def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {m["topic"]: len(m["partitions"]) for m in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def _consume_exactly(
    bootstrap: str, topic: str, n: int, timeout: float = 10.0
) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < n:
            assert time.monotonic() < deadline, f"only {len(got)} of {n} records consumed"
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                got.extend((r.partition, r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return got


async def test_produce_and_consume_keys_values_partitions(
    bootstrap: str, topics_factory: TopicsFactory
) -> None:
    topics = topics_factory(partitions=4)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    sent: dict[bytes, int] = {}
    try:
        for i in range(40):
            key = f"camp-{i % 10}".encode()
            meta = await producer.send_and_wait(topics.runs, value=f"v{i}".encode(), key=key)
            assert sent.setdefault(key, meta.partition) == meta.partition  # key -> one partition
    finally:
        await producer.stop()
    assert len(set(sent.values())) > 1, "10 keys should spread over several of 4 partitions"

    got = await _consume_exactly(bootstrap, topics.runs, 40)
    assert sorted(v for _, _, v in got if v) == sorted(f"v{i}".encode() for i in range(40))
    for partition, key, _ in got:
        assert key is not None and sent[key] == partition


async def test_ensure_topics_is_idempotent(
    bootstrap: str, topics_factory: TopicsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    topics = topics_factory(partitions=3)  # created once by the factory
    await ensure_topics(bootstrap, topics.all, 3)
    await ensure_topics(bootstrap, topics.all, 3)
    counts = await _partition_counts(bootstrap, list(topics.all))
    assert counts == {t: 3 for t in topics.all}

    with caplog.at_level(logging.WARNING, logger="projector.intake.topics"):
        await ensure_topics(bootstrap, [topics.runs], 5)
    assert "exists with 3 partitions, not 5" in caplog.text
    assert (await _partition_counts(bootstrap, [topics.runs]))[topics.runs] == 3


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


async def test_pause_resume(broker: EmbeddedBroker, topics_factory: TopicsFactory) -> None:
    topics = topics_factory(partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    await producer.start()
    try:
        await producer.send_and_wait(topics.runs, b"before")
        broker.pause()
        try:
            pending = asyncio.ensure_future(producer.send_and_wait(topics.runs, b"during"))
            done, _ = await asyncio.wait({pending}, timeout=0.5)
            assert not done, "a produce completed while the broker was stopped"
        finally:
            broker.resume()
        meta = await asyncio.wait_for(pending, timeout=20)
        assert meta.offset == 1
    finally:
        await producer.stop()
    assert await log_end_offsets(broker.bootstrap, [topics.runs]) == {(topics.runs, 0): 2}


def test_restart_same_port_empty_storage_and_port_in_use() -> None:
    with EmbeddedBroker() as b:
        port, pid = b.port, b.pid
        assert b.start_seconds is not None and b.start_seconds < 5
        with pytest.raises(BrokerPortInUseError):
            EmbeddedBroker(port=port).start()
        b.restart()
        assert b.port == port and b.pid != pid and b.running
        topics = asyncio.run(_list_topics(b.bootstrap))
        assert topics == []
    assert not b.running


def test_its_own_log_is_removed_after_a_clean_exit_and_kept_after_a_failure() -> None:
    with EmbeddedBroker() as b:
        clean = b.log_path
        assert clean is not None and clean.exists()
    assert not clean.exists()

    with pytest.raises(RuntimeError), EmbeddedBroker() as b:
        failed = b.log_path
        raise RuntimeError("the caller failed")
    assert failed is not None and failed.exists()  # its story, for the error report
    failed.unlink()


def test_a_log_path_the_caller_chose_is_never_removed(tmp_path) -> None:
    path = tmp_path / "tansu.log"
    with EmbeddedBroker(log_path=path):
        pass
    assert path.exists()


async def _list_topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


def _read_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """Read stdout lines until one starts with ``prefix`` (in a thread, bounded)."""
    assert proc.stdout is not None
    result: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                result.append(line.strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    assert result, f"no {prefix!r} line within {timeout}s"
    return result[0]


def test_cli_broker_prints_bootstrap_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "broker", "--port", "0", "--partitions", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(proc, "bootstrap: ", timeout=20)
        bootstrap = line.removeprefix("bootstrap: ")
        host, _, port = bootstrap.partition(":")
        assert host == "127.0.0.1" and int(port) > 0
        counts = asyncio.run(_partition_counts(bootstrap, list(Topics().all)))
        assert counts == {t: 2 for t in Topics().all}
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - began < 5
        with socket.socket() as s:  # the broker went with it
            assert s.connect_ex((host, int(port))) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_broker_port_taken_exits_1() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "service", "broker", "--port", str(port), "--no-topics"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 1
    assert "already in use" in out.stderr


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
