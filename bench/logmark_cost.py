"""What reading log marks back costs a flush: before every commit, or once per log epoch.

Decision 0034 reads a partition's stored mark back from the broker before
the first commit after an assignment or a reconnection, no longer before
every commit. This measures the flush path both ways in one process, on one
embedded broker, in interleaved rounds: a ``Pipeline`` over a fresh store
with the worker's ``LogReader`` as its verifier, fed records that are really
in the log (16 partitions, single-event records), flushed every
``--per-flush`` records. "every commit" is the pipeline without an epoch
(the rule before 0034); "once per epoch" has an epoch that never moves (a
steady connection). A measurement aid for docs/reliability.md (guarantee 3,
"Cost"), not part of ``make bench``: ``python -m bench.logmark_cost``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from bench import common

NAME = "logmark_cost"
MODES = ("every commit", "once per epoch")


async def _fill(bootstrap: str, topics: list[str], n: int) -> dict[tuple[str, int], list[Any]]:
    """Produce ``n`` simulated events spread over every partition; the log, per partition."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sent = []
    try:
        for i, e in enumerate(common.sim_events(n)):
            value = orjson.dumps(e)
            topic = topics[i % len(topics)]
            sent.append((value, await producer.send(topic, value, partition=(i // 4) % 4)))
        log: dict[tuple[str, int], list[Any]] = {}
        for value, future in sent:
            md = await future
            log.setdefault((md.topic, md.partition), []).append((md.offset, value))
    finally:
        await producer.stop()
    for records in log.values():
        records.sort()
    return log


async def _measure(rounds: int, flushes: int, per_flush: int) -> dict[str, Any]:
    from projector.intake.health import PipelineStatus
    from projector.intake.metrics import Metrics
    from projector.intake.offsets import LogReader
    from projector.intake.pipeline import Pipeline
    from projector.intake.topics import ensure_topics
    from projector.store.writer import Store

    work = common.workdir(NAME)
    with common.broker() as b:
        topics = [f"{NAME}.{kind}" for kind in ("runs", "batches", "submits", "dlrs")]
        await ensure_topics(b.bootstrap, topics, 4)
        log = await _fill(b.bootstrap, topics, rounds * len(MODES) * flushes * per_flush + 64)
        reader = LogReader(b.bootstrap)
        walls: dict[str, list[float]] = {m: [] for m in MODES}
        read_back = dict.fromkeys(MODES, 0.0)
        with Store(work / "logmark.duckdb") as store:
            pipeline = Pipeline(
                store, executor=ThreadPoolExecutor(1), deadletters=None,
                status=PipelineStatus(), metrics=Metrics(),
                flush_max_events=10**9, flush_interval_ms=10**9,
            )  # fmt: skip
            pipeline.prepare(dict.fromkeys(log, 0))

            async def verify(wanted: dict[tuple[str, int], int]) -> dict[Any, int | None]:
                return await reader.digests(wanted, timeout=5.0)

            pipeline.verifier = verify
            tps, cursor, k = sorted(log), dict.fromkeys(log, 0), 0
            checks = pipeline.metrics.mark_checks
            for r in range(rounds):
                for mode in MODES if r % 2 == 0 else MODES[::-1]:
                    pipeline.epoch = None if mode == "every commit" else (lambda: 1)
                    before = checks._value.get()  # noqa: SLF001 - prometheus has no getter
                    for _ in range(flushes):
                        for _ in range(per_flush):
                            tp = tps[k % len(tps)]
                            k += 1
                            offset, value = log[tp][cursor[tp]]
                            cursor[tp] += 1
                            await pipeline.add(tp[0], tp[1], offset, None, value)
                        t0 = time.perf_counter()
                        await pipeline.flush()
                        walls[mode].append(time.perf_counter() - t0)
                    read_back[mode] += checks._value.get() - before  # noqa: SLF001
        await reader.close()
    return {
        m: {"flush_wall": common.summary_ms(walls[m]), "marks_read_back": read_back[m]}
        for m in MODES
    }


def run(rounds: int = 6, flushes: int = 40, per_flush: int = 40) -> dict[str, Any]:
    got = asyncio.run(_measure(rounds, flushes, per_flush))
    figures = {
        "method": f"one Pipeline + LogReader on the embedded broker, 16 partitions, {per_flush} "
        f"single-event records per flush, {rounds} interleaved rounds of {flushes} "
        "flushes per mode",
        **got,
    }
    for mode in MODES:
        w = got[mode]["flush_wall"]
        common.row(
            NAME, f"{mode}: flush p50 / p99", f"{w['p50_ms']:,.1f} / {w['p99_ms']:,.1f} ms", ""
        )
        common.row(NAME, f"{mode}: marks read back", f"{got[mode]['marks_read_back']:,.0f}", "")
    common.save_result(NAME, figures)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--flushes", type=int, default=40)
    ap.add_argument("--per-flush", type=int, default=40)
    args = ap.parse_args()
    run(args.rounds, args.flushes, args.per_flush)


if __name__ == "__main__":
    main()
