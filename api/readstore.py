"""The API's read interface over DuckDB: rows in, no payload shaping.

Works over the live in-process store (``ReadStore(store.cursor)``: each API
thread gets its own cursor on the writer's database and sees every committed
flush) or over a database file opened read-only (``ReadStore.open_file``).
DuckDB connections are not shared across threads, hence one cursor per
thread, created lazily and kept in a ``threading.local``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from api import queries as q
from api.errors import ReadStoreError
from projector.fold.insight import minute_start
from projector.fold.rows import (
    BatchRow,
    CampaignKey,
    CampaignRow,
    RecipientRow,
    RunKey,
    RunRow,
    SnapshotRow,
)
from projector.store.connection import connect, version_refusal
from projector.store.errors import StoreError
from projector.store.tables import BATCHES, CAMPAIGNS, RECIPIENTS, RUNS, SCHEMA_VERSION, SNAPSHOTS

TopicPartition = tuple[str, int]
# {workspace_id: position} of the campaigns that share one campaign id (F12: one per
# workspace); position = flush sequence of the last flush that changed the campaign.
Heads = Mapping[str, int]


class CampaignHead(NamedTuple):
    """The caller's campaign and its position, once found in its workspace."""

    workspace_id: str
    campaign_id: str
    position: int

    @property
    def key(self) -> CampaignKey:
        return (self.workspace_id, self.campaign_id)


CursorFactory = Callable[[], duckdb.DuckDBPyConnection]


class ReadStore:
    def __init__(
        self,
        cursor_factory: CursorFactory,
        *,
        owned: duckdb.DuckDBPyConnection | None = None,
        heads: Callable[[str], Heads] | None = None,
        polled: Callable[[str, str], tuple[Heads, list[RunRow]]] | None = None,
        static: bool = False,
    ) -> None:
        self._factory = cursor_factory
        # The live writer's in-memory heads per campaign id (``Store.heads``): a
        # poll of an unchanged campaign then touches DuckDB not at all.
        self._heads = heads
        # The live writer's head and committed runs of a campaign as of one
        # flush (``Store.polled``): a poll of a changed campaign is then built
        # without a query either, and from one state.
        self._polled = polled
        # A file opened read-only cannot change (DuckDB admits no writer beside
        # it): each campaign id's heads are read once and remembered.
        self._static_heads: dict[str, Heads] | None = {} if static else None
        self._local = threading.local()
        self._owned = owned  # closed by close(); None when the store belongs to someone else

    @classmethod
    def open_file(cls, path: Path | str, *, memory_limit: str = "1GB") -> ReadStore:
        """Open a projector database read-only; raises StoreLockedError if a writer holds it."""
        path = Path(path)
        if not path.is_file():
            raise ReadStoreError(f"database file {path} does not exist")
        con = connect(path, read_only=True, memory_limit=memory_limit)  # StoreError if locked
        try:
            present = {r[0] for r in con.execute(q.TABLES).fetchall()}
        except duckdb.Error as e:
            con.close()
            raise ReadStoreError(f"cannot read {path}: {e}") from e
        # Another layout first: its tables may differ too, and the rebuild is the remedy.
        version = con.execute(q.SCHEMA_VERSION).fetchone() if "projector_meta" in present else None
        if version is not None and int(version[0]) != SCHEMA_VERSION:
            con.close()
            raise ReadStoreError(version_refusal(path, int(version[0])))
        missing = [t for t in q.REQUIRED_TABLES if t not in present]
        if missing or version is None:
            con.close()
            raise ReadStoreError(
                f"{path} is not a projector database (missing "
                f"{', '.join(missing) or 'its layout version'})"
            )
        return cls(con.cursor, owned=con, static=True)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    # -- plumbing --------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            try:
                cur = self._factory()
            except (duckdb.Error, StoreError) as e:
                raise ReadStoreError(f"cannot open a read cursor: {e}") from e
            self._local.cursor = cur
        return cur

    def _all(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._cursor().execute(sql, params).fetchall()
        except duckdb.Error as e:
            raise ReadStoreError(f"read failed: {e}") from e

    def _one(self, sql: str, params: list[Any]) -> tuple[Any, ...] | None:
        try:
            return self._cursor().execute(sql, params).fetchone()
        except duckdb.Error as e:
            raise ReadStoreError(f"read failed: {e}") from e

    @contextmanager
    def consistent(self) -> Iterator[ReadStore]:
        """Reads inside see one committed state, even while the writer flushes.

        Without it a run detail could pair recipients of one flush with the
        summary of the next.
        """
        cur = self._cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
        except duckdb.Error as e:
            raise ReadStoreError(f"cannot begin a read transaction: {e}") from e
        try:
            yield self
        finally:
            try:
                cur.execute("ROLLBACK")  # nothing was written
            except duckdb.Error:
                pass

    # -- projections -----------------------------------------------------------
    def campaign(self, campaign: CampaignKey) -> CampaignRow | None:
        t = self._one(q.CAMPAIGN, list(campaign))
        return None if t is None else CAMPAIGNS.from_tuple(t)

    def runs_of(self, campaign: CampaignKey) -> list[RunRow]:
        return [RUNS.from_tuple(t) for t in self._all(q.RUNS_OF, list(campaign))]

    @property
    def beside_writer(self) -> bool:
        """``polled`` answers from the live writer's memory (safe on the event loop)."""
        return self._polled is not None

    def polled(self, workspace_id: str, campaign_id: str) -> tuple[Heads, list[RunRow]]:
        """The heads of a campaign id and the workspace's campaign's runs, as of one
        flush, from the writer's memory (only ``beside_writer``).

        Memory holds every campaign the writer committed, loaded at open and
        noted after each flush, so empty heads mean unknown as of the last
        flush noted.
        """
        if self._polled is None:
            raise ReadStoreError("polled() needs the writer's memory: check beside_writer first")
        return self._polled(workspace_id, campaign_id)

    def run(self, run: RunKey) -> RunRow | None:
        t = self._one(q.RUN, list(run))
        return None if t is None else RUNS.from_tuple(t)

    def batches_of(self, run: RunKey) -> list[BatchRow]:
        return [BATCHES.from_tuple(t) for t in self._all(q.BATCHES_OF, list(run))]

    def recipients_of(self, run: RunKey, limit: int, offset: int = 0) -> list[RecipientRow]:
        """Recipients in F11 order (listed batch_sequence NULLS LAST, recipient_id), one
        page; each row's ``batch_sequence`` is the one F11 lists it by."""
        rows = self._all(q.RECIPIENTS_OF, [*run, limit + offset, *run, limit, offset])
        return [RECIPIENTS.from_tuple(t) for t in rows]

    def snapshot(self, run: RunKey) -> SnapshotRow | None:
        t = self._one(q.SNAPSHOT, list(run))
        return None if t is None else SNAPSHOTS.from_tuple(t)

    def known_heads(self, campaign_id: str) -> Heads | None:
        """The heads of a campaign id if known without a query (None: ask ``campaign_heads``).

        Safe on the event loop: it never touches DuckDB.
        """
        if self._heads is not None:
            known = self._heads(campaign_id)
            if known:
                return known
        if self._static_heads is not None:
            return self._static_heads.get(campaign_id)
        return None

    def campaign_heads(self, campaign_id: str) -> Heads:
        """Every workspace's campaign of this id with its position; empty if none (one
        cheap query)."""
        known = self.known_heads(campaign_id)
        if known is not None:
            return known
        return self.stored_heads(campaign_id)

    def stored_heads(self, campaign_id: str) -> Heads:
        """``campaign_heads`` as DuckDB holds them, never the writer's memory: inside
        ``consistent()``, of the same state as the other reads there."""
        if self._static_heads is not None and campaign_id in self._static_heads:
            return self._static_heads[campaign_id]
        heads = {ws: int(pos) for ws, pos in self._all(q.CAMPAIGN_HEADS, [campaign_id])}
        if self._static_heads is not None and heads:
            self._static_heads[campaign_id] = heads
        return heads

    # -- bookkeeping -----------------------------------------------------------
    def position(self, campaign: CampaignKey) -> int:
        """Flush sequence of the last flush that changed the campaign; 0 if none."""
        t = self._one(q.POSITION, list(campaign))
        return 0 if t is None else int(t[0])

    def offsets(self) -> dict[TopicPartition, int]:
        return {(t, int(p)): int(o) for t, p, o in self._all(q.OFFSETS, [])}

    def flush_seq(self) -> int:
        t = self._one(q.FLUSH_SEQ, [])
        return 0 if t is None else int(t[0])

    # -- breakdowns, pages and lists ---------------------------------------------
    def stats_aggregates(self, campaign: CampaignKey) -> StatsAggregates:
        """What the stats view needs beyond the maintained run counters (SQL aggregates)."""
        key = list(campaign)
        retrying, exhausted = self._one(q.STATS_RECIPIENTS, key) or (0, 0)
        breakdown = {int(a): int(n) for a, n in self._all(q.STATS_RETRY_BREAKDOWN, key)}
        attempts = self._one(q.STATS_ATTEMPTS, key)
        batches = {str(s): int(n) for s, n in self._all(q.STATS_BATCHES, key)}
        return StatsAggregates(
            retrying=int(retrying or 0),
            exhausted=int(exhausted or 0),
            retry_breakdown=breakdown,
            total_attempts=int(attempts[0]) if attempts else 0,
            batch_counts=batches,
        )

    def batches_page(
        self,
        campaign: CampaignKey,
        *,
        status: str | None,
        run_id: str | None,
        limit: int,
        offset: int,
    ) -> tuple[int, list[BatchRow]]:
        """Listed batches of a campaign (filtered), their total and one page."""
        params: list[Any] = [*campaign, status, status, run_id, run_id]
        total = self._one(q.BATCHES_COUNT, params)
        rows = self._all(q.BATCHES_PAGE, [*params, limit, offset])
        return (int(total[0]) if total else 0), [BATCHES.from_tuple(t) for t in rows]

    def batch_counters(self, run: RunKey, batch_ids: list[str]) -> dict[str, dict[str, int]]:
        """Per batch of a run: recipients (by membership) per breakdown bucket."""
        out: dict[str, dict[str, int]] = {}
        if not batch_ids:
            return out
        for batch_id, bucket, n in self._all(q.BATCH_COUNTERS, [*run, batch_ids]):
            out.setdefault(batch_id, {})[bucket] = int(n)
        return out

    def recipient_anchors(
        self, run: RunKey, *, status: str | None, stride: int
    ) -> RecipientAnchors:
        """How many known recipients match, and the sort key of every ``stride``-th one."""
        if status is None:
            rows = self._all(q.RECIPIENT_ANCHORS_ANY, [*run, stride])
        else:
            rows = self._all(q.RECIPIENT_ANCHORS_ONE, [*run, status, stride])
        total = int(rows[0][3]) if rows else 0
        return RecipientAnchors(total, stride, [(int(t[1]), t[2]) for t in rows])

    def recipients_from(
        self, run: RunKey, *, status: str | None, anchor: tuple[int, str], limit: int
    ) -> list[tuple[RecipientRow, str | None, datetime | None]]:
        """Up to ``limit`` recipients in F11 order from ``anchor`` (inclusive), each with
        its winning message's report status and time."""
        seq_key, recipient_id = anchor
        if status is None:
            sql, params = q.RECIPIENTS_FROM_ANY, [*run]
        else:
            sql, params = q.RECIPIENTS_FROM_ONE, [*run, status]
        rows = self._all(sql, [*params, seq_key, seq_key, recipient_id, limit])
        width = len(RECIPIENTS.columns)
        return [(RECIPIENTS.from_tuple(t[:width]), t[width + 1], t[width + 2]) for t in rows]

    def attempts_of(
        self, run: RunKey, recipient_ids: list[str]
    ) -> dict[str, list[tuple[Any, ...]]]:
        """Every attempt of these recipients, by recipient, in attempt order:
        (attempt, outcome, message_id, batch_id, submitted_at, reason, delivery status,
        delivery reported_at)."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        if not recipient_ids:
            return out
        for t in self._all(q.ATTEMPTS_OF, [*run, recipient_ids]):
            out.setdefault(t[0], []).append(t[1:])
        return out

    def export_recipients(
        self, run: RunKey, *, status: str | None, chunk_rows: int = 2000
    ) -> Iterator[list[tuple[RecipientRow, int]]]:
        """The whole run's recipients in F11 order, in chunks, with their attempt counts.

        Uses a cursor of its own (one query: one committed state), closed when
        the iterator ends or is closed, so it can be consumed from any thread
        while the thread's own cursor serves other reads. Python holds one
        chunk at a time.
        """
        try:
            cur = self._factory()
        except (duckdb.Error, StoreError) as e:
            raise ReadStoreError(f"cannot open a read cursor: {e}") from e
        try:
            try:
                cur.execute(q.RECIPIENTS_EXPORT, [*run, status, status])
            except duckdb.Error as e:
                raise ReadStoreError(f"read failed: {e}") from e
            while True:
                try:
                    rows = cur.fetchmany(chunk_rows)
                except duckdb.Error as e:
                    raise ReadStoreError(f"read failed: {e}") from e
                if not rows:
                    return
                yield [(RECIPIENTS.from_tuple(t[:-1]), int(t[-1])) for t in rows]
        finally:
            cur.close()

    def campaigns_page(
        self, workspace_id: str, *, limit: int, offset: int
    ) -> tuple[int, list[CampaignRow]]:
        total = self._one(q.CAMPAIGNS_COUNT, [workspace_id])
        rows = self._all(q.CAMPAIGNS_PAGE, [workspace_id, limit, offset])
        return (int(total[0]) if total else 0), [CAMPAIGNS.from_tuple(t) for t in rows]

    def campaign_ids(self, workspace_id: str) -> list[str]:
        """Every campaign id of the workspace, in the list's order (``campaigns_page``)."""
        return [t[0] for t in self._all(q.CAMPAIGN_IDS, [workspace_id])]

    def campaigns_named(self, workspace_id: str, campaign_ids: list[str]) -> list[CampaignRow]:
        """These campaigns of one workspace, in the list's order."""
        if not campaign_ids:
            return []
        rows = self._all(q.CAMPAIGNS_NAMED, [workspace_id, campaign_ids])
        return [CAMPAIGNS.from_tuple(t) for t in rows]

    def runs_of_many(self, workspace_id: str, campaign_ids: list[str]) -> dict[str, list[RunRow]]:
        """The runs of these campaigns of one workspace, by campaign id."""
        out: dict[str, list[RunRow]] = {c: [] for c in campaign_ids}
        if not campaign_ids:
            return out
        for t in self._all(q.RUNS_OF_MANY, [workspace_id, campaign_ids]):
            run = RUNS.from_tuple(t)
            out.setdefault(run.campaign_id, []).append(run)
        return out


    def receipt_overdue(self, campaign: CampaignKey, cutoff: datetime) -> dict[str, int]:
        """Per run: sent recipients without a terminal report whose send is before ``cutoff``."""
        return {str(r): int(n) for r, n in self._all(q.RECEIPT_OVERDUE, [*campaign, cutoff])}

    # -- delivery insight ----------------------------------------------------------------
    def timeline_minutes(self, run: RunKey) -> list[tuple[str, datetime, int]]:
        """Recipients of a run per (kind, UTC minute of the winning event): kinds ``sent``,
        ``failed``, ``skipped`` (winning submit) and ``delivered``, ``failed_delivery``
        (winning terminal report); minutes as UTC datetimes."""
        rows = self._all(q.TIMELINE_MINUTES, list(run))
        return [(str(k), minute_start(m), int(n)) for k, m, n in rows]

    def failure_groups(self, campaign: CampaignKey, run_id: str | None, *, top: int
                       ) -> FailureGroups:
        """Failed and skipped submits by (outcome, reason) and terminal non-delivered
        reports by (status, error_code), each as its ``top`` largest groups and the rest."""
        params = [*campaign, run_id, run_id, top]
        return FailureGroups(
            _ranked_groups(self._all(q.FAILED_SUBMITS, params)),
            _ranked_groups(self._all(q.FAILED_REPORTS, params)),
        )

    def latency(self, run: RunKey, edges_ms: tuple[int, ...]) -> LatencyAggregates:
        """Delivered recipients' latency (ms, clamped at 0, 4 significant digits): count,
        clock-skewed count, min, max, nearest-rank p50/p90/p99, counts per histogram bucket."""
        t = self._one(q.LATENCY_SUMMARY, [*run, *run]) or (0, 0, None, None, None, None, None)
        hist = {int(b): int(n) for b, n in self._all(q.latency_histogram(edges_ms), list(run))}
        n, skewed, lo, hi, p50, p90, p99 = t
        return LatencyAggregates(
            count=int(n or 0),
            skewed=int(skewed or 0),
            min_ms=None if lo is None else int(lo),
            max_ms=None if hi is None else int(hi),
            p50_ms=None if p50 is None else int(p50),
            p90_ms=None if p90 is None else int(p90),
            p99_ms=None if p99 is None else int(p99),
            histogram=[hist.get(i, 0) for i in range(len(edges_ms) + 1)],
        )


class StatsAggregates(NamedTuple):
    retrying: int
    exhausted: int
    retry_breakdown: dict[int, int]
    total_attempts: int
    batch_counts: dict[str, int]


class RecipientAnchors(NamedTuple):
    """Where each ``stride``-th recipient of a filtered run listing starts (paging without
    OFFSET: a page reads at most ``stride - 1 + limit`` rows from its anchor)."""

    total: int
    stride: int
    keys: list[tuple[int, str]]  # (batch_sequence or max BIGINT, recipient_id)


# (a, b, recipients) per listed group, largest first; then (recipients, groups) of the rest.
Groups = tuple[list[tuple[str, str | None, int]], tuple[int, int]]


def _ranked_groups(rows: list[tuple[Any, ...]]) -> Groups:
    listed: list[tuple[str, str | None, int]] = []
    rest = (0, 0)
    for pos, a, b, n, groups in rows:
        if pos is None:
            rest = (int(n or 0), int(groups or 0))
        else:
            listed.append((str(a), b, int(n)))
    return listed, rest


class FailureGroups(NamedTuple):
    submits: Groups  # (outcome, reason)
    reports: Groups  # (status, error_code)


class LatencyAggregates(NamedTuple):
    count: int
    skewed: int
    min_ms: int | None
    max_ms: int | None
    p50_ms: int | None
    p90_ms: int | None
    p99_ms: int | None
    histogram: list[int]  # delivered recipients per bucket, the open-ended last included
