"""(d) Event-to-DuckDB freshness at a steady 2,000 events/s into ``projector serve``.

A paced aiokafka producer (single-event records of the simulator's mix,
keyed by campaign, acks=all, linger 5 ms like ``EventEmitter``) sends 20
events every 10 ms and keeps, per record, its send time and, once acked, its
(topic, partition, offset). A poller in the same process reads
``GET /v1/campaign/{id}/status`` every ~10 ms and records the
``X-Projection-Watermark`` header (next offset applied per partition) with the
time the response arrived. A record's freshness = the first response time
whose watermark covers its offset - its send time. That is an upper bound:
the true moment lies after the previous poll (~10 ms earlier plus one
request's latency).

Records sent during the warm-up (group join and the backlog it builds, until
the watermark first moves plus 3 s) are excluded.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Any

import orjson

from bench import common
from bench._serve import serve
from schemas import TOPIC_KIND_OF_TYPE

NAME = "freshness"
RATE = 2000
TICK = 0.010
TAIL_WAIT = 30.0  # after the producer stops, wait at most this long for the rest


async def _measure(bootstrap: str, topics: Any, url: str, keys: dict[str, str],
                   duration: float) -> dict[str, Any]:
    import httpx
    from aiokafka import AIOKafkaProducer

    topic_of = {t: getattr(topics, k) for t, k in TOPIC_KIND_OF_TYPE.items()}
    events = common.sim_events(10_000_000)
    first = next(events)
    cid, ws = first["campaign_id"], first["workspace_id"]
    sent: list[tuple[float, Any]] = []  # (send time, future)
    polls: list[tuple[float, dict[tuple[str, int], int]]] = []
    state: dict[str, float | None] = {"measure_from": None, "stop_at": None}
    final: dict[tuple[str, int], int] = {}  # last offset produced, once the producer is done
    done = asyncio.Event()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()

    async def produce() -> None:
        nonlocal first
        pending = [first]
        next_tick = time.monotonic()
        while True:
            stop_at = state["stop_at"]
            if stop_at is not None and time.monotonic() >= stop_at:
                break
            batch = pending + [next(events) for _ in range(int(RATE * TICK) - len(pending))]
            pending = []
            for e in batch:
                t = time.monotonic()
                fut = await producer.send(topic_of[e["type"]], orjson.dumps(e),
                                          key=e["campaign_id"].encode())
                sent.append((t, fut))
            next_tick += TICK
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
        for _, fut in sent:
            md = fut.result()
            tp = (md.topic, md.partition)
            final[tp] = max(final.get(tp, -1), md.offset)
        done.set()

    async def poll(client: httpx.AsyncClient) -> None:
        path = f"/v1/campaign/{cid}/status"
        while True:
            t0 = time.monotonic()
            try:
                r = await client.get(path, headers={"X-API-Key": keys[ws]})
                now = time.monotonic()
                wm = r.headers.get("X-Projection-Watermark")
                if wm is not None:
                    offsets = common.parse_watermark(wm)
                    if offsets:
                        polls.append((now, offsets))
                        if state["measure_from"] is None:
                            state["measure_from"] = now + 3.0
                            state["stop_at"] = now + 3.0 + duration
            except httpx.HTTPError:
                pass
            stop_at = state["stop_at"]
            if done.is_set() and polls and all(
                polls[-1][1].get(tp, 0) > off for tp, off in final.items()
            ):
                return  # everything produced is applied
            if stop_at is not None and time.monotonic() > stop_at + TAIL_WAIT:
                return
            await asyncio.sleep(max(0.0, TICK - (time.monotonic() - t0)))

    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        prod = asyncio.create_task(produce())
        poller = asyncio.create_task(poll(client))
        deadline = time.monotonic() + 60
        while state["stop_at"] is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if state["stop_at"] is None:
            prod.cancel()
            poller.cancel()
            raise RuntimeError("the projection watermark never moved within 60 s")
        await prod
        await poller
    await producer.stop()

    # Per partition: poll times and the watermark at each, for a binary search.
    by_tp: dict[tuple[str, int], tuple[list[float], list[int]]] = {}
    for t, offsets in polls:
        for tp, off in offsets.items():
            times, offs = by_tp.setdefault(tp, ([], []))
            times.append(t)
            offs.append(max(off, offs[-1]) if offs else off)
    measure_from = state["measure_from"]
    fresh: list[float] = []
    acks: list[float] = []
    unseen = 0
    for t_send, fut in sent:
        if t_send < measure_from:  # type: ignore[operator]
            continue
        md = fut.result()
        times, offs = by_tp.get((md.topic, md.partition), ([], []))
        i = bisect.bisect_right(offs, md.offset)  # first watermark > offset
        if i >= len(offs):
            unseen += 1
            continue
        fresh.append(times[i] - t_send)
        ack_t = getattr(fut, "_bench_ack", None)
        if ack_t is not None:
            acks.append(ack_t - t_send)
    span = (state["stop_at"] or 0) - (measure_from or 0)
    return {"fresh": fresh, "unseen": unseen, "polls": len(polls), "span": span,
            "measured_records": len(fresh) + unseen}


def run(duration: float = 30.0, profile: bool = False) -> dict[str, Any]:
    with common.broker() as b:
        topics = common.fresh_topics()
        common.create_topics(b.bootstrap, topics)
        with serve(b.bootstrap, topics, NAME, profile) as s:
            got = asyncio.run(_measure(b.bootstrap, topics, s.url, s.keys, duration))
            died = s.proc.poll() is not None
            work = s.workdir
    stats = common.summary_ms(got["fresh"])
    p99 = stats.get("p99_ms", float("inf"))
    figures = {
        "method": "paced producer 2,000 events/s (20 single-event records per 10 ms); "
                  "freshness = first status response whose X-Projection-Watermark covers the "
                  "record's offset - send time (upper bound, poll period ~10 ms); warm-up "
                  "excluded",
        "rate_events_per_s": RATE,
        "measured_seconds": round(got["span"], 1),
        "measured_records": got["measured_records"],
        "records_never_seen_applied": got["unseen"],
        "polls": got["polls"],
        "freshness": stats,
        "target": "p99 < 500 ms",
        "target_met": p99 < 500 and got["unseen"] == 0,
        "serve_settings": "defaults: flush_max_events 5000, flush_interval_ms 100",
        "serve_died_during_run": died,
        **({"profile": str(work / "profile.txt")} if profile else {}),
        "profiled": profile,  # py-spy attached: slower, not comparable
        "workdir": str(work),
    }
    common.row(NAME, f"p50 @ {RATE:,} ev/s ({stats['count']:,} rec)", f"{stats['p50_ms']:,.0f} ms",
               "")
    common.row(NAME, "p99", f"{p99:,.0f} ms", "< 500 ms", figures["target_met"])
    common.save_result(NAME, figures)
    return figures
