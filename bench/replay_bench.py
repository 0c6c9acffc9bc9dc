"""Replay benchmark: raw Kafka consumption vs replay from Kafka vs replay from the archive.

Run alone: ``python -m bench.replay_bench [--events 1000000] [--array-size 100]``.
Starts its own embedded broker, produces a simulated stream, then measures, in
events/s on this machine:

* raw: aiokafka (no group, all partitions assigned) fetching every record to
  the log end, values untouched: the floor's limit for any Kafka replay;
* replay_kafka: ``projector.rebuild.replay.replay`` into a fresh DuckDB file (decode,
  stage, set-based fold, write);
* archive: ``projector.rebuild.archive.archive --until-caught-up`` (decode, Parquet
  with the typed ``fields`` struct);
* replay_archive: ``replay --from-archive --no-kafka`` (read typed Parquet,
  set-based fold, write), and the same plus the primary keys that the first
  writer to open the rebuilt file builds;
* shards (issue 29, ``--shard-workers 1 2``): ``replay --data-dir`` building a
  shard per partition in N worker processes, from Kafka and from the
  archive, N = each of ``--shard-workers`` in turn; every set of shards is
  verified identical to the one-file Kafka rebuild. Targets: 2 workers from
  Kafka at least 35% of raw consumption; from the archive at least 700,000
  events/s or 1.6x the 1-worker rate.

Results go to ``bench/results/replay.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "replay.json"


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


async def _produce(bootstrap: str, topics: Any, events: list[dict], array_size: int) -> float:
    from projector.tools.emit import EventEmitter

    t0 = time.perf_counter()
    async with EventEmitter(bootstrap, topics, array_size=array_size) as em:
        for i in range(0, len(events), 10_000):
            await em.emit_many(events[i : i + 10_000], validate=False)
        await em.flush()
    return time.perf_counter() - t0


async def _raw(bootstrap: str, topics: list[str]) -> tuple[float, int]:
    from aiokafka import TopicPartition as KTP

    from projector.intake.offsets import log_end_offsets
    from projector.rebuild.archive import stop_consumer
    from projector.rebuild.readers import bulk_consumer

    end = await log_end_offsets(bootstrap, topics)
    consumer = bulk_consumer(bootstrap)
    await consumer.start()
    try:
        tps = [KTP(t, p) for (t, p), e in end.items() if e > 0]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        reached = {(tp.topic, tp.partition): 0 for tp in tps}
        records = 0
        t0 = time.perf_counter()
        while any(reached[tp] < end[tp] for tp in reached):
            fetched = await consumer.getmany(timeout_ms=1000)
            for ktp, recs in fetched.items():
                records += len(recs)
                reached[(ktp.topic, ktp.partition)] = recs[-1].offset + 1
        return time.perf_counter() - t0, records
    finally:
        await stop_consumer(consumer)


def _shards(
    settings: Any, tmp: Path, n: int, archive_dir: Path, workers: list[int], raw: int
) -> dict[str, Any]:
    """Shard rebuilds (``replay --data-dir``) with each worker count, from Kafka and from the
    archive, each verified identical to the one-file Kafka rebuild."""
    from projector.rebuild.shards import rebuild_shards
    from projector.store.verify import compare

    out: dict[str, Any] = {}
    for source in ("kafka", "archive"):
        for w in workers:
            data_dir = tmp / f"shards-{source}-{w}"
            archive = (
                {"from_archive": archive_dir, "use_kafka": False} if source == "archive" else {}
            )
            got = rebuild_shards(settings, data_dir, workers=w, progress=False, **archive)
            assert got.events == n, got
            rate = round(n / got.elapsed)
            same = compare(tmp / "kafka.duckdb", data_dir).identical
            out[f"{source}_{w}_workers"] = {
                "events_per_s": rate, "seconds": round(got.elapsed, 2), "identical": same,
                **({"vs_raw": round(rate / raw, 3)} if source == "kafka" else {}),
            }  # fmt: skip
            print(
                f"shards from {source}, {w} worker(s): {got.elapsed:.1f}s ({rate:,} events/s"
                f"{f', {rate / raw:.0%} of raw' if source == 'kafka' else ''}); "
                f"identical to the one-file rebuild: {same}",
                flush=True,
            )
    if 1 in workers and 2 in workers:
        two = out["archive_2_workers"]["events_per_s"]
        one = out["archive_1_workers"]["events_per_s"]
        out["archive_2_vs_1"] = round(two / one, 2)
        out["kafka_2_vs_1"] = round(
            out["kafka_2_workers"]["events_per_s"] / out["kafka_1_workers"]["events_per_s"], 2
        )
        out["targets"] = {
            "kafka_2_workers_at_least_35pct_of_raw": out["kafka_2_workers"]["vs_raw"] >= 0.35,
            "archive_2_workers_700k_or_1_6x": two >= 700_000 or two >= 1.6 * one,
        }
    return out


def run(
    n_events: int,
    array_size: int,
    partitions: int,
    decode_workers: int | None = None,
    shard_workers: list[int] | None = None,
) -> dict[str, Any]:
    from bench import common
    from projector.rebuild.archive import archive
    from projector.rebuild.replay import replay
    from projector.settings import Settings
    from projector.tools.broker import EmbeddedBroker
    from projector.tools.simulate import generate

    result: dict[str, Any] = {
        "machine": machine(),
        "events": n_events,
        "array_size": array_size,
        "partitions": partitions,
        "decode_workers": decode_workers,  # None: replay's default, one per CPU
    }
    t0 = time.perf_counter()
    # ~2.6 events per recipient and run; 1-3 runs per campaign.
    campaigns = max(2, n_events // 50_000)
    events = list(itertools.islice(generate(campaigns, 25_000, seed=42), n_events))
    n = len(events)
    result["events"] = n
    print(f"generated {n:,} events in {time.perf_counter() - t0:.1f}s", flush=True)

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        topics = common.fresh_topics()
        common.create_topics(broker.bootstrap, topics, partitions)
        settings = Settings(bootstrap=broker.bootstrap, topics=topics)
        produced = asyncio.run(_produce(broker.bootstrap, topics, events, array_size))
        del events
        result["produce_events_per_s"] = round(n / produced)
        print(f"produced in {produced:.1f}s ({n / produced:,.0f} events/s)", flush=True)

        secs, records = asyncio.run(_raw(broker.bootstrap, list(topics.sources)))
        result["records"] = records
        result["raw_consume_events_per_s"] = round(n / secs)
        print(
            f"raw aiokafka: {records:,} records in {secs:.2f}s ({n / secs:,.0f} events/s)",
            flush=True,
        )

        out = replay(
            settings, Path(tmp) / "kafka.duckdb", progress=False, decode_workers=decode_workers
        )
        assert out.stats.events == n, out.stats
        result["replay_kafka_events_per_s"] = round(n / out.elapsed)
        print(
            f"replay from Kafka: {out.elapsed:.1f}s ({n / out.elapsed:,.0f} events/s)", flush=True
        )

        archive_dir = Path(tmp) / "archive"
        t0 = time.perf_counter()
        writer = asyncio.run(archive(settings, archive_dir, until_caught_up=True))
        secs = time.perf_counter() - t0
        assert writer.events_written == n
        result["archive_events_per_s"] = round(n / secs)
        size = sum(f.stat().st_size for f in archive_dir.rglob("*.parquet"))
        result["archive_bytes"] = size
        print(f"archive: {secs:.1f}s ({n / secs:,.0f} events/s, {size / 1e6:.0f} MB)", flush=True)

        out = replay(
            settings,
            Path(tmp) / "archive.duckdb",
            from_archive=archive_dir,
            use_kafka=False,
            progress=False,
        )
        assert out.stats.events == n, out.stats
        result["replay_archive_events_per_s"] = round(n / out.elapsed)
        print(
            f"replay from archive: {out.elapsed:.1f}s ({n / out.elapsed:,.0f} events/s)", flush=True
        )
        # A rebuild leaves the primary keys to the first writer that opens the
        # file (projector.store.writer): their cost, reported beside the rebuild's.
        from projector.store.writer import Store

        t0 = time.perf_counter()
        Store(Path(tmp) / "archive.duckdb").open().close()
        keys = time.perf_counter() - t0
        result["first_writer_open_builds_keys_s"] = round(keys, 2)
        result["replay_archive_with_keys_events_per_s"] = round(n / (out.elapsed + keys))
        print(
            f"  + primary keys at the first writer's open: {keys:.2f}s "
            f"({n / (out.elapsed + keys):,.0f} events/s with them)",
            flush=True,
        )

        from projector.store.verify import compare

        result["archive_and_kafka_rebuilds_identical"] = compare(
            Path(tmp) / "kafka.duckdb", Path(tmp) / "archive.duckdb"
        ).identical
        if shard_workers:
            result["shards"] = _shards(
                settings, Path(tmp), n, archive_dir, shard_workers,
                result["raw_consume_events_per_s"],
            )  # fmt: skip
    result["replay_kafka_vs_raw"] = round(
        result["replay_kafka_events_per_s"] / result["raw_consume_events_per_s"], 3
    )
    result["targets"] = {
        "replay_kafka_at_least_half_of_raw": result["replay_kafka_vs_raw"] >= 0.5,
        "replay_archive_at_least_500k": result["replay_archive_events_per_s"] >= 500_000,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.replay_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--events", type=int, default=1_000_000, help="events to produce (default 1,000,000)"
    )
    p.add_argument(
        "--array-size", type=int, default=100, help="events per Kafka record (default 100)"
    )
    p.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    p.add_argument(
        "--decode-workers",
        type=int,
        default=None,
        help="decoding processes for the Kafka replay (default: replay's own, one per CPU)",
    )
    p.add_argument(
        "--shard-workers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="worker counts for the shard rebuilds (replay --data-dir); none to skip",
    )
    p.add_argument("--out", default=str(RESULTS), help=f"JSON results (default {RESULTS})")
    args = p.parse_args(argv)
    # The replay's own INFO lines time its phases (read and stage, fold).
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("projector.rebuild.replay").setLevel(logging.INFO)
    result = run(
        args.events, args.array_size, args.partitions, args.decode_workers, args.shard_workers
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
