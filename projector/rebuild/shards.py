"""``projector replay --data-dir``: rebuild a node's shards, each partition in a process of its own.

A shard (``projector.store.shards``) holds one partition's projections and
offsets, and never shares rows with another, so shards rebuild side by side
without a word between them: each worker process replays its partition
(``projector.rebuild.replay.replay`` restricted to it: its archive files, then
its Kafka tail) into ``partition-NNNN.duckdb`` of a data directory, reading,
decoding and folding alone. One worker per core by default. A rebuild of one
partition alone is the same command with ``--partition``.

All or nothing, as a single replay: the shards are built as ``.partial``
files renamed when complete; the first failing worker stops the others, and
every shard this run built is removed, so a data directory never holds half
of a rebuild.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from projector.rebuild.errors import ReplayError
from projector.rebuild.replay import Stats, replay
from projector.settings import Settings
from projector.store.shards import shard_path

TopicPartition = tuple[str, int]


@dataclass
class ShardsOutcome:
    partitions: list[int]
    events: int
    deadletters: int
    offsets: dict[TopicPartition, int]
    elapsed: float
    workers: int


def partition_count(settings: Settings, from_archive: Path | None, use_kafka: bool) -> int:
    """The source topics' partition count (the broker's; the archive's without Kafka)."""
    from projector.intake.offsets import OffsetsError, log_end_offsets

    sources = list(settings.topics.sources)
    if use_kafka:
        try:
            ends = asyncio.run(log_end_offsets(settings.bootstrap, sources))
        except OffsetsError as e:
            if from_archive is None:
                raise ReplayError(str(e)) from e
        else:
            counts = {t: sum(1 for topic, _ in ends if topic == t) for t in sources}
            if len(set(counts.values())) != 1:
                raise ReplayError(
                    "the source topics differ in partition count ("
                    + ", ".join(f"{t}: {n}" for t, n in counts.items())
                    + "): shards need co-partitioned topics (docs/operations.md)"
                )
            return next(iter(counts.values()))
    from projector.rebuild.archive import positions

    found = {p for _, p in positions(from_archive)} if from_archive is not None else set()
    if not found:
        raise ReplayError("no partitions found: neither the broker nor the archive has any")
    return max(found) + 1


def build_one(
    settings: Settings,
    path: Path,
    partition: int,
    since: datetime | None,
    from_archive: Path | None,
    use_kafka: bool,
) -> tuple[int, Stats, dict[TopicPartition, int]]:
    """One worker: replay ``partition`` into ``path`` (reading and decoding here)."""
    out = replay(
        settings,
        path,
        since=since,
        from_archive=from_archive,
        use_kafka=use_kafka,
        progress=False,
        decode_workers=0,
        partitions=frozenset({partition}),
    )
    return partition, out.stats, out.offsets


def _remove(path: Path) -> None:
    for leftover in (path, Path(f"{path}.wal"), path.with_name(path.name + ".partial"),
                     Path(f"{path.with_name(path.name + '.partial')}.wal")):  # fmt: skip
        leftover.unlink(missing_ok=True)


def rebuild_shards(
    settings: Settings,
    data_dir: Path,
    *,
    partitions: list[int] | None = None,
    workers: int | None = None,
    since: datetime | None = None,
    from_archive: Path | None = None,
    use_kafka: bool = True,
    progress: bool = True,
    build: Callable[..., tuple[int, Stats, dict[TopicPartition, int]]] | None = None,
) -> ShardsOutcome:
    """Build the shards of ``partitions`` (default: every partition) in ``data_dir``.

    Refuses a shard that exists (a rebuild never touches a live shard: build
    into a new directory and move the files, or swap the node's directory).
    ``build``: what a worker runs for one partition (a module-level function;
    tests give one that fails).
    """
    build = build or build_one
    count = partition_count(settings, from_archive, use_kafka)
    wanted = sorted(set(range(count) if partitions is None else partitions))
    if bad := [p for p in wanted if not 0 <= p < count]:
        raise ReplayError(f"partition {bad[0]} does not exist: the topics have {count}")
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {p: shard_path(data_dir, p) for p in wanted}
    for path in paths.values():
        if path.exists() or Path(f"{path}.wal").exists():
            raise ReplayError(f"{path} exists: replay only builds new shards (never a live one)")
        partial = path.with_name(path.name + ".partial")
        if partial.exists() or Path(f"{partial}.wal").exists():
            raise ReplayError(
                f"{partial} exists: another replay is running, or one crashed (remove it)"
            )
    workers = max(1, min(workers or os.cpu_count() or 1, len(wanted)))
    t0 = time.monotonic()
    events = deadletters = 0
    offsets: dict[TopicPartition, int] = {}
    # spawn: a worker starts clean (no inherited DuckDB or Kafka client state).
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    futures: dict[Future[tuple[int, Stats, dict[TopicPartition, int]]], int] = {}
    bar = Progress(
        TextColumn("[bold]replay shards"), BarColumn(), MofNCompleteColumn(),
        TextColumn("partitions · {task.fields[events]:,} events"), TimeElapsedColumn(),
        disable=not progress, transient=False,
    )  # fmt: skip
    try:
        with bar:
            task = bar.add_task("shards", total=len(wanted), events=0)
            for p in wanted:
                job = pool.submit(build, settings, paths[p], p, since, from_archive, use_kafka)
                futures[job] = p
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for job in done:
                    p = futures[job]
                    try:
                        _, stats, got = job.result()
                    except BaseException as e:
                        raise ReplayError(f"partition {p} failed: {e}") from e
                    events += stats.events
                    deadletters += stats.deadletters
                    offsets.update(got)
                    bar.update(task, advance=1, events=events)
    except BaseException:
        # Stop every worker now, then leave nothing of this run behind.
        for job in futures:
            job.cancel()
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        for path in paths.values():
            _remove(path)
        raise
    pool.shutdown(wait=True)
    if progress:
        print(f"projector replay: {len(wanted)} shards built by {workers} workers",
              file=sys.stderr, flush=True)  # fmt: skip
    return ShardsOutcome(wanted, events, deadletters, offsets, time.monotonic() - t0, workers)
