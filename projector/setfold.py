"""The fold as set-based SQL, for rebuilding an empty database from validated events.

``projector.fold`` applies events one at a time in Python; a rebuild of a year
of history through it runs at ~15k events/s, bounded by per-event Python work
and per-flush DuckDB upserts. Over a *complete* set of events every rule of
F1-F11 is a choice of winner or a count, which DuckDB computes for the whole
set in a few vectorised passes:

* winners (F3-F6, F10, the campaign definition): ``row_number()`` over the
  rule's ordering key (``occurred_at``, ``event_id``, attempt, DLR class);
* counters (F7, F9, F11): aggregates over the winning rows;
* F1 and F2 hold by construction: a set has no order and no duplicates that
  a winner or a count could see.

This is a second statement of the rules, so it must never drift from the
Python fold: ``tests/fold/test_setfold.py`` folds hypothesis-generated
histories both ways and requires identical tables, and the replay tests
compare a live database with an archive rebuild through ``projector verify``.
It only builds a database from nothing; incremental folding stays in Python.

Input: a relation with ``event_type`` and ``event`` (the validated event as
``model_dump_json`` text, i.e. defaults filled and timestamps in UTC), which is
what the archive stores.
"""

from __future__ import annotations

import json

import duckdb

from projector.rows import DLR_TERMINAL

# One JSON parse per event: every scalar any rule needs, by position.
_PATHS = (
    "event_id", "occurred_at", "workspace_id", "campaign_id", "run_id", "batch_id",
    "name", "channel", "channel_name", "provider", "campaign_type",
    "scheduled_at", "recipient_count", "batch_size", "total_batches", "max_attempts",
    "error.code", "error.message",
    "frozen_at", "sender_id", "template", "personalized", "body",
    "cost.total_cost", "cost.currency_units",
    "batch_sequence", "recipient_id", "phone_number", "outcome", "message_id", "attempt",
    "reason", "status", "error_code",
)  # fmt: skip
_AT = {p: i + 1 for i, p in enumerate(_PATHS)}


def _j(path: str, cast: str | None = None) -> str:
    expr = f"j[{_AT[path]}]"
    return f"CAST({expr} AS {cast})" if cast else expr


_TERMINAL_DLR = ", ".join(f"'{s}'" for s in sorted(DLR_TERMINAL))
_FAILED_DLR = ", ".join(f"'{s}'" for s in sorted(DLR_TERMINAL - {"delivered"}))
# Types whose nested values (lists, objects) are read from the document later.
_NESTED = ("batch.created", "batch.failed", "run.snapshot_frozen")


def _events_sql(source: str) -> str:
    paths = ", ".join(f"'$.{p}'" for p in _PATHS)
    nested = ", ".join(f"'{t}'" for t in _NESTED)
    return f"""
CREATE OR REPLACE TEMP TABLE sf_e AS
SELECT type, {_j("event_id")} AS event_id, {_j("occurred_at", "TIMESTAMPTZ")} AS ev_at,
  {_j("workspace_id")} AS workspace_id, {_j("campaign_id")} AS campaign_id,
  {_j("run_id")} AS run_id, {_j("batch_id")} AS batch_id,
  {_j("name")} AS name, {_j("channel")} AS channel, {_j("channel_name")} AS channel_name,
  {_j("provider")} AS provider, {_j("campaign_type")} AS campaign_type,
  {_j("scheduled_at", "TIMESTAMPTZ")} AS scheduled_at,
  {_j("recipient_count", "BIGINT")} AS recipient_count,
  {_j("batch_size", "BIGINT")} AS batch_size, {_j("total_batches", "BIGINT")} AS total_batches,
  {_j("max_attempts", "BIGINT")} AS max_attempts,
  {_j("error.code")} AS error_code_, {_j("error.message")} AS error_message,
  {_j("frozen_at", "TIMESTAMPTZ")} AS frozen_at, {_j("sender_id")} AS sender_id,
  {_j("template")} AS template, {_j("personalized", "BOOLEAN")} AS personalized,
  {_j("body")} AS body, {_j("cost.total_cost", "DOUBLE")} AS total_cost,
  {_j("cost.currency_units")} AS currency_units,
  {_j("batch_sequence", "BIGINT")} AS batch_sequence, {_j("recipient_id")} AS recipient_id,
  {_j("phone_number")} AS phone_number, {_j("outcome")} AS outcome,
  {_j("message_id")} AS message_id, {_j("attempt", "BIGINT")} AS attempt,
  {_j("reason")} AS reason, {_j("status")} AS status, {_j("error_code")} AS error_code,
  CASE WHEN type IN ({nested}) THEN event END AS doc
FROM (SELECT event_type AS type, event, json_extract_string(event, [{paths}]) AS j
      FROM {source})
"""


def _latest(where: str, key: str) -> str:
    """Rows of sf_e matching ``where``, the latest event per ``key`` (F-rule "latest wins")."""
    return (
        f"SELECT * FROM sf_e WHERE {where} QUALIFY row_number() OVER "
        f"(PARTITION BY {key} ORDER BY ev_at DESC, event_id DESC) = 1"
    )


def _earliest(where: str, key: str) -> str:
    """The earliest event per ``key`` (terminal and start events: F3, F6)."""
    return (
        f"SELECT * FROM sf_e WHERE {where} QUALIFY row_number() OVER "
        f"(PARTITION BY {key} ORDER BY ev_at, event_id) = 1"
    )


_STEPS = (
    # The run each run-bearing event names; identity from its events (F3: a run
    # known only from later events exists).
    """CREATE OR REPLACE TEMP TABLE sf_runs AS
SELECT run_id, min(campaign_id) AS campaign_id, min(workspace_id) AS workspace_id,
       max(ev_at) AS updated_at
FROM sf_e WHERE run_id IS NOT NULL GROUP BY run_id""",
    # Every submit attempt is kept; within an attempt the later, then larger id (F4).
    """CREATE OR REPLACE TEMP TABLE sf_sub AS
SELECT * FROM sf_e WHERE type = 'message.submitted'
QUALIFY row_number() OVER (PARTITION BY run_id, recipient_id, attempt
                           ORDER BY ev_at DESC, event_id DESC) = 1""",
    """INSERT INTO attempts BY NAME
SELECT run_id, recipient_id, attempt, campaign_id, ev_at AS submitted_at, event_id, outcome,
       message_id, batch_id, reason
FROM sf_sub""",
    # F5: terminal beats non-terminal, then later, then larger id.
    f"""INSERT INTO messages BY NAME
SELECT message_id, run_id, campaign_id, status, ev_at AS reported_at, event_id, error_code
FROM sf_e WHERE type = 'message.dlr'
QUALIFY row_number() OVER (PARTITION BY message_id
    ORDER BY status IN ({_TERMINAL_DLR}) DESC, ev_at DESC, event_id DESC) = 1""",
    # F11 membership: the smallest (batch_sequence, batch_id) naming a recipient.
    """CREATE OR REPLACE TEMP TABLE sf_members AS
SELECT run_id, m.recipient_id AS recipient_id, m.phone_number AS phone_number,
       batch_sequence, batch_id
FROM (SELECT run_id, batch_id, batch_sequence,
             unnest(from_json(json_extract(doc, '$.recipients'),
                              '[{"recipient_id": "VARCHAR", "phone_number": "VARCHAR"}]')) AS m
      FROM sf_e WHERE type = 'batch.created')
QUALIFY row_number() OVER (PARTITION BY run_id, recipient_id
                           ORDER BY batch_sequence, batch_id) = 1""",
    # F4: the highest attempt wins, then the later, then the larger id.
    """INSERT INTO recipients BY NAME
WITH w AS (
  SELECT * FROM sf_sub QUALIFY row_number() OVER (PARTITION BY run_id, recipient_id
      ORDER BY attempt DESC, ev_at DESC, event_id DESC) = 1),
keys AS (SELECT run_id, recipient_id FROM sf_members
         UNION SELECT run_id, recipient_id FROM w)
SELECT k.run_id, k.recipient_id, r.campaign_id, m.phone_number, m.batch_sequence,
       m.batch_id AS created_batch_id, w.attempt, w.ev_at AS submitted_at,
       w.event_id AS submit_event_id, w.outcome, w.message_id, w.batch_id AS submit_batch_id,
       w.phone_number AS submit_phone, w.reason, msg.status AS delivery_status
FROM keys k JOIN sf_runs r USING (run_id)
LEFT JOIN sf_members m USING (run_id, recipient_id)
LEFT JOIN w USING (run_id, recipient_id)
LEFT JOIN messages msg ON msg.message_id = w.message_id""",
    # F6: created latest, started and terminal earliest; counts by winning submits.
    f"""INSERT INTO batches BY NAME
WITH cr AS ({_latest("type = 'batch.created'", "run_id, batch_id")}),
st AS ({_earliest("type = 'batch.started'", "run_id, batch_id")}),
te AS ({_earliest("type IN ('batch.completed', 'batch.failed')", "run_id, batch_id")}),
seen AS (SELECT DISTINCT run_id, batch_id FROM sf_e WHERE type LIKE 'batch.%'),
cnt AS (SELECT run_id, submit_batch_id AS batch_id,
               count(*) FILTER (WHERE outcome = 'sent') AS sent_count,
               count(*) FILTER (WHERE outcome = 'failed') AS failed_count
        FROM recipients WHERE submit_batch_id IS NOT NULL GROUP BY ALL),
keys AS (SELECT run_id, batch_id FROM seen
         UNION SELECT run_id, batch_id FROM cnt WHERE sent_count > 0 OR failed_count > 0)
SELECT k.run_id, k.batch_id, r.campaign_id, seen.run_id IS NOT NULL AS seen,
       cr.batch_sequence, coalesce(json_array_length(cr.doc, '$.recipients'), 0)
           AS recipient_count,
       cr.ev_at AS created_at, cr.event_id AS created_event_id,
       st.ev_at AS started_at, st.event_id AS started_event_id,
       substr(te.type, 7) AS terminal_status, te.ev_at AS terminal_at,
       te.event_id AS terminal_event_id, json_extract(te.doc, '$.error_detail') AS error_detail,
       coalesce(cnt.sent_count, 0) AS sent_count, coalesce(cnt.failed_count, 0) AS failed_count
FROM keys k JOIN sf_runs r USING (run_id)
LEFT JOIN seen USING (run_id, batch_id) LEFT JOIN cr USING (run_id, batch_id)
LEFT JOIN st USING (run_id, batch_id) LEFT JOIN te USING (run_id, batch_id)
LEFT JOIN cnt USING (run_id, batch_id)""",
    # F10: the latest snapshot wins.
    f"""INSERT INTO snapshots BY NAME
SELECT run_id, campaign_id, ev_at AS event_at, event_id, frozen_at, channel, provider, sender_id,
       template, personalized, body, total_cost, currency_units, recipient_count,
       from_json(json_extract(doc, '$.recipients'), '["VARCHAR"]') AS recipients
FROM ({_latest("type = 'run.snapshot_frozen'", "run_id")})""",
    # F3, F7, F8, F11: the run's winners and its counters over recipients and batches.
    f"""INSERT INTO runs BY NAME
WITH sc AS ({_latest("type = 'run.scheduled'", "run_id")}),
cl AS ({_earliest("type = 'run.claimed'", "run_id")}),
te AS ({_earliest("type IN ('run.completed', 'run.failed', 'run.cancelled')", "run_id")}),
sn AS (SELECT DISTINCT run_id FROM sf_e WHERE type = 'run.snapshot_frozen'),
rc AS (SELECT run_id, count(*) AS known_recipients,
              count(*) FILTER (WHERE outcome = 'sent') AS sent,
              count(*) FILTER (WHERE outcome = 'failed') AS failed,
              count(*) FILTER (WHERE outcome = 'skipped') AS skipped,
              count(*) FILTER (WHERE outcome = 'sent' AND delivery_status = 'delivered')
                  AS delivered,
              count(*) FILTER (WHERE outcome = 'sent' AND delivery_status IN ({_FAILED_DLR}))
                  AS failed_delivery,
              min(submitted_at) FILTER (WHERE outcome = 'sent') AS first_sent_at,
              max(submitted_at) FILTER (WHERE outcome = 'sent') AS last_sent_at
       FROM recipients GROUP BY run_id),
bc AS (SELECT run_id, count(*) FILTER (WHERE seen) AS batches_seen,
              count(*) FILTER (WHERE terminal_status = 'completed') AS batches_completed
       FROM batches GROUP BY run_id)
SELECT r.run_id, r.campaign_id, r.workspace_id, sc.scheduled_at,
       coalesce(sc.recipient_count, 0) AS recipient_count, sc.batch_size,
       sc.total_batches AS declared_total_batches, sc.max_attempts,
       sc.ev_at AS scheduled_event_at, sc.event_id AS scheduled_event_id,
       cl.ev_at AS claimed_at, cl.event_id AS claimed_event_id,
       substr(te.type, 5) AS terminal_status, te.ev_at AS terminal_at,
       te.event_id AS terminal_event_id, te.error_code_ AS error_code,
       te.error_message AS error_message, sn.run_id IS NOT NULL AS has_snapshot,
       r.updated_at, coalesce(rc.known_recipients, 0) AS known_recipients,
       coalesce(rc.sent, 0) AS sent, coalesce(rc.failed, 0) AS failed,
       coalesce(rc.skipped, 0) AS skipped, coalesce(rc.delivered, 0) AS delivered,
       coalesce(rc.failed_delivery, 0) AS failed_delivery,
       coalesce(bc.batches_seen, 0) AS batches_seen,
       coalesce(bc.batches_completed, 0) AS batches_completed,
       rc.first_sent_at, rc.last_sent_at
FROM sf_runs r LEFT JOIN sc USING (run_id) LEFT JOIN cl USING (run_id)
LEFT JOIN te USING (run_id) LEFT JOIN sn USING (run_id) LEFT JOIN rc USING (run_id)
LEFT JOIN bc USING (run_id)""",
    # The campaign: its tenant (smallest id if events disagree, as in the
    # Python fold), its latest event, its latest definition.
    f"""INSERT INTO campaigns BY NAME
WITH d AS ({_latest("type = 'campaign.defined'", "campaign_id")})
SELECT c.campaign_id, c.workspace_id, d.name, d.channel, d.channel_name, d.provider,
       d.campaign_type, d.ev_at AS defined_at, d.event_id AS defined_event_id, c.updated_at
FROM (SELECT campaign_id, min(workspace_id) AS workspace_id, max(ev_at) AS updated_at
      FROM sf_e GROUP BY campaign_id) c
LEFT JOIN d USING (campaign_id)""",
)

_TEMP = ("sf_e", "sf_runs", "sf_sub", "sf_members")


def fold_into(con: duckdb.DuckDBPyConnection, source: str) -> int:
    """Fold every event of ``source`` into the (empty) projection tables; returns the count.

    ``source`` is a SQL relation (a table name, or ``read_parquet(...)`` in
    parentheses) with ``event_type`` and ``event`` columns. Runs in the
    caller's transaction.
    """
    con.execute(_events_sql(source))
    n = con.execute("SELECT count(*) FROM sf_e").fetchone()[0]  # type: ignore[index]
    for step in _STEPS:
        con.execute(step)
    _normalise_error_details(con)
    for t in _TEMP:
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return int(n)


def _normalise_error_details(con: duckdb.DuckDBPyConnection) -> None:
    """Store ``error_detail`` as the Python fold does (``json.dumps(sort_keys=True)``).

    DuckDB writes JSON compactly and keeps key order; the rows are few (failed
    batches), so Python re-serialises them.
    """
    rows = con.execute(
        "SELECT run_id, batch_id, error_detail FROM batches WHERE error_detail IS NOT NULL"
    ).fetchall()
    fixed = [
        (json.dumps(json.loads(detail), sort_keys=True), run_id, batch_id)
        for run_id, batch_id, detail in rows
    ]
    if fixed:
        con.executemany(
            "UPDATE batches SET error_detail = ? WHERE run_id = ? AND batch_id = ?", fixed
        )
