"""The embedded broker speaks real Kafka: produce and consume, pause, restart, its log, its command.

Offset reading and topic creation on it are the intake's: tests/intake/test_offsets.py
and tests/intake/test_topics.py.
"""

from __future__ import annotations

import asyncio
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

from projector.intake.offsets import log_end_offsets
from projector.settings import Topics
from projector.tools.broker import BrokerPortInUseError, EmbeddedBroker
from tests.fixtures.kafka import partition_counts

TopicsFactory = Callable[..., Topics]


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
        counts = asyncio.run(partition_counts(bootstrap, list(Topics().all)))
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
