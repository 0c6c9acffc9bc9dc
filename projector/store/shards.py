"""A node's shards: one store per partition of the source topics, in one data directory.

Kafka puts every event of a campaign on the partition murmur2 gives its
``campaign_id``, the four source topics are co-partitioned, and campaigns never
share rows: partition p's projections and the offsets of partition p of the
four topics form a closed unit that can move between nodes alone (issue 28).
Each lives in ``DATA_DIR/partition-NNNN.duckdb``, a ``Store`` of its own, so a
flush commits each touched shard's rows, dead letters and offsets in that
shard's transaction: exactly-once holds per partition as it did for the one
file. A crash between two shards' commits leaves one ahead of the other; each
resumes from its own offsets.

Shards are attached when the group assigns their partition and detached
(checkpointed, closed) when it takes it away. On a shared volume the file the
last owner closed is the one the next owner opens; DuckDB's file lock refuses
a second writer, which fences an old owner that has not let go yet
(``ShardLocked``: the caller retries). Separate volumes: a gained shard is
whatever this node last had of it, or new, and the live path catches it up
from Kafka (``projector.intake.membership`` holds its answers back until then).

Why a file per partition, each its own DuckDB instance, and how the node's
budget is shared: docs/decisions/0035-store-per-partition-built.md.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from projector.fold.prior import Changes
from projector.fold.rows import CampaignKey, RunRow
from projector.settings import Settings
from projector.store.bookkeeping import DeadLetter
from projector.store.errors import StoreError, StoreLockedError
from projector.store.logmark import LogMark
from projector.store.writer import FlushResult, Store, live_store
from schemas.partitioner import partition_of

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
_NO_HEADS: Mapping[str, int] = {}
# Touched shards flushed side by side, at most.
SHARD_FLUSH_THREADS = 4


def shard_path(data_dir: Path, partition: int) -> Path:
    return data_dir / f"partition-{partition:04d}.duckdb"


def stored_partitions(data_dir: Path) -> list[int]:
    """Partitions that have a shard file in ``data_dir``."""
    out = []
    for path in data_dir.glob("partition-*.duckdb"):
        number = path.stem.removeprefix("partition-")
        if number.isdigit():
            out.append(int(number))
    return sorted(out)


class ShardLocked(StoreLockedError):
    """Another process holds the shard's file (its last owner has not let go yet)."""


class Shards:
    """The shards attached here; used like a ``Store`` by the pipeline and the API.

    ``make(path)`` builds a configured, unopened ``Store`` for a shard file.
    Attach, detach and flush take one lock, so a shard never goes away in the
    middle of a flush; reads take none (they hold the ``Store`` they found).
    """

    def __init__(self, data_dir: Path | str, make: Callable[[Path], Store]) -> None:
        self.data_dir = Path(data_dir)
        self._make = make
        self._shards: dict[int, Store] = {}
        self._lock = threading.RLock()
        # Set from the topics before anything is attached (Projector.prepare).
        self.partitions = 0
        self._seq = 0  # flushes committed by this node, for its status
        # Offsets each shard holds, in memory: a flush retried after a partial
        # commit skips the shards that committed their share already.
        self._stored: dict[int, dict[TopicPartition, int]] = {}
        # Shards flushed side by side at most (1: one after the other).
        self.parallel = SHARD_FLUSH_THREADS
        self._pool: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------
    def open(self) -> Shards:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the data directory {self.data_dir}: {e}") from e
        return self

    def close(self) -> None:
        with self._lock:
            for p in sorted(self._shards):
                self.detach(p)
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None

    def __enter__(self) -> Shards:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def attached(self) -> frozenset[int]:
        return frozenset(self._shards)

    def holds(self, partition: int) -> bool:
        """Is partition's shard attached here? (Per record: no set is built.)"""
        return partition in self._shards

    def shard(self, partition: int) -> Store | None:
        return self._shards.get(partition)

    def attach(self, partition: int) -> Store:
        """Open partition's shard (created if new); ``ShardLocked`` if another process
        holds it. Attaching an attached shard returns it."""
        store = self._shards.get(partition)
        if store is not None:
            return store
        # Opened outside the lock: several shards open side by side (an
        # assignment gains many at once), and flushes of the others go on.
        path = shard_path(self.data_dir, partition)
        try:
            store = self._make(path).open()
        except StoreLockedError as e:
            raise ShardLocked(str(e)) from e
        stored = store.offsets()
        with self._lock:
            if partition in self._shards:  # attached meanwhile by another caller
                store.close()
                return self._shards[partition]
            self._shards[partition] = store
            self._stored[partition] = stored
        log.info("shard %d attached (%s, %d flushes)", partition, path.name, store.seq)
        return store

    def detach(self, partition: int) -> None:
        """Checkpoint and close partition's shard, letting go of its file."""
        store = self.release(partition)
        if store is not None:
            close_shard(partition, store)

    def release(self, partition: int) -> Store | None:
        """Take partition's shard out of this node (no flush, read or ``holds`` sees it
        from now on) and hand it over for the caller to close: a checkpoint of a
        large shard takes seconds, which a rebalance callback must not wait for."""
        with self._lock:
            self._stored.pop(partition, None)
            return self._shards.pop(partition, None)

    def partition_of(self, campaign_id: str) -> int:
        """The contract's partition of a campaign (murmur2 of its id, as producers key it)."""
        if self.partitions <= 0:
            raise StoreError("the shards' partition count is not set")
        return partition_of(campaign_id, self.partitions)

    def _of(self, campaign_id: str) -> Store | None:
        return self._shards.get(self.partition_of(campaign_id)) if self.partitions else None

    # -- what the pipeline reads ---------------------------------------------------
    @property
    def seq(self) -> int:
        return self._seq

    def offsets(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for store in list(self._shards.values()):
            out.update(store.offsets())
        return out

    def marks(self) -> dict[TopicPartition, LogMark]:
        out: dict[TopicPartition, LogMark] = {}
        for store in list(self._shards.values()):
            out.update(store.marks())
        return out

    # -- the writer's memory, for the API ---------------------------------------------
    def heads(self, campaign_id: str) -> Mapping[str, int]:
        store = self._of(campaign_id)
        return _NO_HEADS if store is None else store.heads(campaign_id)

    def runs_of(self, campaign: CampaignKey) -> list[RunRow]:
        store = self._of(campaign[1])
        return [] if store is None else store.runs_of(campaign)

    def polled(self, workspace_id: str, campaign_id: str) -> tuple[Mapping[str, int], list[RunRow]]:
        store = self._of(campaign_id)
        return (_NO_HEADS, []) if store is None else store.polled(workspace_id, campaign_id)

    # -- the flush ----------------------------------------------------------------------
    def flush(
        self,
        events: list[Any],
        offsets: Mapping[TopicPartition, int],
        deadletters: Iterable[DeadLetter] = (),
        marks: Mapping[TopicPartition, LogMark] | None = None,
        partitions: Sequence[int] | None = None,
    ) -> FlushResult:
        """Commit each touched shard's share of a micro-batch in that shard's transaction.

        ``partitions`` gives each event's source partition (the record's, not
        the campaign's hash: a shard holds exactly its partition's records, with
        their offsets). Shares of partitions not attached here are left out,
        unacknowledged: the partition went to another node, which reads them
        from its own stored offsets. A share whose offsets the shard already
        holds (a retry after a partial commit) is skipped.
        """
        if partitions is None or len(partitions) != len(events):
            raise StoreError("a sharded flush needs the source partition of every event")
        shares: dict[int, list[Any]] = {}
        for event, p in zip(events, partitions, strict=True):
            shares.setdefault(p, []).append(event)
        letters: dict[int, list[DeadLetter]] = {}
        for dl in deadletters:
            letters.setdefault(dl.partition, []).append(dl)
        offs: dict[int, dict[TopicPartition, int]] = {}
        for tp, offset in offsets.items():
            offs.setdefault(tp[1], {})[tp] = offset
        with self._lock:
            jobs: list[tuple[int, Store, Callable[[], FlushResult]]] = []
            for p in sorted(set(shares) | set(letters) | set(offs)):
                store = self._shards.get(p)
                if store is None:
                    log.debug("partition %d is not attached here: its share is left", p)
                    continue
                mine = offs.get(p, {})
                stored = self._stored.get(p, {})
                if mine and all(stored.get(tp, -1) >= o for tp, o in mine.items()):
                    continue  # committed by an earlier attempt of this batch
                m = {tp: mark for tp, mark in (marks or {}).items() if tp[1] == p}
                share = (shares.get(p, []), mine, letters.get(p, ()), m)
                jobs.append((p, store, partial(store.flush, *share)))
            results = self._run(jobs, offs)
            self._seq += 1
            return merged(self._seq, results)

    def _run(
        self,
        jobs: list[tuple[int, Store, Callable[[], FlushResult]]],
        offsets: Mapping[int, Mapping[TopicPartition, int]],
    ) -> list[FlushResult]:
        """Each shard's flush, side by side when several are touched.

        Each shard is a DuckDB instance of its own, and DuckDB lets go of the
        GIL while it executes and commits: shards committed one after the other
        paid every shard's commit in turn (decision 0035 has the figures). A
        failed shard fails the flush once every other has ended; the shards
        that committed keep their share, and their offsets, noted here, make a
        retry skip them.
        """

        def committed(p: int) -> None:
            self._stored.setdefault(p, {}).update(offsets.get(p, {}))

        results: list[FlushResult] = []
        if len(jobs) <= 1 or self.parallel <= 1:
            for p, _, job in jobs:
                results.append(job())
                committed(p)
            return results
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="shard-flush")
        futures = [(p, self._pool.submit(job)) for p, _, job in jobs]
        failed: BaseException | None = None
        for p, future in futures:
            try:
                results.append(future.result())
            except BaseException as e:  # noqa: BLE001 - raised once every shard has ended
                failed = failed or e
            else:
                committed(p)
        if failed is not None:
            raise failed
        return results


def close_shard(partition: int, store: Store) -> None:
    """Checkpoint and close a released shard (``Shards.release``), letting go of its file.

    A failure is logged, not raised: the shard's rows are committed, and the
    next open replays its WAL.
    """
    try:
        store.close()
    except Exception:  # noqa: BLE001
        log.exception("closing shard %d failed", partition)
    else:
        log.info("shard %d detached", partition)


def merged(seq: int, results: Sequence[FlushResult]) -> FlushResult:
    """One node-wide result of the shards' flushes (what the listeners need)."""
    changes = Changes()
    changed: set[CampaignKey] = set()
    letters = 0
    for r in results:
        changes.events += r.changes.events
        changes.campaigns.update(r.changes.campaigns)
        changes.runs.update(r.changes.runs)
        changed |= r.changed_campaigns
        letters += r.deadletters
    return FlushResult(seq, changes.events, letters, frozenset(changed), changes)


# A shard's share of the node's DuckDB memory is never below this: a merge of
# a large flush into one shard failed with a 29 MiB share (decision 0033).
SHARD_MEMORY_FLOOR = 256 * 2**20
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def size_bytes(text: str) -> int | None:
    """``2GB``, ``512MiB``, ... in bytes, as DuckDB reads them; None if not a size."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", text.lower())
    if m is None or m.group(2) not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def live_shards(settings: Settings, data_dir: Path | str | None = None) -> Shards:
    """The live writer's shards in ``settings.data_dir``, configured, not yet open.

    Each shard is a ``live_store`` with a share of the node's budget: the row
    cache and DuckDB's memory limit divided by the partition count (the memory
    share at least ``SHARD_MEMORY_FLOOR``); DuckDB threads and the rest as set.
    """
    root = data_dir if data_dir is not None else settings.data_dir
    if root is None:
        raise StoreError("no data directory for the shards (--data-dir)")

    def make(path: Path) -> Store:
        store = live_store(settings, path)
        n = max(1, shards.partitions)
        store.cache_max_rows = settings.cache_max_rows // n
        total = size_bytes(settings.duckdb_memory_limit)
        if total is not None:
            store.memory_limit = f"{max(SHARD_MEMORY_FLOOR, total // n) // 2**20}MiB"
        return store

    shards = Shards(root, make)
    return shards
