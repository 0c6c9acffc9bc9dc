"""Guarantee 6: redelivery storms change nothing after the first delivery.

Two kinds of redelivery, both against the real broker:

* the *same stream produced three times*, interleaved (a producer retrying
  everything, a replayed source): three copies at different offsets, folded
  by ``projector worker``; the projections equal the fold of one copy (the
  fold is idempotent per event), and each copy's poison records are three
  distinct records, so the dead letters are exactly three times one copy's;
* the *same records delivered three times and more* by a consumer that keeps
  rewinding partitions at random and sometimes jumps ahead (what faust does
  after rebalances and re-seeks): the pipeline applies every offset once
  (dedupe on DuckDB's stored offsets, seek back on gaps), so the database is
  the fold of the stream and each poison record is dead-lettered once.
"""

from __future__ import annotations

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.intake.offsets import log_end_offsets
from projector.intake.pipeline import Pipeline
from projector.store.writer import Store
from projector.tools.simulate import generate
from tests.fixtures.kafka import topic_of
from tests.fixtures.processes import projector_env
from tests.reliability.helpers import dump, fold_dicts, read_db

POISON = [b"{oops", b"[]", b'{"type": "run.exploded"}', b"7"]


def copy_records(events, rng, poison_every=40):
    """One copy of the stream as (topic kind, key, value) records, poison included."""
    out = []
    for i, e in enumerate(events):
        out.append((e["type"], e["campaign_id"].encode(), orjson.dumps(e)))
        if i % poison_every == 0:
            out.append((None, b"poison", POISON[(i // poison_every) % len(POISON)]))
    return out


async def send(bootstrap, topics, records):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for kind, key, value in records:
            topic = topics.submits if kind is None else topic_of(topics, kind)
            futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def interleave(copies, rng):
    """Merge copies at random, each keeping its own order."""
    its = [list(c) for c in copies]
    pos = [0] * len(its)
    out = []
    while any(p < len(c) for p, c in zip(pos, its, strict=True)):
        k = rng.choice([i for i, c in enumerate(its) if pos[i] < len(c)])
        out.append(its[k][pos[k]])
        pos[k] += 1
    return out


def test_stream_produced_three_times_interleaved_equals_one_copy(
    bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory()
    db = tmp_path / "p.duckdb"
    env = projector_env(bootstrap, topics, flush_max_events=300, flush_interval_ms=20)
    rng = random.Random(71)
    events = list(generate(campaigns=3, recipients=200, seed=71))
    one = copy_records(events, rng)
    poison_per_copy = sum(1 for k, _, _ in one if k is None)
    asyncio.run(send(bootstrap, topics, interleave([one, one, one], rng)))
    procs.run(
        "worker", "--db", str(db), "--until-caught-up", env=env, timeout=120, log_name="worker"
    )
    assert read_db(db) == dump(fold_dicts(events))
    with Store(db) as store:
        letters = store.con.execute("SELECT count(*) FROM deadletters").fetchone()[0]
    assert letters == 3 * poison_per_copy
    print(
        f"\n3 x {len(one)} records interleaved ({len(events)} events, "
        f"{poison_per_copy} poison per copy): "
        f"projections = fold of one copy; {letters} dead letters"
    )


async def _storm(bootstrap, topics, db, rng):
    store = Store(db).open()
    executor = ThreadPoolExecutor(max_workers=1)
    status, metrics = PipelineStatus(), Metrics()
    pipeline = Pipeline(
        store,
        executor=executor,
        deadletters=None,
        status=status,
        metrics=metrics,
        flush_max_events=200,
        flush_interval_ms=10,
    )
    end = await log_end_offsets(bootstrap, topics.sources)
    pipeline.prepare({tp: 0 for tp in end})  # log starts, as the worker passes them
    tps = [TopicPartition(t, p) for (t, p) in end]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=50,
    )
    await consumer.start()
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)

    async def seeker(topic, partition, offset):
        consumer.seek(TopicPartition(topic, partition), offset)

    pipeline.seeker = seeker
    delivered = rewinds = jumps = 0
    total = sum(end.values())
    deadline = time.monotonic() + 60
    try:
        while delivered < 3 * total or any(
            pipeline.applied.get(k, 0) < v for k, v in end.items() if v
        ):
            assert time.monotonic() < deadline, (
                f"stalled: applied {pipeline.applied} of {end}, resyncing {pipeline.resyncing}"
            )
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    await pipeline.add(r.topic, r.partition, r.offset, r.key, r.value)
                    delivered += 1
            if rng.random() < 0.3 and delivered < 3 * total:
                tp = rng.choice([tp for tp in tps if end[(tp.topic, tp.partition)]])
                top = end[(tp.topic, tp.partition)]
                if rng.random() < 0.8:
                    consumer.seek(tp, rng.randrange(0, top))  # rewind: redelivery
                    rewinds += 1
                else:
                    consumer.seek(tp, rng.randrange(0, top))  # anywhere, maybe past the gap
                    jumps += 1
            if pipeline.resyncing and rng.random() < 0.3 and delivered < 3 * total:
                # Moved again while the pipeline's own seek back is pending
                # (a rebalance re-seeking to committed offsets does this).
                topic, partition = next(iter(pipeline.resyncing))
                top = end[(topic, partition)]
                need = pipeline.expected[(topic, partition)]
                if need + 1 < top:
                    consumer.seek(TopicPartition(topic, partition), rng.randrange(need + 1, top))
                    jumps += 1
            for (topic, partition), offset in pipeline.stalled(end, 1.0, {}).items():
                consumer.seek(TopicPartition(topic, partition), offset)  # the worker's watchdog
            await pipeline.flush()
        await pipeline.flush()
    finally:
        await consumer.stop()
        await pipeline.close()
        store.close()
        executor.shutdown()
    return delivered, total, rewinds, jumps, metrics


def test_records_redelivered_by_a_rewinding_consumer_apply_once(
    bootstrap, topics_factory, tmp_path
):
    topics = topics_factory()
    db = tmp_path / "p.duckdb"
    rng = random.Random(72)
    events = list(generate(campaigns=3, recipients=150, seed=72))
    records = copy_records(events, rng, poison_every=25)
    poison = sum(1 for k, _, _ in records if k is None)
    asyncio.run(send(bootstrap, topics, records))
    delivered, total, rewinds, jumps, metrics = asyncio.run(_storm(bootstrap, topics, db, rng))
    assert delivered >= 3 * total
    assert read_db(db) == dump(fold_dicts(events))
    with Store(db) as store:
        letters = store.con.execute("SELECT count(*) FROM deadletters").fetchone()[0]
    assert letters == poison
    applied = metrics.events_applied._value.get()
    assert applied == len(events), applied
    print(
        f"\n{total} records delivered {delivered} times ({delivered / total:.1f}x) with {rewinds} "
        f"random rewinds and {jumps} random seeks: {applied:.0f} events applied once, "
        f"{letters} dead letters"
    )


pytestmark = pytest.mark.timeout(200)
