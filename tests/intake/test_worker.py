"""The projector worker against the real broker: crashes and poison records.

Each test compares the DuckDB file, row for row, with the pure fold of the
events that were produced (``State``), so loss or double counting shows up
as a difference in some row.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from projector.store.writer import Store
from projector.tools.simulate import generate
from tests.fixtures.kafka import consume_all, produce, topic_of
from tests.fixtures.processes import projector_env, tail
from tests.fixtures.projections import dump, fold_dicts, read_db
from tests.fixtures.waiting import wait_until

JOINED = re.compile(r"consumer group joined: ([1-9]\d*) partitions assigned")


def _joined(worker: subprocess.Popen[bytes]) -> bool:
    """The worker's log says it got its partitions (the group join takes seconds)."""
    return bool(JOINED.search(Path(worker.log_path).read_text(errors="replace")))  # type: ignore[attr-defined]


def _died(worker: subprocess.Popen[bytes]) -> Callable[[], str | None]:
    def died() -> str | None:
        code = worker.poll()
        return None if code is None else f"projector worker exited {code}:\n{tail(worker)}"

    return died


def test_sigkill_at_random_moments_loses_and_double_counts_nothing(
    bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory()
    db = tmp_path / "p.duckdb"
    env = projector_env(bootstrap, topics, flush_max_events=500, flush_interval_ms=50)
    events = list(generate(campaigns=4, recipients=250, seed=3))
    assert len(events) > 2000
    # A steady stream from another process while the worker keeps dying
    # (4,421 events at 130/s: every kill lands while events are flowing).
    sim = procs.start(
        "simulate",
        "--campaigns",
        "4",
        "--recipients",
        "250",
        "--seed",
        "3",
        "--rate",
        "130",
        env=env,
        log_name="simulate",
    )  # ~34 s: spans every kill
    rng = random.Random(11)
    kills = 0
    while kills < 6:
        worker = procs.start("worker", "--db", str(db), env=env, log_name="worker")
        wait_until("the worker to join the group", lambda w=worker: _joined(w), 60, _died(worker))
        # Then kill at a random moment of the processing.
        time.sleep(rng.uniform(0.0, 3.0))
        assert worker.poll() is None, tail(worker)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
    assert sim.wait(timeout=120) == 0, tail(sim)
    procs.run(
        "worker", "--db", str(db), "--until-caught-up", env=env, timeout=120, log_name="final"
    )
    assert read_db(db) == dump(fold_dicts(events))


def test_poison_records_go_to_the_deadletter_topic_and_the_stream_moves_on(
    bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory()
    db = tmp_path / "p.duckdb"
    env = projector_env(bootstrap, topics)
    valid = list(generate(campaigns=2, recipients=60, seed=8))
    rng = random.Random(5)
    poison = [
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b"42",
        b'{"type": "run.exploded", "event_id": "x"}',
        orjson.dumps({**valid[0], "occurred_at": "2026-05-12T10:00:00"}),  # naive timestamp
        orjson.dumps({**valid[0], "event_id": 7}),
        b"[" * 5000 + b"]" * 5000,
        b'{"event_id": "' + b"x" * 2_000_000 + b'"}',
    ]
    n_poison = max(len(poison), len(valid) // 9)
    records = [(None, orjson.dumps(e), e) for e in valid] + [
        (b"poison", poison[i % len(poison)], None) for i in range(n_poison)
    ]
    rng.shuffle(records)

    async def send_all():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            futures = []
            for key, value, event in records:
                topic = topics.submits if event is None else topic_of(topics, event["type"])
                k = key if event is None else event["campaign_id"].encode()
                futures.append(await producer.send(topic, value, key=k))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send_all())
    procs.run(
        "worker", "--db", str(db), "--until-caught-up", env=env, timeout=120, log_name="worker"
    )
    assert read_db(db) == dump(fold_dicts(valid))
    with Store(db) as store:
        counted = store.con.execute("SELECT count(*) FROM deadletters").fetchone()[0]
    assert counted == n_poison
    letters = asyncio.run(consume_all(bootstrap, topics.deadletter, n_poison))
    assert len(letters) == n_poison
    for letter in letters:
        assert letter["source_topic"] == topics.submits
        assert letter["reason"].split(":")[0] in {
            "invalid_json",
            "not_an_object",
            "empty_array",
            "unknown_type",
            "missing_field",
            "invalid_field",
            "too_large",
            "too_deep",
        }, letter["reason"]
        assert letter["raw_size"] > 0


pytestmark = pytest.mark.timeout(400)


def test_a_fresh_database_rebuilds_all_history_even_when_the_group_committed_the_end(
    bootstrap, topics_factory, procs, tmp_path
):
    """Kafka-committed offsets are a convenience: DuckDB's (none here) decide."""
    topics = topics_factory()
    env = projector_env(bootstrap, topics)  # one consumer group for both runs
    events = list(generate(campaigns=2, recipients=80, seed=4))
    asyncio.run(produce(bootstrap, topics, events, array_size=5))
    expected = dump(fold_dicts(events))
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    procs.run(
        "worker", "--db", str(first), "--until-caught-up", env=env, timeout=120, log_name="w1"
    )
    assert read_db(first) == expected
    # Same group, which has now committed the log end; a new, empty database.
    procs.run(
        "worker", "--db", str(second), "--until-caught-up", env=env, timeout=120, log_name="w2"
    )
    assert read_db(second) == expected


def test_the_consumer_faust_builds_gets_our_fetch_wait(tmp_path):
    """faust hard-codes fetch_max_wait_ms=1500; Tansu then delays records by up to 1.5 s."""
    from projector.intake.worker import Projector
    from projector.settings import Settings

    settings = Settings(db=tmp_path / "p.duckdb", bootstrap="127.0.0.1:1", fetch_max_wait_ms=77)

    async def build() -> int:
        with Store(settings.db) as store:
            app = Projector(settings, store).app
            consumer = app.consumer._thread._create_worker_consumer(app.transport)
            try:
                return consumer._fetch_max_wait_ms
            finally:
                await consumer.stop()  # never started; closes its client

    assert asyncio.run(build()) == 77
