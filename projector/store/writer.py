"""The only module that writes DuckDB.

A flush is one transaction: preload the rows the micro-batch touches, fold
(pure), upsert the changed rows table by table from Arrow, record dead
letters, and store the next offset of every source partition covered. Either
all of it is durable or none of it is, so a crash at any instant resumes from
offsets that match the projections exactly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from projector.fold.rows import CampaignKey, MessageKey, RecipientKey, RecipientRow, RunRow
from projector.fold.rules import (
    Changes,
    DictPrior,
    LoadPlan,
    fold,
    plan_loads,
    submit_batch_keys,
)
from projector.settings import Settings
from projector.store.errors import StoreError, StoreLockedError, StoreVersionError
from projector.store.invariants import check_memory
from projector.store.logmark import LogMark
from projector.store.rowcache import MISSING, RowCache
from projector.store.setfold import (
    add_keys_and_indexes,
    fold_into,
    missing_indexes,
    missing_primary_keys,
    typed,
)
from projector.store.setmerge import merge_into
from projector.store.tables import (
    ATTEMPTS,
    BATCHES,
    BOOKKEEPING_DDL,
    CAMPAIGN_KEY,
    CAMPAIGNS,
    MESSAGES,
    PROJECTIONS,
    RECIPIENTS,
    RUN_KEY,
    RUNS,
    SCHEMA_VERSION,
    SNAPSHOTS,
    VIEWS_DDL,
    Table,
)
from schemas.fastdecode import FastEvent

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
_NO_HEADS: Mapping[str, int] = {}
# DuckDB threads while a flush merges in SQL (see Store._flush_merged).
MERGE_THREADS = 2
# Keys per statement where a table's keys are in no order (message ids):
# DuckDB's dynamic_or_filter_threshold (default 50), up to which a join - and
# the conflict check of INSERT OR REPLACE - filters its scan by the key list,
# which it answers from an index. Past it DuckDB scans the table: at 5M
# stored messages, 100 keys cost 100-110 ms in one statement, 5-9 ms in two.
# Past KEY_CHUNKED_MAX keys in one flush a single scan is cheaper (_steps),
# and so it is below KEY_CHUNK_MIN_ROWS stored rows (a scan of 100k rows
# costs about what two more statements do; chunks made (d)'s flushes on a
# young store 7 ms slower at the median).
KEY_CHUNK = 50
KEY_CHUNKED_MAX = 500
KEY_CHUNK_MIN_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record (or array item) the decoder rejected, by source position."""

    topic: str
    partition: int
    offset: int
    item_index: int  # -1 for the whole record
    reason: str

    @property
    def reason_code(self) -> str:
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class FlushResult:
    seq: int
    events: int
    deadletters: int
    changed_campaigns: frozenset[CampaignKey]
    changes: Changes = field(repr=False)


def connect(
    path: Path | str,
    *,
    read_only: bool = False,
    memory_limit: str = "2GB",
    checkpoint_threshold: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open DuckDB, turning its lock and I/O errors into ours."""
    # memory_limit goes in the connect config: WAL replay after a crash runs
    # before any SET statement could apply.
    config = {"memory_limit": memory_limit}
    if checkpoint_threshold is not None:
        config["checkpoint_threshold"] = checkpoint_threshold
    try:
        if not read_only:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as e:
        if "lock" in str(e).lower():
            raise StoreLockedError(f"{path} is held by another process: {e}") from e
        raise StoreError(f"cannot open {path}: {e}") from e
    except duckdb.Error as e:
        raise StoreError(f"cannot open {path}: {e}") from e


class Store:
    """Read-write owner of one DuckDB file; use from a single writer thread.

    Readers in other threads take their own cursor with ``cursor()``.
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
        self._cache = RowCache(cache_max_rows, complete=False)
        # campaign_id -> {workspace_id: position}: every campaign, kept by the
        # writer, so the API answers polls of unchanged campaigns from memory
        # (and tells a campaign id of another workspace, 403, from an unknown
        # one, 404, without a query). Inner dicts are replaced, never changed,
        # so readers in other threads read them safely.
        self._heads: dict[str, dict[str, int]] = {}
        # (workspace_id, campaign_id) -> {run_id: row as committed}: every run,
        # kept by the writer, so status and analytics polls never wait for a
        # DuckDB read. Inner dicts are replaced, never changed, as above.
        self._runs: dict[CampaignKey, dict[str, RunRow]] = {}
        self._con: duckdb.DuckDBPyConnection | None = None
        self._seq = 0
        self._lock = threading.Lock()
        # Held while the writer notes a flush in _heads and _runs, and by polled():
        # a reader takes a campaign's head and its runs as of one flush.
        self._noting = threading.Lock()
        self._keys_pending = False  # a rebuild left the primary keys to the next writer
        self._large_tables: set[str] = set()  # see _large

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
            self._load_heads()
            self._load_runs()
            # An empty database is wholly described by what this process writes.
            self._cache = RowCache(self.cache_max_rows, complete=empty)
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

        ``rebuild`` leaves them out: building and persisting the indexes was a
        quarter of a rebuild's time (0.65 s of 2.75 s per million events,
        measured), and a rebuilt file is often only verified or served
        read-only. A writer that opens it builds them here, once, in one
        transaction; a database holding duplicate keys fails here, loudly.
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
                logging.DEBUG if self._cache.complete and not self._seq else logging.INFO,
                "built the primary keys and indexes of %s (%s) in %.2fs",
                self.path, ", ".join(added), time.perf_counter() - began,
            )

    def _load_heads(self) -> None:
        heads: dict[str, dict[str, int]] = {}
        for ws, cid, pos in self.con.execute(
            "SELECT c.workspace_id, c.campaign_id, coalesce(p.position, 0) "
            "FROM campaigns c LEFT JOIN campaign_positions p USING (workspace_id, campaign_id)"
        ).fetchall():
            heads.setdefault(cid, {})[ws] = int(pos)
        self._heads = heads

    def _load_runs(self) -> None:
        runs: dict[CampaignKey, dict[str, RunRow]] = {}
        for t in self.con.execute(f"SELECT {RUNS.select_list} FROM runs").fetchall():
            row: RunRow = RUNS.from_tuple(t)
            runs.setdefault(row.campaign_key, {})[row.run_id] = row
        self._runs = runs

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

    # -- reads the writer needs ------------------------------------------------
    def offsets(self) -> dict[TopicPartition, int]:
        rows = self.con.execute(
            "SELECT topic, partition, next_offset FROM source_offsets"
        ).fetchall()
        return {(t, p): o for t, p, o in rows}

    def marks(self) -> dict[TopicPartition, LogMark]:
        """The last record applied per partition, where known (``projector.store.logmark``)."""
        rows = self.con.execute(
            "SELECT topic, partition, last_offset, last_digest FROM source_offsets "
            "WHERE last_offset IS NOT NULL AND last_digest IS NOT NULL"
        ).fetchall()
        return {(t, p): LogMark(o, d) for t, p, o, d in rows}

    def checkpoint(self) -> None:
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.Error as e:
            raise StoreError(f"checkpoint failed: {e}") from e

    def _large(self, table: Table) -> bool:
        """Whether ``table`` holds enough rows that keys in no order go in chunks.

        Counted (0.2 ms) until it is: a writer's tables do not shrink, so a
        large store asks nothing more on its flushes.
        """
        if table.name not in self._large_tables:
            n = self.con.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]  # type: ignore[index]
            if n >= KEY_CHUNK_MIN_ROWS:
                self._large_tables.add(table.name)
        return table.name in self._large_tables

    def load_prior(self, plan: LoadPlan) -> DictPrior:
        """Rows the plan names: from the cache, else one query per table."""
        prior = DictPrior()
        cache = self._cache
        run_ids = sorted({k[2] for k in plan.run_keys})  # a coarse filter (zone maps)
        prior.campaigns.update(self._load(CAMPAIGNS, plan.campaign_keys))
        prior.recipients.update(self._load(RECIPIENTS, plan.recipient_keys, runs=run_ids))
        ask: list[MessageKey] = []
        for mkey in plan.dlr_message_keys:
            known = cache.known_holders(mkey)
            if known is None:
                ask.append(mkey)
            else:
                prior.by_message[mkey] = list(known)
                for key in known:
                    row = cache.tables["recipients"].get(key)
                    if row is not None and row is not MISSING:
                        prior.recipients[key] = row
        if ask:
            holders: dict[MessageKey, set[RecipientKey]] = {mkey: set() for mkey in ask}
            found = {}
            # F12: a report reaches only recipients of the run it names, so
            # holders match on the run's key and the message id (through the
            # recipients_by_message index when chunked).
            chunked = self._large(RECIPIENTS)
            on = (*RUN_KEY, "message_id")
            for t in _semi_join(self.con, RECIPIENTS, on, ask, chunked=chunked):
                row = RECIPIENTS.from_tuple(t)
                key = row.key
                found[key] = prior.recipients.get(key, row)
                holders[(*key[:3], row.message_id)].add(key)
            cache.remember(RECIPIENTS.name, list(found), found)
            prior.recipients.update(found)
            for mkey, keys in holders.items():
                cache.remember_holders(mkey, keys)
        for key, row in prior.recipients.items():
            if row.message_id is None:
                continue
            mkey = (*key[:3], row.message_id)
            if mkey in plan.dlr_message_keys:
                holders_of = prior.by_message.setdefault(mkey, [])
                if key not in holders_of:
                    holders_of.append(key)
        prior.runs.update(self._load(RUNS, plan.run_keys))
        prior.snapshots.update(self._load(SNAPSHOTS, plan.run_keys))
        prior.messages.update(self._load(MESSAGES, plan.message_keys))
        prior.attempts.update(self._load(ATTEMPTS, plan.attempt_keys))
        batch_keys = set(plan.batch_keys) | submit_batch_keys(prior.recipients.values())
        prior.batches.update(self._load(BATCHES, batch_keys))
        return prior

    def _load(
        self, table: Table, keys: Iterable[Any], *, runs: list[str] | None = None
    ) -> dict[Any, Any]:
        found, unknown = self._cache.split(table.name, keys)
        if unknown:
            chunked = table is MESSAGES and self._large(MESSAGES)  # see _write
            rows = _select_keys(self.con, table, unknown, runs=runs or [], chunked=chunked)
            self._cache.remember(table.name, unknown, rows)
            found.update(rows)
        return found

    # -- the flush -------------------------------------------------------------
    def flush(
        self,
        events: list[Any],
        offsets: Mapping[TopicPartition, int],
        deadletters: Iterable[DeadLetter] = (),
        marks: Mapping[TopicPartition, LogMark] | None = None,
    ) -> FlushResult:
        """Apply a micro-batch and advance offsets atomically.

        ``offsets`` maps each source partition to the offset of the next
        record to read after this batch; ``marks`` names the last record
        applied from each (``projector.store.logmark``), where the caller knows it.
        ``events`` are models or ``FastEvent`` (the fast decoder's canonical
        JSON), mixed as the records came.
        """
        deadletters = list(deadletters)
        if self.merge_min_events and len(events) >= self.merge_min_events:
            return self._flush_merged(events, offsets, deadletters, marks)
        # Validated once, by the fast path: its structs read like the models.
        events = [ev.event() if isinstance(ev, FastEvent) else ev for ev in events]
        with self._lock:
            self._ensure_keys()
            seq = self._seq + 1
            with self._transaction("flush", seq):
                changes = fold(self.load_prior(plan_loads(events)), events) if events else Changes()
                changed = self._write(changes, seq)
                if deadletters:
                    self._write_deadletters(deadletters)
                if offsets:
                    self._write_offsets(offsets, marks or {})
            self._cache.apply(changes)
            # Runs before heads: a reader that sees a campaign's new position
            # must find rows at least that new (the API caches by position).
            # Both under _noting: polled() reads them as of the same flush.
            with self._noting:
                self._note_runs(changes)
                self._note_heads(changed, seq)
            self._seq = seq
            if self.check_invariants:
                self._check_memory(changes, changed, seq)
        return FlushResult(seq, changes.events, len(deadletters), frozenset(changed), changes)

    def _flush_merged(
        self,
        events: list[Any],
        offsets: Mapping[TopicPartition, int],
        deadletters: list[DeadLetter],
        marks: Mapping[TopicPartition, LogMark] | None,
    ) -> FlushResult:
        """``flush`` of a large batch: the fold as set-based SQL, off the GIL.

        The Python fold holds the GIL for ~12 us per event, which the
        consumer's loop needs too; DuckDB releases it while it merges. Events
        the fast decoder took arrive as canonical JSON already; only models
        are serialised here. The writer's row cache cannot follow rows
        changed in SQL, so it starts again, empty.
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
            # duckdb-python takes the GIL after every task of a query it runs
            # (to check for Ctrl-C), so in this thread DuckDB advances only as
            # often as the consumer's loop lets go of the GIL: a 20,000-event
            # merge took 6-8 s of wall time for 1 s of CPU. A second DuckDB
            # thread runs tasks without asking Python (measured: a query
            # beside a busy Python thread, 1.88 s on one thread, 0.21 s on two).
            # Set outside the transaction, as rebuild() does.
            boost = 0 < self.threads < MERGE_THREADS
            if boost:
                self.con.execute(f"SET threads = {MERGE_THREADS}")
            try:
                result = self._merge_transaction(stage, offsets, deadletters, marks, seq)
            finally:
                if boost:
                    self.con.execute(f"SET threads = {int(self.threads)}")
            return result

    def _merge_transaction(
        self,
        stage: pa.Table,
        offsets: Mapping[TopicPartition, int],
        deadletters: list[DeadLetter],
        marks: Mapping[TopicPartition, LogMark] | None,
        seq: int,
    ) -> FlushResult:
        """The body of ``_flush_merged``, under the writer's lock."""
        with self._transaction("flush", seq) as con:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE flush_events AS SELECT * FROM {typed('stage')}"
            )
            merged = merge_into(con, "flush_events")
            con.execute("DROP TABLE flush_events")
            changes = Changes(events=merged.events)
            changes.runs = _select_keys(con, RUNS, sorted(merged.run_keys))
            changes.campaigns = _select_keys(con, CAMPAIGNS, sorted(merged.campaigns))
            changed = set(merged.campaigns)
            _write_positions(con, changed, seq)
            if deadletters:
                self._write_deadletters(deadletters)
            if offsets:
                self._write_offsets(offsets, marks or {})
        self._cache = RowCache(self.cache_max_rows, complete=False)
        with self._noting:  # see flush
            self._note_runs(changes)
            self._note_heads(changed, seq)
        self._seq = seq
        if self.check_invariants:
            self._check_memory(changes, changed, seq)
        return FlushResult(seq, merged.events, len(deadletters), frozenset(changed), changes)

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
            _rollback(con)
            raise StoreError(f"{what} failed and was rolled back: {e}") from e
        except BaseException:
            _rollback(con)
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
            if not self._cache.complete or self._seq:
                raise StoreError(f"{self.path} is not empty: a set-based rebuild needs a new one")
            seq = self._seq + 1
            # Nothing reads the tables in insertion order (every query orders
            # by key), so DuckDB may insert the fold's rows in parallel. Six
            # interleaved pairs on 1M archived events: 1.70-1.82 s against
            # 1.81-1.90 s. Set outside the transaction: a failed one refuses
            # every statement until rolled back, the RESET included.
            self.con.execute("SET preserve_insertion_order = false")
            try:
                with self._transaction("rebuild", seq) as con:
                    n = fold_into(con, source, on_step, materialise=materialise, primary_keys=False)
                    deadletters = list(deadletters)
                    if deadletters:
                        self._write_deadletters(deadletters)
                    con.execute(
                        "INSERT INTO campaign_positions "
                        "SELECT workspace_id, campaign_id, ? FROM campaigns",
                        [seq],
                    )
                    if offsets:
                        self._write_offsets(offsets, marks or {})
            finally:
                self.con.execute("RESET preserve_insertion_order")
            self._seq = seq
            self._keys_pending = True
            self._load_runs()
            self._load_heads()
            # Rows now live only in DuckDB: later flushes read what they need.
            self._cache = RowCache(self.cache_max_rows, complete=False)
        return n

    def _write(self, changes: Changes, seq: int) -> set[str]:
        con = self.con
        changed: set[CampaignKey] = set()
        for table, rows in (
            (CAMPAIGNS, changes.campaigns),
            (RUNS, changes.runs),
            (BATCHES, changes.batches),
            (RECIPIENTS, changes.recipients),
            (MESSAGES, changes.messages),
            (SNAPSHOTS, changes.snapshots),
            (ATTEMPTS, changes.attempts),
        ):
            if not rows:
                continue
            if table is RECIPIENTS:
                # In list order (F11): run detail's top-500 then prunes row
                # groups by zone maps (measured 78 -> 16 ms on a 1M run).
                ordered = sorted(rows.values(), key=recipient_order)
            else:
                # By key: DuckDB's ART index upserts are much cheaper in order.
                ordered = [rows[k] for k in sorted(rows)]
            changed.update((r.workspace_id, r.campaign_id) for r in ordered)
            # Message ids are in no order: chunks keep the conflict check on
            # the index (see KEY_CHUNK); other keys start with run_id.
            chunked = table is MESSAGES and self._large(MESSAGES)
            step = _steps(len(ordered), chunked)
            for i in range(0, len(ordered), step):
                batch = table.to_arrow(ordered[i : i + step])  # noqa: F841 (read by DuckDB)
                con.execute(f"INSERT OR REPLACE INTO {table.name} SELECT * FROM batch")
        if changes.deleted_batches:
            gone = _key_table(BATCHES.key, sorted(changes.deleted_batches))  # noqa: F841
            con.execute(
                f"DELETE FROM batches WHERE ({', '.join(BATCHES.key)}) IN (SELECT * FROM gone)"
            )
        if changes.sent_range_dirty:
            dirty_keys = sorted(changes.sent_range_dirty)
            dirty = _key_table(RUN_KEY, dirty_keys)  # noqa: F841
            con.execute(
                """UPDATE runs SET first_sent_at = s.first, last_sent_at = s.last
                FROM (SELECT d.workspace_id, d.campaign_id, d.run_id,
                             min(rc.submitted_at) FILTER (WHERE rc.outcome = 'sent') AS first,
                             max(rc.submitted_at) FILTER (WHERE rc.outcome = 'sent') AS last
                      FROM dirty d
                      LEFT JOIN recipients rc USING (workspace_id, campaign_id, run_id)
                      GROUP BY ALL) s
                WHERE runs.workspace_id = s.workspace_id AND runs.campaign_id = s.campaign_id
                  AND runs.run_id = s.run_id"""
            )
            # Keep the returned rows (and the cache) equal to what was written.
            changes.runs.update(_select_keys(con, RUNS, dirty_keys))
        _write_positions(con, changed, seq)
        return changed

    def heads(self, campaign_id: str) -> Mapping[str, int]:
        """{workspace_id: position} of the campaigns with this id (F12: one per
        workspace), as last committed; empty if this store never saw one."""
        return self._heads.get(campaign_id, _NO_HEADS)

    def runs_of(self, campaign: CampaignKey) -> list[RunRow]:
        """The campaign's runs as last committed, from memory (any thread, any time)."""
        return list(self._runs.get(campaign, {}).values())

    def polled(self, workspace_id: str, campaign_id: str) -> tuple[Mapping[str, int], list[RunRow]]:
        """The heads of a campaign id (``heads``) and the runs of the workspace's
        campaign of that id, as of one flush (any thread); ``({}, [])`` if never seen.

        ``heads`` then ``runs_of`` may straddle a flush being noted: runs of
        flush n+1 read under the position of flush n, and a payload built
        from them cached there, while another reader caches flush n's own
        under it; one poller could then see a run go back.
        """
        with self._noting:
            heads = self._heads.get(campaign_id, _NO_HEADS)
            return heads, list(self._runs.get((workspace_id, campaign_id), {}).values())

    def _check_memory(self, changes: Changes, changed: set[CampaignKey], seq: int) -> None:
        """The invariant mode: memory against DuckDB for every campaign flush ``seq`` touched.

        Under the writer's lock, so DuckDB shows what this flush committed.
        """
        touched = set(changed) | set(changes.campaigns)
        touched.update(row.campaign_key for row in changes.runs.values())
        check_memory(self.con, seq, touched, self.polled)

    def _note_runs(self, changes: Changes) -> None:
        for row in changes.runs.values():
            key = row.campaign_key
            self._runs[key] = {**self._runs.get(key, {}), row.run_id: row}

    def _note_heads(self, changed: set[CampaignKey], seq: int) -> None:
        for ws, cid in changed:
            self._heads[cid] = {**self._heads.get(cid, _NO_HEADS), ws: seq}

    def _write_offsets(
        self, offsets: Mapping[TopicPartition, int], marks: Mapping[TopicPartition, LogMark]
    ) -> None:
        tps = list(offsets)
        off = pa.table(  # noqa: F841 (read by DuckDB by name)
            {
                "topic": [tp[0] for tp in tps],
                "partition": pa.array([tp[1] for tp in tps], pa.int32()),
                "next_offset": pa.array([offsets[tp] for tp in tps], pa.int64()),
                "last_offset": pa.array(
                    [m.offset if (m := marks.get(tp)) else None for tp in tps], pa.int64()
                ),
                "last_digest": pa.array(
                    [m.digest if (m := marks.get(tp)) else None for tp in tps], pa.int64()
                ),
            }
        )
        # A partition flushed without a mark (a rebuild from the archive, which
        # keeps no record values) loses its old one: it would name an older record.
        self.con.execute(
            "INSERT OR REPLACE INTO source_offsets "
            "(topic, partition, next_offset, last_offset, last_digest) "
            "SELECT topic, partition, next_offset, last_offset, last_digest FROM off"
        )

    def _write_deadletters(self, deadletters: list[DeadLetter]) -> None:
        unique = {(d.topic, d.partition, d.offset, d.item_index): d for d in deadletters}
        dl = pa.table(  # noqa: F841
            {
                "source_topic": [k[0] for k in unique],
                "source_partition": pa.array([k[1] for k in unique], pa.int32()),
                "source_offset": [k[2] for k in unique],
                "item_index": pa.array([k[3] for k in unique], pa.int32()),
                "reason_code": [d.reason_code for d in unique.values()],
                "reason": [d.reason[:2000] for d in unique.values()],
            }
        )
        self.con.execute("INSERT OR REPLACE INTO deadletters SELECT * FROM dl")


def recipient_order(r: RecipientRow) -> tuple[Any, ...]:
    """The physical order recipients are written in: by run, then as F11 lists
    them as far as the row alone tells (the naming batch's sequence, unknown
    last), so run detail's first page prunes row groups by zone maps."""
    return (*r.run_key, r.batch_sequence is None, r.batch_sequence or 0, r.recipient_id)


def _key_table(columns: tuple[str, ...], keys: list[tuple[Any, ...]]) -> pa.Table:
    """Composite keys (at least one) as an Arrow table, one column per key column."""
    values = zip(*keys, strict=True)
    return pa.table({name: pa.array(col) for name, col in zip(columns, values, strict=True)})


def _write_positions(con: duckdb.DuckDBPyConnection, changed: set[CampaignKey], seq: int) -> None:
    """Record ``seq`` as the position of every campaign this flush changed (the API's ETag)."""
    if not changed:
        return
    keys = sorted(changed)
    pos = _key_table(CAMPAIGN_KEY, keys).append_column(  # noqa: F841
        "position", pa.array([seq] * len(keys), pa.int64())
    )
    con.execute("INSERT OR REPLACE INTO campaign_positions SELECT * FROM pos")


def stored_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The projection layout version a database records; None for a new, empty one."""
    present = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_name = 'projector_meta'"
    ).fetchone()[0]  # type: ignore[index]
    if not present:
        return None
    row = con.execute("SELECT value FROM projector_meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def version_refusal(path: Path | str, found: int) -> str:
    """What to tell an operator whose database has another layout version."""
    return (
        f"{path} holds projections of layout version {found}; this projector reads "
        f"version {SCHEMA_VERSION} and would misread its rows. Rebuild it into a new file "
        f"with `projector replay --db NEW.duckdb` (from Kafka, or --from-archive DIR), then "
        f"switch to it with `projector swap --db NEW.duckdb` or restart on it "
        f"(docs/operations.md, \"Upgrading the projection layout\")."
    )


def _steps(n: int, chunked: bool) -> int:
    """Keys per statement for ``n`` keys in no order: chunks that reach the index, or all."""
    return KEY_CHUNK if chunked and n <= KEY_CHUNKED_MAX else max(n, 1)


def _semi_join(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    on: tuple[str, ...],
    keys: list[Any],
    *,
    where: str = "",
    params: list[Any] | None = None,
    chunked: bool = False,
) -> list[tuple]:
    """Rows of ``table`` whose ``on`` columns match one of ``keys`` (tuples).

    With ``chunked`` (keys in no order, a large table) the keys go
    ``KEY_CHUNK`` at a time, which DuckDB answers from an index; in one
    statement it would scan the table (5M rows: 3 ms against 220 ms).
    """
    using = ", ".join(on)
    sql = f"SELECT {table.select_list} FROM {table.name} SEMI JOIN key_table USING ({using})"
    step = _steps(len(keys), chunked)
    rows: list[tuple] = []
    for i in range(0, len(keys), step):
        chunk = keys[i : i + step]
        key_table = _key_table(on, chunk)  # noqa: F841 (read by DuckDB by name)
        rows.extend(con.execute(sql + where, params or []).fetchall())
    return rows


def _select_keys(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    keys: list[Any],
    *,
    runs: list[str] = (),
    chunked: bool = False,
) -> dict[Any, Any]:
    """Rows of ``table`` for ``keys`` (tuples in ``table.key`` order), by key.

    Keys of rows below a run are clustered (rows are written run by run), so
    one statement does; message ids are in no order and, in a large table
    (``chunked``), are asked in chunks (``_semi_join``).
    """
    where, params = "", []
    if runs and "run_id" in table.key:
        # A constant run list lets DuckDB skip row groups of other runs (zone maps).
        where = f" WHERE run_id IN ({', '.join('?' * len(runs))})"
        params = list(runs)
    out = {}
    for t in _semi_join(con, table, table.key, keys, where=where, params=params, chunked=chunked):
        row = table.from_tuple(t)
        out[tuple(getattr(row, k) for k in table.key)] = row
    return out


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


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
