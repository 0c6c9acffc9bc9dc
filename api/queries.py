"""Read SQL of the API. Identifiers come only from the table codecs; values are parameters."""

from __future__ import annotations

from projector.tables import BATCHES, CAMPAIGNS, RECIPIENTS, RUNS, SNAPSHOTS

CAMPAIGN = f"SELECT {CAMPAIGNS.select_list} FROM campaigns WHERE campaign_id = ?"
RUNS_OF = f"SELECT {RUNS.select_list} FROM runs WHERE campaign_id = ?"
RUN = f"SELECT {RUNS.select_list} FROM runs WHERE run_id = ?"
BATCHES_OF = f"SELECT {BATCHES.select_list} FROM batches WHERE run_id = ?"
# F11 order; NULLS LAST matches views.recipient_sort_key (unknown sequence last).
RECIPIENTS_OF = (
    f"SELECT {RECIPIENTS.select_list} FROM recipients WHERE run_id = ? "
    "ORDER BY batch_sequence ASC NULLS LAST, recipient_id ASC LIMIT ? OFFSET ?"
)
SNAPSHOT = f"SELECT {SNAPSHOTS.select_list} FROM snapshots WHERE run_id = ?"
# Auth and freshness of a campaign in one round trip: the hot path of status polling.
CAMPAIGN_HEAD = (
    "SELECT c.workspace_id, coalesce(p.position, 0) FROM campaigns c "
    "LEFT JOIN campaign_positions p ON p.campaign_id = c.campaign_id WHERE c.campaign_id = ?"
)
POSITION = "SELECT position FROM campaign_positions WHERE campaign_id = ?"
OFFSETS = "SELECT topic, partition, next_offset FROM source_offsets"
FLUSH_SEQ = "SELECT value FROM projector_meta WHERE key = 'flush_seq'"
# Tables a database must hold to be served.
REQUIRED_TABLES = ("campaigns", "runs", "batches", "recipients", "snapshots",
                   "campaign_positions", "source_offsets", "projector_meta")
TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"

# -- breakdowns, pages and lists (api.routes.breakdowns / lists / execution) ----------------


def _qualified(table_alias: str, select_list: str) -> str:
    return ", ".join(f"{table_alias}.{c.strip()}" for c in select_list.split(","))


# F11 recipient status over a recipients row ``rc``.
_F11_STATUS = (
    "CASE WHEN rc.outcome IS NULL THEN 'pending' "
    "WHEN rc.outcome <> 'sent' THEN rc.outcome "
    "WHEN rc.delivery_status = 'delivered' THEN 'delivered' "
    "WHEN rc.delivery_status IN ('undelivered', 'expired', 'rejected', 'failed') THEN 'failed' "
    "ELSE 'sent' END"
)
# A failed submit with attempts left (max_attempts defaults to 1) on a run not yet terminal.
_RETRYING = (
    "(rc.outcome = 'failed' AND r.terminal_status IS NULL "
    "AND rc.attempt < coalesce(r.max_attempts, 1))"
)
_EXHAUSTED = "(rc.outcome = 'failed' AND rc.attempt >= coalesce(r.max_attempts, 1))"
# The breakdown buckets: F11 with ``retrying`` taken out of ``failed``.
_BUCKET = f"CASE WHEN {_RETRYING} THEN 'retrying' ELSE {_F11_STATUS} END"
_BATCH_STATUS = (
    "CASE WHEN b.terminal_status IS NOT NULL THEN b.terminal_status "
    "WHEN b.started_at IS NOT NULL THEN 'running' ELSE 'pending' END"
)

STATS_RECIPIENTS = (
    f"SELECT count(*) FILTER (WHERE {_RETRYING}), count(*) FILTER (WHERE {_EXHAUSTED}) "
    "FROM recipients rc JOIN runs r ON r.run_id = rc.run_id WHERE rc.campaign_id = ?"
)
STATS_RETRY_BREAKDOWN = (
    "SELECT attempt, count(*) FROM recipients WHERE campaign_id = ? AND attempt IS NOT NULL "
    "GROUP BY attempt ORDER BY attempt"
)
STATS_ATTEMPTS = "SELECT count(*) FROM attempts WHERE campaign_id = ?"
STATS_BATCHES = (
    f"SELECT {_BATCH_STATUS} AS status, count(*) FROM batches b "
    "WHERE b.campaign_id = ? AND b.seen GROUP BY ALL"
)

# Batches of a campaign: newest run first (scheduled_at, unscheduled last, then run_id),
# then batch_sequence NULLS LAST, batch_id. ``?`` filters: status and run_id (NULL = any).
_BATCH_FILTER = (
    "FROM batches b JOIN runs r ON r.run_id = b.run_id WHERE b.campaign_id = ? AND b.seen "
    f"AND (CAST(? AS VARCHAR) IS NULL OR {_BATCH_STATUS} = ?) "
    "AND (CAST(? AS VARCHAR) IS NULL OR b.run_id = ?)"
)
BATCHES_PAGE = (
    f"SELECT {_qualified('b', BATCHES.select_list)} {_BATCH_FILTER} "
    "ORDER BY r.scheduled_at DESC NULLS LAST, b.run_id DESC, b.batch_sequence ASC NULLS LAST, "
    "b.batch_id ASC LIMIT ? OFFSET ?"
)
BATCHES_COUNT = f"SELECT count(*) {_BATCH_FILTER}"
# Live per-status counters of the recipients who belong to the given batches of a run
# (membership: batch.created, else the batch of the winning submit).
BATCH_COUNTERS = (
    f"SELECT coalesce(rc.created_batch_id, rc.submit_batch_id) AS batch_id, {_BUCKET} AS bucket, "
    "count(*) FROM recipients rc JOIN runs r ON r.run_id = rc.run_id "
    "WHERE rc.run_id = ? AND coalesce(rc.created_batch_id, rc.submit_batch_id) IN "
    "(SELECT unnest(CAST(? AS VARCHAR[]))) GROUP BY ALL"
)

# Recipients of a run, filtered by F11 status (NULL = any).
_RECIPIENT_FILTER = (
    f"FROM recipients rc WHERE rc.run_id = ? AND (CAST(? AS VARCHAR) IS NULL OR {_F11_STATUS} = ?)"
)
# Paging without OFFSET: an anchor every ``stride`` recipients (F11 order, NULL sequence
# last as the largest BIGINT), then a keyed top-N from the anchor at or before the offset.
# Two variants each: any status, or one F11 status (the parameter-free filter is cheaper).
_SEQ_KEY = "coalesce(rc.batch_sequence, 9223372036854775807)"
_ANY = "FROM recipients rc WHERE rc.run_id = ?"
_ONE = f"FROM recipients rc WHERE rc.run_id = ? AND {_F11_STATUS} = ?"


def _anchors(where: str) -> str:
    return (
        "SELECT pos, seq_key, recipient_id, total FROM ("
        f"SELECT {_SEQ_KEY} AS seq_key, rc.recipient_id, "
        f"row_number() OVER (ORDER BY {_SEQ_KEY}, rc.recipient_id) - 1 AS pos, "
        f"count(*) OVER () AS total {where}) WHERE pos % ? = 0 ORDER BY pos"
    )


def _from(where: str) -> str:
    # The winning message's report joined on the page only (a hash join on <= limit rows).
    return (
        "SELECT p.*, m.status, m.reported_at FROM ("
        f"SELECT {_qualified('rc', RECIPIENTS.select_list)}, {_SEQ_KEY} AS seq_key {where} "
        f"AND ({_SEQ_KEY} > ? OR ({_SEQ_KEY} = ? AND rc.recipient_id >= ?)) "
        f"ORDER BY {_SEQ_KEY}, rc.recipient_id LIMIT ?) p "
        "LEFT JOIN messages m ON m.message_id = p.message_id ORDER BY p.seq_key, p.recipient_id"
    )


RECIPIENT_ANCHORS_ANY = _anchors(_ANY)
RECIPIENT_ANCHORS_ONE = _anchors(_ONE)
RECIPIENTS_FROM_ANY = _from(_ANY)
RECIPIENTS_FROM_ONE = _from(_ONE)
# Every attempt of the given recipients of a run, with its message's delivery state (asked
# only for recipients whose winning attempt is above 1: attempt 1 is the winning submit).
ATTEMPTS_OF = (
    "SELECT a.recipient_id, a.attempt, a.outcome, a.message_id, a.batch_id, a.submitted_at, "
    "a.reason, m.status, m.reported_at FROM attempts a "
    "LEFT JOIN messages m ON m.message_id = a.message_id "
    "WHERE a.run_id = ? AND a.recipient_id IN (SELECT unnest(CAST(? AS VARCHAR[]))) "
    "ORDER BY a.recipient_id, a.attempt"
)
# The whole run for the CSV export: recipients in F11 order with their attempt count.
RECIPIENTS_EXPORT = (
    f"SELECT {_qualified('rc', RECIPIENTS.select_list)}, "
    "(SELECT count(*) FROM attempts a WHERE a.run_id = rc.run_id "
    "AND a.recipient_id = rc.recipient_id) "
    f"{_RECIPIENT_FILTER} ORDER BY rc.batch_sequence ASC NULLS LAST, rc.recipient_id ASC"
)

# Campaigns of a workspace, by campaign_id (stable while campaigns change).
CAMPAIGNS_PAGE = (
    f"SELECT {CAMPAIGNS.select_list} FROM campaigns WHERE workspace_id = ? "
    "ORDER BY campaign_id LIMIT ? OFFSET ?"
)
CAMPAIGNS_COUNT = "SELECT count(*) FROM campaigns WHERE workspace_id = ?"
RUNS_OF_MANY = (
    f"SELECT {RUNS.select_list} FROM runs "
    "WHERE campaign_id IN (SELECT unnest(CAST(? AS VARCHAR[])))"
)
