"""(d) Event-to-DuckDB freshness at a steady 2,000 events/s into the projector.

The projector runs in a child exactly as ``projector worker`` builds it
(``bench._projector_child --freshness``). A paced aiokafka producer here
(single-event records of the simulator's mix, keyed by campaign, acks=all,
linger 5 ms like ``EventEmitter``) sends 20 events every 10 ms. For every
record the child commits, it keeps commit time - the record's Kafka
timestamp (stamped by the producer at send): the exact value the product's
``projector_event_freshness_seconds`` histogram observes, one by one.
Nothing polls the projector while it runs, so the measurement adds no load.

The paced stream starts once the projector has committed a first record
(its consumer group has joined), so it measures the steady state, not the
drain of a join backlog; records of the first 3 s after that are excluded.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import orjson

from bench import common
from schemas import TOPIC_KIND_OF_TYPE

NAME = "freshness"
RATE = 2000
TICK = 0.010
WARMUP = 3.0  # seconds after the first commit that still count as warm-up
JOIN_TIMEOUT = 60.0  # for the projector's first commit (group join)


async def _produce(bootstrap: str, topics: Any, seconds: float, joined: Path) -> int:
    from aiokafka import AIOKafkaProducer

    topic_of = {t: getattr(topics, k) for t, k in TOPIC_KIND_OF_TYPE.items()}
    # Enough for the run at RATE with the join's wait on top; more would only add waves.
    events = common.sim_events(int(RATE * (seconds + JOIN_TIMEOUT)) + 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        # One record first, then wait for the projector to commit it: the
        # steady rate starts once the group has joined, not into a backlog.
        e = next(events)
        await producer.send_and_wait(
            topic_of[e["type"]], orjson.dumps(e), key=e["campaign_id"].encode())
        sent += 1
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not joined.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the projector committed nothing within {JOIN_TIMEOUT:.0f}s")
            await asyncio.sleep(0.05)
        stop_at = time.monotonic() + seconds
        next_tick = time.monotonic()
        futures = []
        while time.monotonic() < stop_at:
            for _ in range(int(RATE * TICK)):
                e = next(events)
                futures.append(await producer.send(
                    topic_of[e["type"]], orjson.dumps(e), key=e["campaign_id"].encode()))
                sent += 1
            next_tick += TICK
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


def run(duration: float = 30.0, profile: bool = False, partitions: int = common.PARTITIONS,
        shards: bool = False) -> dict[str, Any]:
    """``shards``: a store per partition (``--data-dir``) instead of one file."""
    work = common.workdir(NAME)
    out = work / "result.json"
    target = work / "target.json"
    store = {"data_dir": work / "shards"} if shards else {"db": work / "bench.duckdb"}
    with common.broker() as b:
        topics = common.fresh_topics()
        common.create_topics(b.bootstrap, topics, partitions)
        p = common.start_child(
            ["-m", "bench._projector_child", "--freshness", "--target", str(target),
             "--out", str(out)],
            env=common.child_env(b.bootstrap, topics, **store),
            workdir=work, log_name="projector",
            profile=work / "profile.txt" if profile else None,
        )
        try:
            sent = asyncio.run(
                _produce(b.bootstrap, topics, duration + WARMUP, work / "first_flush"))
            ends = common.log_ends(b.bootstrap, topics.sources)
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps([[t, q, o] for (t, q), o in ends.items()]))
            tmp.rename(target)  # the child must never read half a file
            code = common.wait_child(p, timeout=120)
        finally:
            common.stop_child(p)
        if code != 0 or not out.exists():
            raise RuntimeError(f"projector child exited {code}:\n{common.tail(p)}")
    got = json.loads(out.read_text())
    start = got["first_flush_wall"] + WARMUP
    fresh = [s for t, s in got["freshness"] if t - s >= start]
    stats = common.summary_ms(fresh)
    # Where the time goes: how late records reach the pipeline (broker, fetch
    # wait, faust), and how long each flush takes in the writer thread. Each
    # is kept as (end, seconds), so end - seconds is when it began, filtered
    # like the freshness figures.
    arrivals = common.summary_ms([s for t, s in got.get("arrivals") or [] if t - s >= start])
    flushes = common.summary_ms([s for t, s in got.get("flush_walls") or [] if t - s >= start])
    p99 = stats.get("p99_ms", float("inf"))
    figures = {
        "method": "projector worker in a child; paced producer 2,000 events/s (20 single-event "
                  "records per 10 ms, acks=all, linger 5 ms); freshness = DuckDB commit time - "
                  "the record's Kafka timestamp, per record, recorded in the projector (what "
                  "projector_event_freshness_seconds observes); records sent before the first "
                  f"commit + {WARMUP:.0f} s excluded; nothing polls the projector",
        "rate_events_per_s": RATE,
        "records_sent": sent,
        "records_measured": len(fresh),
        "records_committed": len(got["freshness"]),
        "freshness": stats,
        "arrival_at_pipeline": arrivals,
        "flush_wall": flushes,
        "target": "p99 < 500 ms",
        "target_met": p99 < 500 and len(got["freshness"]) == sent,
        "settings": got["settings"],
        # What the node cost: CPU seconds of the projector process from its first
        # record to the last (warm-up included) over that wall time, and its peak RSS.
        "projector": {
            "events": got["events"],
            "elapsed_s": got["elapsed_s"],
            "cpu_s": got["cpu_s"],
            "cores_busy": (got["cpu_s"] / got["elapsed_s"])
            if got["cpu_s"] and got["elapsed_s"] else None,
            "startup_s": got["startup_s"],
            "max_rss_mb": got["max_rss_mb"],
        },
        "profiled": profile,  # py-spy attached: slower, not comparable
        "workdir": str(work),
    }
    if profile:
        figures["profile"] = str(work / "profile.txt")
    common.row(NAME, f"p50 @ {RATE:,} ev/s ({stats['count']:,} rec)", f"{stats['p50_ms']:,.0f} ms",
               "")
    common.row(NAME, "p99", f"{p99:,.0f} ms", "< 500 ms", figures["target_met"])
    if arrivals.get("count") and flushes.get("count"):
        common.row(NAME, "of which: arrival p50 / p99",
                   f"{arrivals['p50_ms']:,.0f} / {arrivals['p99_ms']:,.0f} ms", "")
        common.row(NAME, f"flush wall p50 / p99 ({flushes['count']:,})",
                   f"{flushes['p50_ms']:,.0f} / {flushes['p99_ms']:,.0f} ms", "")
    common.save_result(NAME, figures)
    return figures
