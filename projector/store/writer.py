"""The writer: one DuckDB file, one transaction per micro-batch.

A flush walks one way: the keys the batch reads (``fold.plan``) -> those rows
(``prior``: the row cache, else DuckDB) -> the pure fold -> one transaction
holding the changed rows (``upsert``), the dead letters and the next offset of
every source partition covered (``bookkeeping``) -> after the commit, the row
cache and the API's memory (``committed``). Either all of the transaction is
durable or none of it, so a crash at any instant resumes from offsets that
match the projections exactly.

Large flushes (a backlog) skip the Python fold: the set-based merge
(``setmerge``) folds them in SQL, off the GIL. Rebuilds from nothing use the
set-based fold (``setfold``) in one transaction of the same kind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from projector.fold.plan import plan_loads
from projector.fold.prior import Changes
from projector.fold.rows import CampaignKey, RunRow
from projector.fold.rules import fold
from projector.settings import Settings
from projector.store.bookkeeping import (
    DeadLetter,
    read_marks,
    read_offsets,
    write_deadletters,
    write_offsets,
    write_positions,
)
from projector.store.committed import Committed
from projector.store.connection import connect, rollback, stored_version, version_refusal
from projector.store.errors import StoreError, StoreVersionError
from projector.store.keyed import select_keys
from projector.store.logmark import LogMark
from projector.store.prior import PriorLoader
from projector.store.rowcache import RowCache
from projector.store.setfold import (
    add_keys_and_indexes,
    fold_into,
    missing_indexes,
    missing_primary_keys,
    typed,
)
from projector.store.setmerge import merge_into
from projector.store.tables import (
    BOOKKEEPING_DDL,
    CAMPAIGNS,
    MESSAGES,
    PROJECTIONS,
    RUNS,
    SCHEMA_VERSION,
    VIEWS_DDL,
)
from projector.store.upsert import write_changes
from schemas.fastdecode import FastEvent

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
# DuckDB threads while a flush merges in SQL: duckdb-python takes the GIL back
# after every task of a query on one thread, so beside a busy consumer loop a
# merge advanced only as often as the loop let go; a second thread runs tasks
# without asking Python (docs/decisions/0017-merge-on-two-duckdb-threads.md).
MERGE_THREADS = 2


@dataclass(frozen=True)
class FlushResult:
    seq: int
    events: int
    deadletters: int
    changed_campaigns: frozenset[CampaignKey]
    changes: Changes = field(repr=False)


class Store:
    """Read-write owner of one DuckDB file; use from a single writer thread.

    Readers in other threads take their own cursor with ``cursor()``, and
    the API reads the writer's memory through ``heads``, ``runs_of`` and
    ``polled`` (``projector.store.committed``).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        memory_limit: str = "2GB",
        cache_max_rows: int = 1_000_000,
        threads: int = 0,
        merge_min_events: int = 0,
        checkpoint_threshold: str | None = None,
        check_invariants: bool = False,
    ) -> None:
        self.path = Path(path)
        self.memory_limit = memory_limit
        # WAL size that makes a commit checkpoint (None: DuckDB's 16 MB).
        self.checkpoint_threshold = checkpoint_threshold
        self.threads = threads  # 0: DuckDB's default, one per core
        self.cache_max_rows = cache_max_rows
        # Flushes of at least this many events are folded by set-based SQL
        # (projector.store.setmerge) instead of in Python; 0: never.
        self.merge_min_events = merge_min_events
        # After each flush, compare memory with DuckDB (projector.store.invariants).
        self.check_invariants = check_invariants
        self.committed = Committed()
        self._prior = PriorLoader(lambda: self.con, RowCache(cache_max_rows, complete=False))
        self._con: duckdb.DuckDBPyConnection | None = None
        self._seq = 0
        self._lock = threading.Lock()
        self._keys_pending = False  # a rebuild left the primary keys to the next writer

    # -- lifecycle -------------------------------------------------------------
    def open(self) -> Store:
        self._con = connect(
            self.path,
            memory_limit=self.memory_limit,
            checkpoint_threshold=self.checkpoint_threshold,
        )
        try:
            self._con.execute("BEGIN")
            self._check_version()
            for table in PROJECTIONS:
                self._con.execute(table.ddl())
            for ddl in (*BOOKKEEPING_DDL, *VIEWS_DDL):
                self._con.execute(ddl)
            self._con.execute(
                "INSERT OR IGNORE INTO projector_meta "
                "VALUES ('schema_version', ?), ('flush_seq', 0)",
                [SCHEMA_VERSION],
            )
            self._con.execute("COMMIT")
            row = self._con.execute(
                "SELECT value FROM projector_meta WHERE key = 'flush_seq'"
            ).fetchone()
            self._seq = int(row[0]) if row else 0
            empty = all(
                self._con.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM {t.name} LIMIT 1)"
                ).fetchone()[0]
                == 0
                for t in PROJECTIONS
            )
            self.committed.load(self._con)
            # An empty database is wholly described by what this process writes.
            self._new_cache(complete=empty)
            self._keys_pending = bool(
                missing_primary_keys(self._con) or missing_indexes(self._con)
            )
        except duckdb.Error as e:
            raise StoreError(f"cannot initialise {self.path}: {e}") from e
        self._ensure_keys()
        if self.threads:
            # After the one-off key build, which is worth every core. The
            # setting is the database's: the API's cursors share it.
            self.con.execute(f"SET threads = {int(self.threads)}")
        return self

    def _check_version(self) -> None:
        """Refuse a database of another projection layout before touching its tables."""
        found = stored_version(self.con)
        if found is not None and found != SCHEMA_VERSION:
            self._con.execute("ROLLBACK")  # type: ignore[union-attr]
            self._con.close()  # type: ignore[union-attr]
            self._con = None
            raise StoreVersionError(version_refusal(self.path, found))

    def _ensure_keys(self) -> None:
        """Build the keys and ``tables.INDEXES`` a rebuild left out, before an upsert needs them.

        ``rebuild`` leaves them out: building and persisting them is a large
        share of a rebuild's time, and a rebuilt file is often only verified
        or served read-only (docs/decisions/0009-rebuild-leaves-keys-to-first-writer.md).
        A writer that opens it builds them here, once, in one transaction; a
        database holding duplicate keys fails here, loudly.
        """
        if not self._keys_pending:
            return
        began = time.perf_counter()
        try:
            self.con.execute("BEGIN")
            added = add_keys_and_indexes(self.con)
            self.con.execute("COMMIT")
        except duckdb.Error as e:
            self.con.execute("ROLLBACK")
            raise StoreError(f"cannot build the primary keys of {self.path}: {e}") from e
        self._keys_pending = False
        if added:
            # On a new, empty database there was nothing to build: not news.
            log.log(
                logging.DEBUG if self._prior.cache.complete and not self._seq else logging.INFO,
                "built the primary keys and indexes of %s (%s) in %.2fs",
                self.path, ", ".join(added), time.perf_counter() - began,
            )

    def _new_cache(self, *, complete: bool) -> None:
        self._prior.cache = RowCache(self.cache_max_rows, complete=complete)

    def close(self) -> None:
        if self._con is not None:
            try:
                self._con.execute("CHECKPOINT")
            except duckdb.Error:
                log.warning("checkpoint on close failed", exc_info=True)
            self._con.close()
            self._con = None

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError("store is not open")
        return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for another thread (DuckDB: one cursor per thread)."""
        return self.con.cursor()

    @property
    def seq(self) -> int:
        return self._seq

    # -- reads -------------------------------------------------------------------
    def offsets(self) -> dict[TopicPartition, int]:
        return read_offsets(self.con)

    def marks(self) -> dict[TopicPartition, LogMark]:
        """The last record applied per partition, where known (``projector.store.logmark``)."""
        return read_marks(self.con)

    def checkpoint(self) -> None:
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.Error as e:
            raise StoreError(f"checkpoint failed: {e}") from e

    # The writer's memory, for the API (any thread, any time).
    def heads(self, campaign_id: str) -> Mapping[str, int]:
        """{workspace_id: position} of the campaigns with this id (F12: one per
        workspace), as last committed; empty if this store never saw one."""
        return self.committed.heads(campaign_id)

    def runs_of(self, campaign: CampaignKey) -> list[RunRow]:
        """The campaign's runs as last committed, from memory."""
        return self.committed.runs_of(campaign)

    def polled(self, workspace_id: str, campaign_id: str) -> tuple[Mapping[str, int], list[RunRow]]:
        """A campaign id's heads and the workspace's campaign's runs, as of one flush."""
        return self.committed.polled(workspace_id, campaign_id)

    # -- the flush -------------------------------------------------------------
    def flush(
        self,
        events: list[Any],
        offsets: Mapping[TopicPartition, int],
        deadletters: Iterable[DeadLetter] = (),
        marks: Mapping[TopicPartition, LogMark] | None = None,
        partitions: Sequence[int] | None = None,
    ) -> FlushResult:
        """Apply a micro-batch and advance offsets atomically.

        ``offsets`` maps each source partition to the offset of the next
        record to read after this batch; ``marks`` names the last record
        applied from each (``projector.store.logmark``), where the caller knows it.
        ``events`` are models or ``FastEvent`` (the fast decoder's canonical
        JSON), mixed as the records came. ``partitions`` (each event's source
        partition) matters only to a sharded store (``projector.store.shards``):
        one file holds every partition.
        """
        deadletters = list(deadletters)
        if self.merge_min_events and len(events) >= self.merge_min_events:
            return self._flush_merged(events, offsets, deadletters, marks)
        # Validated once, by the fast path: its structs read like the models.
        events = [ev.event() if isinstance(ev, FastEvent) else ev for ev in events]
        with self._lock:
            self._ensure_keys()
            seq = self._seq + 1
            with self._transaction("flush", seq) as con:
                prior = self._prior.load(plan_loads(events))
                changes = fold(prior, events) if events else Changes()
                changed = write_changes(con, changes, chunk_messages=self._prior.large(MESSAGES))
                write_positions(con, changed, seq)
                write_deadletters(con, deadletters)
                if offsets:
                    write_offsets(con, offsets, marks or {})
            self._prior.cache.apply(changes)
            return self._committed(seq, changes, changed, len(deadletters))

    def _committed(
        self, seq: int, changes: Changes, changed: set[CampaignKey], deadletters: int
    ) -> FlushResult:
        """After a flush's COMMIT: the API's memory, then (invariant mode) its check."""
        self.committed.note(changes.runs.values(), changed, seq)
        self._seq = seq
        if self.check_invariants:
            self.committed.check(self.con, changes, changed, seq)
        return FlushResult(seq, changes.events, deadletters, frozenset(changed), changes)

    def _flush_merged(
        self,
        events: list[Any],
        offsets: Mapping[TopicPartition, int],
        deadletters: list[DeadLetter],
        marks: Mapping[TopicPartition, LogMark] | None,
    ) -> FlushResult:
        """``flush`` of a large batch: the fold as set-based SQL, off the GIL.

        The Python fold holds the GIL for every event, which the consumer's
        loop needs too; DuckDB releases it while it merges
        (docs/decisions/0016-set-based-merge-for-large-flushes.md). Events the
        fast decoder took arrive as canonical JSON already; only models are
        serialised here. The writer's row cache cannot follow rows changed in
        SQL, so it starts again, empty.
        """
        stage = pa.table(  # noqa: F841 (read by DuckDB by name)
            {
                "event_type": pa.array([ev.type for ev in events], pa.string()),
                "event": pa.array(
                    [
                        ev.json if isinstance(ev, FastEvent) else ev.model_dump_json()
                        for ev in events
                    ],
                    pa.string(),
                ),
            }
        )
        with self._lock:
            self._ensure_keys()
            seq = self._seq + 1
            # Set outside the transaction, as rebuild() does.
            boost = 0 < self.threads < MERGE_THREADS
            if boost:
                self.con.execute(f"SET threads = {MERGE_THREADS}")
            try:
                with self._transaction("flush", seq) as con:
                    con.execute(
                        "CREATE OR REPLACE TEMP TABLE flush_events AS "
                        f"SELECT * FROM {typed('stage')}"
                    )
                    merged = merge_into(con, "flush_events")
                    con.execute("DROP TABLE flush_events")
                    changes = Changes(events=merged.events)
                    changes.runs = select_keys(con, RUNS, sorted(merged.run_keys))
                    changes.campaigns = select_keys(con, CAMPAIGNS, sorted(merged.campaigns))
                    changed = set(merged.campaigns)
                    write_positions(con, changed, seq)
                    write_deadletters(con, deadletters)
                    if offsets:
                        write_offsets(con, offsets, marks or {})
            finally:
                if boost:
                    self.con.execute(f"SET threads = {int(self.threads)}")
            self._new_cache(complete=False)
            return self._committed(seq, changes, changed, len(deadletters))

    @contextmanager
    def _transaction(self, what: str, seq: int) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction that ends by recording ``seq`` as the last flush."""
        con = self.con
        try:
            con.execute("BEGIN")
            yield con
            con.execute("UPDATE projector_meta SET value = ? WHERE key = 'flush_seq'", [seq])
            con.execute("COMMIT")
        except duckdb.Error as e:
            rollback(con)
            raise StoreError(f"{what} failed and was rolled back: {e}") from e
        except BaseException:
            rollback(con)
            raise

    def rebuild(
        self,
        source: str,
        offsets: Mapping[TopicPartition, int],
        on_step: Callable[[int, int], None] | None = None,
        *,
        materialise: bool = False,
        marks: Mapping[TopicPartition, LogMark] | None = None,
        deadletters: Iterable[DeadLetter] = (),
    ) -> int:
        """Fold a whole event set into this empty store at once (``projector.store.setfold``).

        For rebuilds: one transaction, like a flush, so offsets land with the
        rows. Returns the number of events read from ``source``.
        """
        with self._lock:
            if not self._prior.cache.complete or self._seq:
                raise StoreError(f"{self.path} is not empty: a set-based rebuild needs a new one")
            seq = self._seq + 1
            # Nothing reads the tables in insertion order (every query orders
            # by key), so DuckDB may insert the fold's rows in parallel
            # (docs/decisions/0002-set-based-fold-for-rebuilds.md). Set outside
            # the transaction: a failed one refuses every statement until
            # rolled back, the RESET included.
            self.con.execute("SET preserve_insertion_order = false")
            try:
                with self._transaction("rebuild", seq) as con:
                    n = fold_into(con, source, on_step, materialise=materialise, primary_keys=False)
                    write_deadletters(con, deadletters)
                    con.execute(
                        "INSERT INTO campaign_positions "
                        "SELECT workspace_id, campaign_id, ? FROM campaigns",
                        [seq],
                    )
                    if offsets:
                        write_offsets(con, offsets, marks or {})
            finally:
                self.con.execute("RESET preserve_insertion_order")
            self._seq = seq
            self._keys_pending = True
            self.committed.load(self.con)
            # Rows now live only in DuckDB: later flushes read what they need.
            self._new_cache(complete=False)
        return n


def live_store(settings: Settings, path: Path | str | None = None) -> Store:
    """The live writer's store (``settings.db`` unless ``path``), configured, not yet open."""
    return Store(
        settings.db if path is None else path,
        memory_limit=settings.duckdb_memory_limit,
        threads=settings.duckdb_threads,
        cache_max_rows=settings.cache_max_rows,
        merge_min_events=settings.merge_min_events,
        checkpoint_threshold=settings.duckdb_checkpoint_threshold,
        check_invariants=settings.check_invariants,
    )


@contextmanager
def open_store(path: Path | str, *, memory_limit: str = "2GB") -> Iterator[Store]:
    store = Store(path, memory_limit=memory_limit).open()
    try:
        yield store
    finally:
        store.close()
