"""Guarantee 10: SIGTERM during a flush exits within 10 s and leaves DuckDB atomic.

``projector serve`` starts on a backlog with one flush per 12,000 events
(timer effectively off), so its first flush is a big transaction. The test
watches ``/metrics`` and sends SIGTERM the moment that flush is running
(12,000 records consumed, no flush committed yet). The process must exit
within 10 s. The database must then hold either that flush or none of it,
with rows matching the stored offsets exactly: it must equal the fold of
precisely the records below each partition's stored offset (known from the
producer's acknowledgements). A restart with ``--until-caught-up`` then
completes the stream and equals the fold of everything.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from projector.store.writer import Store
from projector.tools.simulate import generate
from tests.fixtures.kafka import topic_of
from tests.fixtures.processes import projector_env
from tests.reliability.helpers import Serve, dump, fold_dicts, read_db

FLUSH_EVENTS = 12_000


async def send_placed(bootstrap, topics, events):
    """Produce one record per event; where each landed: {(topic, partition, offset): event}."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic_of(topics, e["type"]), orjson.dumps(e), key=e["campaign_id"].encode()
            )
            for e in events
        ]
        placed = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {(md.topic, md.partition, md.offset): e for md, e in zip(placed, events, strict=True)}


def test_sigterm_during_a_flush_exits_in_time_and_is_atomic(
    bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory()
    db = tmp_path / "p.duckdb"
    env = projector_env(bootstrap, topics, flush_max_events=FLUSH_EVENTS, flush_interval_ms=600_000)
    events = list(generate(campaigns=4, recipients=2000, seed=81))
    assert len(events) > FLUSH_EVENTS * 1.2
    placed = asyncio.run(send_placed(bootstrap, topics, events))

    serve = Serve(procs, env, db, tmp_path)
    serve.wait_listening()

    def in_first_flush():
        m = serve.metrics()
        consumed = sum(v for (n, _), v in m.items() if n == "projector_records_consumed_total")
        flushes = m.get(("projector_flushes_total", frozenset()), 0)
        assert flushes == 0, "the first flush committed before the test saw it start"
        return consumed >= FLUSH_EVENTS

    serve.wait("the first flush to start", in_first_flush, 90)
    took = serve.stop()
    assert took < 10, f"exit took {took:.1f}s"
    assert serve.proc.returncode == 0, serve.proc.returncode

    with Store(db) as store:
        stored = store.offsets()
    applied = [e for (t, p, o), e in placed.items() if o < stored.get((t, p), 0)]
    assert read_db(db) == dump(fold_dicts(applied))
    outcome = "committed" if applied else "abandoned"

    t0 = time.monotonic()
    # Normal flush bounds for the rest (the 600 s timer would hold the tail back).
    final_env = {**env, "PROJECTOR_FLUSH_MAX_EVENTS": "5000", "PROJECTOR_FLUSH_INTERVAL_MS": "100"}
    procs.run(
        "worker", "--db", str(db), "--until-caught-up", env=final_env, timeout=180, log_name="final"
    )
    assert read_db(db) == dump(fold_dicts(events))
    print(
        f"\n{len(events)} events; SIGTERM inside a {FLUSH_EVENTS}-event flush: "
        f"exited in {took:.1f}s, "
        f"flush {outcome} ({len(applied)} events stored, rows = fold of exactly those); "
        f"restart caught up and equal to the fold in {time.monotonic() - t0:.1f}s"
    )


pytestmark = pytest.mark.timeout(300)
