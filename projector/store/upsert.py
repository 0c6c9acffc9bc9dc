"""Writing a fold's changes: every changed row upserted from Arrow, table by table.

Rows go in key order (DuckDB's index upserts are much cheaper in order), and
recipients in their list order, so that run detail's first page prunes row
groups by zone maps (docs/decisions/0004-recipients-in-list-order.md).
"""

from __future__ import annotations

from typing import Any

import duckdb

from projector.fold.prior import Changes
from projector.fold.rows import CampaignKey, InsightRow, RecipientRow
from projector.store.insight import merge_delta
from projector.store.keyed import key_table, select_keys, steps
from projector.store.tables import (
    ATTEMPTS,
    BATCHES,
    CAMPAIGNS,
    INSIGHT,
    MESSAGES,
    RECIPIENTS,
    RUN_KEY,
    RUNS,
    SNAPSHOTS,
)


def recipient_order(r: RecipientRow) -> tuple[Any, ...]:
    """The physical order recipients are written in: by run, then as F11 lists
    them as far as the row alone tells (the naming batch's sequence, unknown last)."""
    return (*r.run_key, r.batch_sequence is None, r.batch_sequence or 0, r.recipient_id)


def write_changes(
    con: duckdb.DuckDBPyConnection, changes: Changes, *, chunk_messages: bool
) -> set[CampaignKey]:
    """Upsert ``changes`` in the caller's transaction; returns the campaigns they touch.

    ``chunk_messages``: the messages table is large, so its keys (in no
    order) go in chunks that keep the conflict check on the index
    (``projector.store.keyed``).
    """
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
            ordered = sorted(rows.values(), key=recipient_order)
        else:
            ordered = [rows[k] for k in sorted(rows)]
        changed.update((r.workspace_id, r.campaign_id) for r in ordered)
        step = steps(len(ordered), chunk_messages and table is MESSAGES)
        for i in range(0, len(ordered), step):
            batch = table.to_arrow(ordered[i : i + step])  # noqa: F841 (read by DuckDB)
            con.execute(f"INSERT OR REPLACE INTO {table.name} SELECT * FROM batch")
    if changes.deleted_batches:
        gone = key_table(BATCHES.key, sorted(changes.deleted_batches))  # noqa: F841
        con.execute(
            f"DELETE FROM batches WHERE ({', '.join(BATCHES.key)}) IN (SELECT * FROM gone)"
        )
    if changes.sent_range_dirty:
        _recompute_sent_range(con, changes)
    if changes.insight:
        delta = INSIGHT.to_arrow(  # noqa: F841 (read by DuckDB)
            [InsightRow(*fact, n=n) for fact, n in sorted(changes.insight.items())]
        )
        con.execute(";\n".join(merge_delta("delta")))  # one call: one GIL round trip (0026)
    return changed


def _recompute_sent_range(con: duckdb.DuckDBPyConnection, changes: Changes) -> None:
    """first/last_sent_at of runs whose extreme sent recipient moved away (the fold
    folds growth in; only a shrink needs the recipients)."""
    dirty_keys = sorted(changes.sent_range_dirty)
    dirty = key_table(RUN_KEY, dirty_keys)  # noqa: F841
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
    # Keep the returned rows (and so the cache and memory) equal to what was written.
    changes.runs.update(select_keys(con, RUNS, dirty_keys))
