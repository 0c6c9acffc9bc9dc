"""``projector produce`` and the ``EventEmitter`` SDK against the real embedded broker."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from projector.settings import Settings, Topics
from projector.tools.emit import EventEmitter, InvalidEventError
from projector.tools.produce import produce_file
from projector.tools.simulate import generate
from schemas import EVENT_ADAPTER, TOPIC_KIND_OF_TYPE
from service.commands.produce import run as run_cli

PARTITIONS = 4

# (topic, key, event as canonical JSON)
Landed = tuple[str, bytes, bytes]


def _canonical(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def _expected(events: list[dict[str, Any]], topics: Topics) -> Counter[Landed]:
    return Counter(
        (
            getattr(topics, TOPIC_KIND_OF_TYPE[e["type"]]),
            e["campaign_id"].encode(),
            _canonical(e),
        )
        for e in events
    )


SENTINEL_KEY = b"__end_of_test__"


async def _consume(
    bootstrap: str, topics: Topics, timeout: float = 30.0
) -> tuple[Counter[Landed], list[tuple[str, int, bytes, Any]]]:
    """Every record on the source topics, exactly: none missed, none still to come.

    A sentinel record is produced to every partition after the code under test
    returned; reading each partition up to its sentinel sees everything sent
    before it. (Tansu 0.6.0 answers ListOffsets with wrong end offsets, so
    ``end_offsets`` cannot be used for this.)
    """
    parts = [TopicPartition(t, p) for t in topics.sources for p in range(PARTITIONS)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for tp in parts:
            await producer.send_and_wait(tp.topic, b"{}", key=SENTINEL_KEY, partition=tp.partition)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    landed: Counter[Landed] = Counter()
    records: list[tuple[str, int, bytes, Any]] = []
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning()
        open_parts = set(parts)
        deadline = time.monotonic() + timeout
        while open_parts:
            assert time.monotonic() < deadline, f"no sentinel on {sorted(open_parts)}"
            batches = await consumer.getmany(*open_parts, timeout_ms=200)
            for tp, messages in batches.items():
                for m in messages:
                    if m.key == SENTINEL_KEY:
                        open_parts.discard(tp)
                        break
                    assert m.key is not None and m.value is not None
                    value = orjson.loads(m.value)
                    records.append((tp.topic, tp.partition, m.key, value))
                    for event in value if isinstance(value, list) else [value]:
                        landed[(tp.topic, m.key, _canonical(event))] += 1
    finally:
        await consumer.stop()
    return landed, records


def _write(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"\n".join(x.encode() if isinstance(x, str) else x for x in lines) + b"\n")
    return path


@pytest.fixture
def events() -> list[dict[str, Any]]:
    # Seed 1 puts the three campaigns on three different partitions.
    return list(generate(3, 40, seed=1))


@pytest.mark.parametrize("array_size", [1, 50])
async def test_valid_file_lands_exactly(
    tmp_path: Path,
    bootstrap: str,
    topics_factory: Callable[..., Topics],
    events: list[dict[str, Any]],
    array_size: int,
) -> None:
    topics = topics_factory(partitions=PARTITIONS)
    lines: list[str | bytes] = [_canonical(e) for e in events]
    lines.insert(5, "")  # blank lines are ignored
    lines.insert(9, "   ")
    path = _write(tmp_path / "events.jsonl", lines)

    report = await produce_file(path, bootstrap, topics, array_size=array_size)

    assert report.invalid == []
    assert report.produced == report.events == len(events)
    landed, records = await _consume(bootstrap, topics)
    assert landed == _expected(events, topics)
    assert len(records) == report.records
    # All of a campaign's records meet in one partition number, on every topic.
    partitions_of_key: dict[bytes, set[int]] = {}
    for _topic, partition, key, value in records:
        partitions_of_key.setdefault(key, set()).add(partition)
        items = value if isinstance(value, list) else [value]
        assert all(e["campaign_id"].encode() == key for e in items)
        if array_size == 1:
            assert isinstance(value, dict)
        else:
            assert isinstance(value, list) and 1 <= len(value) <= array_size
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len(set().union(*partitions_of_key.values())) == 3
    if array_size > 1:
        assert report.records < len(events) / 5


def _bad_file(tmp_path: Path, events: list[dict[str, Any]]) -> tuple[Path, list[dict[str, Any]]]:
    """Valid lines with three bad ones at lines 3, 6 and 8; returns the good events."""
    run_event = next(e for e in events if e["type"] == "run.scheduled")
    no_run_id = {k: v for k, v in run_event.items() if k != "run_id"}
    unknown = {**events[4], "type": "run.exploded"}
    lines: list[str | bytes] = [
        _canonical(events[0]),
        _canonical(events[1]),
        _canonical(no_run_id),  # line 3
        _canonical(events[3]),
        "",
        '{"event_id": "x", "type": ',  # line 6
        _canonical(events[5]),
        _canonical(unknown),  # line 8
        _canonical(events[6]),
    ]
    good = [events[0], events[1], events[3], events[5], events[6]]
    return _write(tmp_path / "bad.jsonl", lines), good


async def test_bad_lines_send_nothing(
    tmp_path: Path,
    bootstrap: str,
    topics_factory: Callable[..., Topics],
    events: list[dict[str, Any]],
) -> None:
    topics = topics_factory(partitions=PARTITIONS)
    path, _good = _bad_file(tmp_path, events)

    report = await produce_file(path, bootstrap, topics)

    assert [e.line for e in report.invalid] == [3, 6, 8]
    assert str(report.invalid[0]) == "line 3: missing_field: run_id"
    assert report.invalid[1].reason.startswith("invalid_json")
    assert report.invalid[2].reason.startswith("unknown_type")
    assert report.produced == 0
    assert (await _consume(bootstrap, topics))[1] == []


def test_cli_reports_bad_lines_and_exits_1(
    tmp_path: Path,
    bootstrap: str,
    topics_factory: Callable[..., Topics],
    events: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    topics = topics_factory(partitions=PARTITIONS)
    path, _good = _bad_file(tmp_path, events)
    settings = Settings(bootstrap=bootstrap, topics=topics, partitions=PARTITIONS)
    args = argparse.Namespace(file=str(path), skip_invalid=False, array_size=1)

    assert run_cli(args, settings) == 1

    err = capsys.readouterr().err
    assert "line 3: missing_field: run_id" in err
    assert "line 6: invalid_json" in err
    assert "line 8: unknown_type" in err
    assert "nothing sent" in err
    assert asyncio.run(_consume(bootstrap, topics))[1] == []


def test_cli_skip_invalid_sends_the_good_lines(
    tmp_path: Path,
    bootstrap: str,
    topics_factory: Callable[..., Topics],
    events: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    topics = topics_factory(partitions=PARTITIONS)
    path, good = _bad_file(tmp_path, events)
    settings = Settings(bootstrap=bootstrap, topics=topics, partitions=PARTITIONS)
    args = argparse.Namespace(file=str(path), skip_invalid=True, array_size=1)

    assert run_cli(args, settings) == 0

    out = capsys.readouterr()
    assert f"produced 5 events in 5 records to {bootstrap}; skipped 3 invalid lines" in out.out
    assert "line 3: missing_field: run_id" in out.err
    landed, records = asyncio.run(_consume(bootstrap, topics))
    assert landed == _expected(good, topics)
    assert len(records) == len(good)


async def test_emitter_refuses_invalid_events_and_sends_models(
    bootstrap: str,
    topics_factory: Callable[..., Topics],
    events: list[dict[str, Any]],
) -> None:
    topics = topics_factory(partitions=PARTITIONS)
    submit = next(e for e in events if e["type"] == "message.submitted")
    async with EventEmitter(bootstrap, topics, array_size=10) as emitter:
        with pytest.raises(InvalidEventError) as info:
            await emitter.emit({**submit, "attempt": 0})
        assert info.value.reason.startswith("invalid_field: attempt")
        with pytest.raises(InvalidEventError, match="missing_field: run_id"):
            await emitter.emit({k: v for k, v in submit.items() if k != "run_id"})
        await emitter.emit(EVENT_ADAPTER.validate_python(submit))
    assert emitter.events_sent == emitter.records_sent == 1

    _landed, records = await _consume(bootstrap, topics)
    [(topic, _partition, key, value)] = records
    assert (topic, key) == (topics.submits, submit["campaign_id"].encode())
    [event] = value
    assert EVENT_ADAPTER.validate_python(event) == EVENT_ADAPTER.validate_python(submit)


async def test_partly_filled_arrays_leave_after_the_linger(
    bootstrap: str,
    topics_factory: Callable[..., Topics],
    events: list[dict[str, Any]],
) -> None:
    topics = topics_factory(partitions=PARTITIONS)
    first = events[:3]
    consumer = AIOKafkaConsumer(
        *topics.sources,
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with EventEmitter(bootstrap, topics, array_size=1_000, array_linger_ms=50) as em:
            await em.emit_many(first)
            # No flush: only the linger can send these arrays while we wait here.
            got: list[dict[str, Any]] = []
            deadline = time.monotonic() + 15
            while len(got) < len(first) and time.monotonic() < deadline:
                for messages in (await consumer.getmany(timeout_ms=100)).values():
                    for m in messages:
                        assert m.value is not None
                        got.extend(orjson.loads(m.value))
            assert sorted(map(_canonical, got)) == sorted(map(_canonical, first))
    finally:
        await consumer.stop()
