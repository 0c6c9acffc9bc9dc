"""Read SQL of the API. Identifiers come only from the table codecs; values are parameters.

Every read names its campaign by (workspace_id, campaign_id) and its run by
the campaign's key and ``run_id`` (F12: ids are unique only within their
parent), so a query can only ever see the caller's workspace's rows.
"""

from __future__ import annotations

from projector.store.tables import BATCHES, CAMPAIGNS, RECIPIENTS, RUNS, SNAPSHOTS

# Parameters: (workspace_id, campaign_id) and (workspace_id, campaign_id, run_id).
_CAMPAIGN = "workspace_id = ? AND campaign_id = ?"
_RUN = f"{_CAMPAIGN} AND run_id = ?"
_RUN_RC = "rc.workspace_id = ? AND rc.campaign_id = ? AND rc.run_id = ?"


def _qualified(table_alias: str, select_list: str) -> str:
    return ", ".join(f"{table_alias}.{c.strip()}" for c in select_list.split(","))


CAMPAIGN = f"SELECT {CAMPAIGNS.select_list} FROM campaigns WHERE {_CAMPAIGN}"
RUNS_OF = f"SELECT {RUNS.select_list} FROM runs WHERE {_CAMPAIGN}"
RUN = f"SELECT {RUNS.select_list} FROM runs WHERE {_RUN}"
BATCHES_OF = f"SELECT {BATCHES.select_list} FROM batches WHERE {_RUN}"
SNAPSHOT = f"SELECT {SNAPSHOTS.select_list} FROM snapshots WHERE {_RUN}"
# Every workspace's campaign of one id with its position: auth (the caller's
# workspace, else 403 if another has it, else 404) and freshness in one round
# trip, the hot path of status polling.
CAMPAIGN_HEADS = (
    "SELECT c.workspace_id, coalesce(p.position, 0) FROM campaigns c "
    "LEFT JOIN campaign_positions p USING (workspace_id, campaign_id) WHERE c.campaign_id = ?"
)
POSITION = f"SELECT position FROM campaign_positions WHERE {_CAMPAIGN}"
OFFSETS = "SELECT topic, partition, next_offset FROM source_offsets"
FLUSH_SEQ = "SELECT value FROM projector_meta WHERE key = 'flush_seq'"
SCHEMA_VERSION = "SELECT value FROM projector_meta WHERE key = 'schema_version'"
# Tables a database must hold to be served.
REQUIRED_TABLES = ("campaigns", "runs", "batches", "recipients", "snapshots", "run_insight",
                   "campaign_positions", "source_offsets", "projector_meta")
TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"

# -- recipients as F11 lists them -------------------------------------------------------------

# A recipient's listed batch_sequence (F11): its naming batch's (the row's own), else
# the sequence of its winning submit's batch, null while that batch's batch.created is
# unknown. ``rc`` below is this relation, with the recipient columns in table order.
_SUBMIT_BATCH = (
    "LEFT JOIN batches b ON rc.batch_sequence IS NULL AND b.workspace_id = rc.workspace_id "
    "AND b.campaign_id = rc.campaign_id AND b.run_id = rc.run_id "
    "AND b.batch_id = rc.submit_batch_id"
)
_LISTED_COLUMNS = (
    "rc.* REPLACE (coalesce(rc.batch_sequence, b.batch_sequence) AS batch_sequence)"
)
_LISTED_RUN = (
    f"(SELECT {_LISTED_COLUMNS} FROM recipients rc {_SUBMIT_BATCH} "
    f"WHERE {_RUN_RC})"
)
# One page in F11 order. Recipients named by a batch are written in this order, so
# their top-N prunes row groups by zone maps (a join would read the whole run); those
# named only by a submit (few) take their sequence from the batches and merge in.
RECIPIENTS_OF = (
    f"SELECT {RECIPIENTS.select_list} FROM ("
    f"(SELECT {RECIPIENTS.select_list} FROM recipients WHERE {_RUN} "
    "AND batch_sequence IS NOT NULL ORDER BY batch_sequence, recipient_id LIMIT ?) "
    f"UNION ALL (SELECT {_LISTED_COLUMNS} FROM recipients rc {_SUBMIT_BATCH} "
    f"WHERE {_RUN_RC} AND rc.batch_sequence IS NULL)) "
    "ORDER BY batch_sequence ASC NULLS LAST, recipient_id ASC LIMIT ? OFFSET ?"
)

# -- breakdowns, pages and lists (api.routes.breakdowns / lists / execution) ----------------

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
# The breakdown buckets: F11 with ``retrying`` taken out of ``failed``.
_BUCKET = f"CASE WHEN {_RETRYING} THEN 'retrying' ELSE {_F11_STATUS} END"
_BATCH_STATUS = (
    "CASE WHEN b.terminal_status IS NOT NULL THEN b.terminal_status "
    "WHEN b.started_at IS NOT NULL THEN 'running' ELSE 'pending' END"
)
_RUN_OF_RC = "JOIN runs r USING (workspace_id, campaign_id, run_id)"

# Retrying and exhausted recipients, the retry breakdown and the attempt rows, from the
# counts the fold keeps per run (``run_insight``: recipients by winning submit outcome and
# attempt; attempt rows), not a scan of the campaign's recipients and attempts.
_INSIGHT_CAMPAIGN = f"FROM run_insight WHERE {_CAMPAIGN}"
STATS_RECIPIENTS = (
    "SELECT coalesce(sum(i.n) FILTER (WHERE r.terminal_status IS NULL "
    "AND i.value < coalesce(r.max_attempts, 1)), 0), "
    "coalesce(sum(i.n) FILTER (WHERE i.value >= coalesce(r.max_attempts, 1)), 0) "
    "FROM run_insight i JOIN runs r USING (workspace_id, campaign_id, run_id) "
    "WHERE i.workspace_id = ? AND i.campaign_id = ? AND i.kind = 'attempt' "
    "AND i.label = 'failed'"
)
STATS_RETRY_BREAKDOWN = (
    f"SELECT value, sum(n) {_INSIGHT_CAMPAIGN} AND kind = 'attempt' "
    "GROUP BY value ORDER BY value"
)
STATS_ATTEMPTS = f"SELECT coalesce(sum(n), 0) {_INSIGHT_CAMPAIGN} AND kind = 'attempts'"
STATS_BATCHES = (
    f"SELECT {_BATCH_STATUS} AS status, count(*) FROM batches b "
    "WHERE b.workspace_id = ? AND b.campaign_id = ? AND b.seen GROUP BY ALL"
)

# Batches of a campaign: newest run first (scheduled_at, unscheduled last, then run_id),
# then batch_sequence NULLS LAST, batch_id. ``?`` filters: status and run_id (NULL = any).
_BATCH_FILTER = (
    "FROM batches b JOIN runs r USING (workspace_id, campaign_id, run_id) "
    "WHERE b.workspace_id = ? AND b.campaign_id = ? AND b.seen "
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
    f"count(*) FROM recipients rc {_RUN_OF_RC} "
    f"WHERE {_RUN_RC} "
    "AND coalesce(rc.created_batch_id, rc.submit_batch_id) IN "
    "(SELECT unnest(CAST(? AS VARCHAR[]))) GROUP BY ALL"
)

# Recipients of a run as listed, filtered by F11 status (NULL = any).
_RECIPIENT_FILTER = (
    f"FROM {_LISTED_RUN} rc WHERE (CAST(? AS VARCHAR) IS NULL OR {_F11_STATUS} = ?)"
)
# Paging without OFFSET: an anchor every ``stride`` recipients (F11 order, NULL sequence
# last as the largest BIGINT), then a keyed top-N from the anchor at or before the offset.
# Two variants each: any status, or one F11 status (the parameter-free filter is cheaper).
_SEQ_KEY = "coalesce(rc.batch_sequence, 9223372036854775807)"
_ANY = f"FROM {_LISTED_RUN} rc WHERE true"
_ONE = f"FROM {_LISTED_RUN} rc WHERE {_F11_STATUS} = ?"


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
        "LEFT JOIN messages m USING (workspace_id, campaign_id, run_id, message_id) "
        "ORDER BY p.seq_key, p.recipient_id"
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
    "LEFT JOIN messages m USING (workspace_id, campaign_id, run_id, message_id) "
    "WHERE a.workspace_id = ? AND a.campaign_id = ? AND a.run_id = ? "
    "AND a.recipient_id IN (SELECT unnest(CAST(? AS VARCHAR[]))) "
    "ORDER BY a.recipient_id, a.attempt"
)
# The whole run for the CSV export: recipients in F11 order with their attempt count.
RECIPIENTS_EXPORT = (
    f"SELECT {_qualified('rc', RECIPIENTS.select_list)}, "
    "(SELECT count(*) FROM attempts a WHERE a.workspace_id = rc.workspace_id "
    "AND a.campaign_id = rc.campaign_id AND a.run_id = rc.run_id "
    "AND a.recipient_id = rc.recipient_id) "
    f"{_RECIPIENT_FILTER} ORDER BY rc.batch_sequence ASC NULLS LAST, rc.recipient_id ASC"
)

# Campaigns of a workspace, by campaign_id (stable while campaigns change).
CAMPAIGNS_PAGE = (
    f"SELECT {CAMPAIGNS.select_list} FROM campaigns WHERE workspace_id = ? "
    "ORDER BY campaign_id LIMIT ? OFFSET ?"
)
CAMPAIGNS_COUNT = "SELECT count(*) FROM campaigns WHERE workspace_id = ?"
# Several nodes: a node's part of the list is filtered by partition in Python
# (murmur2 is not SQL), so it reads the ids first and the rows of a page after.
CAMPAIGN_IDS = "SELECT campaign_id FROM campaigns WHERE workspace_id = ? ORDER BY campaign_id"
CAMPAIGNS_NAMED = (
    f"SELECT {CAMPAIGNS.select_list} FROM campaigns WHERE workspace_id = ? "
    "AND campaign_id IN (SELECT unnest(CAST(? AS VARCHAR[]))) ORDER BY campaign_id"
)
RUNS_OF_MANY = (
    f"SELECT {RUNS.select_list} FROM runs WHERE workspace_id = ? "
    "AND campaign_id IN (SELECT unnest(CAST(? AS VARCHAR[])))"
)

# Sent recipients of a campaign without a terminal report, sent before a cutoff, per run
# (api.receipts: asked only when the run rows cannot tell that there are none).
RECEIPT_OVERDUE = (
    f"SELECT run_id, count(*) FROM recipients WHERE {_CAMPAIGN} AND outcome = 'sent' "
    "AND (delivery_status IS NULL OR delivery_status NOT IN "
    "('delivered', 'undelivered', 'expired', 'rejected', 'failed')) "
    "AND submitted_at < ? GROUP BY run_id"
)

# -- delivery insight: timeline, failure reasons, latency (api.routes.insight) ----------------
# Read from ``run_insight``: per run, how many recipients share each fact of their winning
# submit (F4) and winning report (F5), kept by the fold (``projector.fold.insight``). Each
# answer reads a run's few thousand counts at most, not its recipients. The counts are
# functions of the set of events (F1, F2), so are these answers.

_INSIGHT_RUN = f"FROM run_insight WHERE {_RUN}"
# (kind, minutes since the epoch, recipients): the finest bucket; coarser ones are rolled
# up from these in Python (1m, 5m and 1h buckets all align on whole minutes).
TIMELINE_MINUTES = f"SELECT label, value, n {_INSIGHT_RUN} AND kind = 'timeline'"

# A campaign's counts, or one run's (``?`` twice: run_id or NULL for every run).
_CAMPAIGN_OR_RUN = (
    f"FROM run_insight WHERE {_CAMPAIGN} AND (CAST(? AS VARCHAR) IS NULL OR run_id = ?)"
)


def _ranked(kind: str) -> str:
    """The ``top`` largest groups of ``kind`` (submit or report) by (label, text), one row
    each (``pos`` 1..top), and the rest folded into one row (``pos`` NULL) with their
    recipients summed and their groups counted. Ties: label, then text, null first.
    Parameters: the campaign, the run twice, top."""
    groups = (
        "SELECT label AS a, CASE WHEN text_null THEN NULL ELSE text END AS b, sum(n) AS n "
        f"{_CAMPAIGN_OR_RUN} AND kind = '{kind}' GROUP BY ALL"
    )
    return (
        f"WITH g AS ({groups}), r AS (SELECT *, row_number() OVER "
        "(ORDER BY n DESC, a ASC, b ASC NULLS FIRST) AS rn FROM g), "
        "t AS (SELECT CASE WHEN rn <= ? THEN rn END AS pos, * FROM r) "
        "SELECT pos, any_value(a), any_value(b), sum(n), count(*) FROM t "
        "GROUP BY pos ORDER BY pos NULLS LAST"
    )


# Failed and skipped submits by (outcome, reason); terminal non-delivered reports by
# (status, error code): texts as shown (control characters as spaces, cut), by the fold.
FAILED_SUBMITS = _ranked("submit")
FAILED_REPORTS = _ranked("report")

# Delivered recipients' latency in milliseconds (clamped at 0, 4 significant digits) with
# their count, and those whose report was stamped before their submit.
_LATENCY = f"SELECT value AS ms, n {_INSIGHT_RUN} AND kind = 'latency'"
# Percentiles by nearest rank: the value at rank ceil(p * n).
LATENCY_SUMMARY = (
    "SELECT any_value(total), "
    f"(SELECT coalesce(sum(n), 0) {_INSIGHT_RUN} AND kind = 'skewed'), min(ms), max(ms), "
    "min(ms) FILTER (WHERE cum >= ceil(0.50 * total)), "
    "min(ms) FILTER (WHERE cum >= ceil(0.90 * total)), "
    "min(ms) FILTER (WHERE cum >= ceil(0.99 * total)) FROM ("
    "SELECT ms, sum(n) OVER (ORDER BY ms) AS cum, sum(n) OVER () AS total "
    f"FROM ({_LATENCY}))"
)


def latency_histogram(edges_ms: tuple[int, ...]) -> str:
    """Delivered recipients per bucket: bucket i holds edges[i-1] <= ms < edges[i]
    (edges[-1] = 0 below the first edge; the last bucket is open-ended). Exact: every
    edge keeps its value under the rounding to 4 significant digits."""
    cases = " ".join(f"WHEN ms < {int(e)} THEN {i}" for i, e in enumerate(edges_ms))
    return (
        f"SELECT CASE {cases} ELSE {len(edges_ms)} END AS bucket, sum(n) "
        f"FROM ({_LATENCY}) GROUP BY ALL ORDER BY bucket"
    )
