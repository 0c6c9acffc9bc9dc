"""The fold as set-based SQL, for rebuilding an empty database from validated events.

``projector.fold.rules`` applies events one at a time in Python; a rebuild of a year
of history through it is bounded by per-event Python work and per-flush
DuckDB upserts (docs/decisions/0002-set-based-fold-for-rebuilds.md). Over a
*complete* set of events every rule of
F1-F12 is a choice of winner or a count, which DuckDB computes for the whole
set in a few vectorised passes:

* winners (F3-F6, F10, the campaign definition): ``row_number()`` over the
  rule's ordering key (``occurred_at``, ``event_id``, attempt, DLR class);
* counters (F7, F9, F11): aggregates over the winning rows;
* F1 and F2 hold by construction: a set has no order and no duplicates that
  a winner or a count could see.

This is a second statement of the rules, so it must never drift from the
Python fold: ``tests/store/test_setfold.py`` folds hypothesis-generated
histories both ways and requires identical tables, and the replay tests
compare a live database with an archive rebuild through ``projector verify``.
It only builds a database from nothing; ``projector.store.setmerge`` folds large
live flushes onto tables that already hold rows, with the same winners.

Input: a relation of validated events with ``event_type`` and ``fields``
(``EVENT_STRUCT``): the archive's typed column, or ``typed()`` over
``model_dump_json`` text (defaults filled, timestamps in UTC).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import duckdb

from projector.fold.rows import DLR_TERMINAL
from projector.store import insight
from projector.store.tables import INDEXES, PROJECTIONS, VIEWS_DDL

# Every field any rule reads, typed: ``json_transform(event, EVENT_STRUCT)``.
# Nested values (recipient lists, error details) stay JSON text. The archive
# stores this struct beside the event JSON (column ``fields``), so a rebuild
# reads typed columns instead of parsing JSON.
EVENT_FIELDS: dict[str, object] = {
    "event_id": "VARCHAR", "occurred_at": "TIMESTAMPTZ", "workspace_id": "VARCHAR",
    "campaign_id": "VARCHAR", "run_id": "VARCHAR", "batch_id": "VARCHAR",
    "name": "VARCHAR", "channel": "VARCHAR", "channel_name": "VARCHAR",
    "provider": "VARCHAR", "campaign_type": "VARCHAR",
    "scheduled_at": "TIMESTAMPTZ", "recipient_count": "BIGINT", "batch_size": "BIGINT",
    "total_batches": "BIGINT", "max_attempts": "BIGINT",
    "error": {"code": "VARCHAR", "message": "VARCHAR"},
    "frozen_at": "TIMESTAMPTZ", "sender_id": "VARCHAR", "template": "VARCHAR",
    "personalized": "BOOLEAN", "body": "VARCHAR",
    "cost": {"total_cost": "DOUBLE", "currency_units": "VARCHAR"},
    "batch_sequence": "BIGINT", "recipient_id": "VARCHAR", "phone_number": "VARCHAR",
    "outcome": "VARCHAR", "message_id": "VARCHAR", "attempt": "BIGINT", "reason": "VARCHAR",
    "status": "VARCHAR", "error_code": "VARCHAR",
    "recipients": "VARCHAR", "error_detail": "VARCHAR",
}  # fmt: skip
EVENT_STRUCT = json.dumps(EVENT_FIELDS)

_TERMINAL_DLR = ", ".join(f"'{s}'" for s in sorted(DLR_TERMINAL))
# Identity columns (F12): rows below a campaign are keyed by their run's key.
CAMPAIGN = "workspace_id, campaign_id"
RUN = f"{CAMPAIGN}, run_id"
_FAILED_DLR = ", ".join(f"'{s}'" for s in sorted(DLR_TERMINAL - {"delivered"}))


def typed(json_source: str) -> str:
    """A relation with (event_type, event JSON) as the (event_type, fields) one fold_into reads."""
    return (
        f"(SELECT event_type, json_transform(event, '{EVENT_STRUCT}') AS fields FROM {json_source})"
    )


# No events: for the empty rebuild and for typing empty tables.
EMPTY = typed("(SELECT NULL::VARCHAR AS event_type, NULL::VARCHAR AS event WHERE false)")


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


def run_counters(scope: str = "") -> str:
    """The CTEs ``rc`` and ``bc``: each run's counters over its recipients and batches.

    F7, F9 (the sent-at range and counts analytics sum) and F11 in one place
    for the rebuild and the merge; ``scope`` narrows the runs counted (the
    merge recounts only those it touched: ``" SEMI JOIN keys USING (<run key>)"``).
    """
    return f"""rc AS (SELECT {RUN}, count(*) AS known_recipients,
              count(*) FILTER (WHERE outcome = 'sent') AS sent,
              count(*) FILTER (WHERE outcome = 'failed') AS failed,
              count(*) FILTER (WHERE outcome = 'skipped') AS skipped,
              count(*) FILTER (WHERE outcome = 'sent' AND delivery_status = 'delivered')
                  AS delivered,
              count(*) FILTER (WHERE outcome = 'sent' AND delivery_status IN ({_FAILED_DLR}))
                  AS failed_delivery,
              min(submitted_at) FILTER (WHERE outcome = 'sent') AS first_sent_at,
              max(submitted_at) FILTER (WHERE outcome = 'sent') AS last_sent_at
       FROM recipients{scope} GROUP BY ALL),
bc AS (SELECT {RUN}, count(*) FILTER (WHERE seen) AS batches_seen,
              count(*) FILTER (WHERE terminal_status = 'completed') AS batches_completed
       FROM batches{scope} GROUP BY ALL)"""


def _first(table: str, key: str, order: str) -> str:
    """One row of ``table`` per ``key``: the first by ``order``.

    Most keys have one row (one attempt per recipient): those skip the sort,
    which is most of a window's cost (docs/decisions/0002-set-based-fold-for-rebuilds.md).
    """
    return f"""(WITH d AS (SELECT {key} FROM {table} GROUP BY ALL HAVING count(*) > 1)
SELECT * FROM {table} ANTI JOIN d USING ({key})
UNION ALL
SELECT * FROM (SELECT * FROM {table} SEMI JOIN d USING ({key}))
QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1)"""


def _reads(source: str, messages: str = "messages") -> tuple[str, ...]:
    """Statements that split ``source`` into narrow working tables, one pass per family.

    Submits and reports are nearly every event: they get tables of just the
    columns their rules read. The rest (a few per run and batch) is kept whole.
    The reports' winners go into ``messages`` (``projector.store.setmerge`` passes
    a working table, to merge them with the stored ones).
    """
    return (
        # Every submit attempt is kept; within an attempt the later, then larger id (F4).
        # Redelivered attempts are rare: _first sorts only those, not every
        # submit (docs/decisions/0002-set-based-fold-for-rebuilds.md).
        f"""CREATE OR REPLACE TEMP TABLE sf_sub AS
WITH s AS MATERIALIZED (
  SELECT fields.workspace_id AS workspace_id, fields.campaign_id AS campaign_id,
         fields.run_id AS run_id, fields.recipient_id AS recipient_id,
         fields.attempt AS attempt, fields.occurred_at AS ev_at, fields.event_id AS event_id,
         fields.outcome AS outcome,
         fields.message_id AS message_id, fields.batch_id AS batch_id,
         fields.reason AS reason, fields.phone_number AS phone_number
  FROM {source} WHERE event_type = 'message.submitted')
SELECT * FROM {_first("s", f"{RUN}, recipient_id, attempt", "ev_at DESC, event_id DESC")}""",
        # F5: terminal beats non-terminal, then later, then larger id.
        f"""INSERT INTO {messages} BY NAME
SELECT * FROM (
  SELECT fields.workspace_id AS workspace_id, fields.campaign_id AS campaign_id,
         fields.run_id AS run_id, fields.message_id AS message_id, fields.status AS status,
         fields.occurred_at AS reported_at, fields.event_id AS event_id,
         fields.error_code AS error_code
  FROM {source} WHERE event_type = 'message.dlr')
QUALIFY row_number() OVER (PARTITION BY {RUN}, message_id
    ORDER BY status IN ({_TERMINAL_DLR}) DESC, reported_at DESC, event_id DESC) = 1""",
        f"""CREATE OR REPLACE TEMP TABLE sf_e AS
SELECT event_type AS type, fields.occurred_at AS ev_at, fields.*
FROM {source} WHERE event_type NOT IN ('message.submitted', 'message.dlr')""",
        # The run each run-bearing event names (F3: a run known only from
        # later events exists), and its latest event (F8).
        f"""CREATE OR REPLACE TEMP TABLE sf_runs AS
SELECT fields.workspace_id AS workspace_id, fields.campaign_id AS campaign_id,
       fields.run_id AS run_id, max(fields.occurred_at) AS updated_at
FROM {source} WHERE fields.run_id IS NOT NULL GROUP BY ALL""",
        # Each campaign (F12: a workspace's), its latest event, how many events it has.
        f"""CREATE OR REPLACE TEMP TABLE sf_campaigns AS
SELECT fields.workspace_id AS workspace_id, fields.campaign_id AS campaign_id,
       max(fields.occurred_at) AS updated_at, count(*) AS events
FROM {source} GROUP BY ALL""",
    )


# F11 membership: the smallest (batch_sequence, batch_id) naming a recipient.
_MEMBERS = (
    f"""CREATE OR REPLACE TEMP TABLE sf_named AS
SELECT {RUN}, m.recipient_id AS recipient_id, m.phone_number AS phone_number,
       batch_sequence, batch_id
FROM (SELECT {RUN}, batch_id, batch_sequence,
             unnest(from_json(recipients,
                              '[{{"recipient_id": "VARCHAR", "phone_number": "VARCHAR"}}]')) AS m
      FROM sf_e WHERE type = 'batch.created')""",
    f"""CREATE OR REPLACE TEMP TABLE sf_members AS
SELECT * FROM {_first("sf_named", f"{RUN}, recipient_id", "batch_sequence, batch_id")}""",
)

_STEPS = (
    f"""INSERT INTO attempts BY NAME
SELECT {RUN}, recipient_id, attempt, ev_at AS submitted_at, event_id, outcome,
       message_id, batch_id, reason
FROM sf_sub""",
    *_MEMBERS,
    # F4: the highest attempt wins, then the later, then the larger id. A
    # recipient is named by a batch, a submit, or both (F11).
    f"""INSERT INTO recipients BY NAME
WITH w AS {_first("sf_sub", f"{RUN}, recipient_id", "attempt DESC, ev_at DESC, event_id DESC")}
SELECT {RUN}, recipient_id, m.phone_number, m.batch_sequence,
       m.batch_id AS created_batch_id, w.attempt, w.ev_at AS submitted_at,
       w.event_id AS submit_event_id, w.outcome, w.message_id, w.batch_id AS submit_batch_id,
       w.phone_number AS submit_phone, w.reason, msg.status AS delivery_status,
       msg.reported_at AS delivery_reported_at, msg.error_code AS delivery_error_code
FROM sf_members m FULL JOIN w USING ({RUN}, recipient_id)
LEFT JOIN messages msg USING ({RUN}, message_id)""",
    # The runs' insight: every recipient's facts, counted once, and the attempt rows.
    f"INSERT INTO run_insight BY NAME {insight.counted('recipients')} "
    f"UNION ALL {insight.attempt_rows('attempts')}",
    # F6: created latest, started and terminal earliest; counts by winning submits.
    f"""INSERT INTO batches BY NAME
WITH cr AS ({_latest("type = 'batch.created'", f"{RUN}, batch_id")}),
st AS ({_earliest("type = 'batch.started'", f"{RUN}, batch_id")}),
te AS ({_earliest("type IN ('batch.completed', 'batch.failed')", f"{RUN}, batch_id")}),
seen AS (SELECT DISTINCT {RUN}, batch_id FROM sf_e WHERE type LIKE 'batch.%'),
cnt AS (SELECT {RUN}, submit_batch_id AS batch_id,
               count(*) FILTER (WHERE outcome = 'sent') AS sent_count,
               count(*) FILTER (WHERE outcome = 'failed') AS failed_count
        FROM recipients WHERE submit_batch_id IS NOT NULL GROUP BY ALL),
keys AS (SELECT {RUN}, batch_id FROM seen
         UNION SELECT {RUN}, batch_id FROM cnt WHERE sent_count > 0 OR failed_count > 0)
SELECT {RUN}, batch_id, seen.run_id IS NOT NULL AS seen,
       cr.batch_sequence, coalesce(json_array_length(cr.recipients), 0)
           AS recipient_count,
       cr.ev_at AS created_at, cr.event_id AS created_event_id,
       st.ev_at AS started_at, st.event_id AS started_event_id,
       substr(te.type, 7) AS terminal_status, te.ev_at AS terminal_at,
       te.event_id AS terminal_event_id, te.error_detail,
       coalesce(cnt.sent_count, 0) AS sent_count, coalesce(cnt.failed_count, 0) AS failed_count
FROM keys k
LEFT JOIN seen USING ({RUN}, batch_id) LEFT JOIN cr USING ({RUN}, batch_id)
LEFT JOIN st USING ({RUN}, batch_id) LEFT JOIN te USING ({RUN}, batch_id)
LEFT JOIN cnt USING ({RUN}, batch_id)""",
    # F10: the latest snapshot wins.
    f"""INSERT INTO snapshots BY NAME
SELECT {RUN}, ev_at AS event_at, event_id, frozen_at, channel, provider, sender_id,
       template, personalized, body, cost.total_cost AS total_cost,
       cost.currency_units AS currency_units, recipient_count,
       from_json(recipients, '["VARCHAR"]') AS recipients
FROM ({_latest("type = 'run.snapshot_frozen'", RUN)})""",
    # F3, F7, F8, F11: the run's winners and its counters over recipients and batches.
    f"""INSERT INTO runs BY NAME
WITH sc AS ({_latest("type = 'run.scheduled'", RUN)}),
cl AS ({_earliest("type = 'run.claimed'", RUN)}),
te AS ({_earliest("type IN ('run.completed', 'run.failed', 'run.cancelled')", RUN)}),
sn AS (SELECT DISTINCT {RUN} FROM sf_e WHERE type = 'run.snapshot_frozen'),
{run_counters()}
SELECT {RUN}, sc.scheduled_at,
       coalesce(sc.recipient_count, 0) AS recipient_count, sc.batch_size,
       sc.total_batches AS declared_total_batches, sc.max_attempts,
       sc.ev_at AS scheduled_event_at, sc.event_id AS scheduled_event_id,
       cl.ev_at AS claimed_at, cl.event_id AS claimed_event_id,
       substr(te.type, 5) AS terminal_status, te.ev_at AS terminal_at,
       te.event_id AS terminal_event_id, te.error.code AS error_code,
       te.error.message AS error_message, sn.run_id IS NOT NULL AS has_snapshot,
       r.updated_at, coalesce(rc.known_recipients, 0) AS known_recipients,
       coalesce(rc.sent, 0) AS sent, coalesce(rc.failed, 0) AS failed,
       coalesce(rc.skipped, 0) AS skipped, coalesce(rc.delivered, 0) AS delivered,
       coalesce(rc.failed_delivery, 0) AS failed_delivery,
       coalesce(bc.batches_seen, 0) AS batches_seen,
       coalesce(bc.batches_completed, 0) AS batches_completed,
       rc.first_sent_at, rc.last_sent_at
FROM sf_runs r LEFT JOIN sc USING ({RUN}) LEFT JOIN cl USING ({RUN})
LEFT JOIN te USING ({RUN}) LEFT JOIN sn USING ({RUN}) LEFT JOIN rc USING ({RUN})
LEFT JOIN bc USING ({RUN})""",
    # The campaign's latest definition.
    f"""INSERT INTO campaigns BY NAME
WITH d AS ({_latest("type = 'campaign.defined'", CAMPAIGN)})
SELECT {CAMPAIGN}, d.name, d.channel, d.channel_name, d.provider,
       d.campaign_type, d.ev_at AS defined_at, d.event_id AS defined_event_id, c.updated_at
FROM sf_campaigns c LEFT JOIN d USING ({CAMPAIGN})""",
)

_TEMP = ("sf_e", "sf_runs", "sf_sub", "sf_named", "sf_members", "sf_campaigns", "sf_src")


def fold_into(
    con: duckdb.DuckDBPyConnection,
    source: str,
    on_step: Callable[[int, int], None] | None = None,
    *,
    materialise: bool = False,
    primary_keys: bool = True,
) -> int:
    """Fold every event of ``source`` into the (empty) projection tables; returns the count.

    ``source`` is a SQL relation with ``event_type`` and ``fields`` (the
    ``EVENT_STRUCT`` of the event): the archive's ``read_parquet(...)``, or
    ``typed(...)`` over event JSON. Runs in the caller's transaction.
    ``on_step(done, total)`` reports progress: the steps are a handful of long
    statements. ``materialise`` copies ``source`` once first: for JSON
    sources, which would otherwise be parsed once per read (typed Parquet is
    cheaper to scan again than to copy). The tables are filled without their
    primary keys, which are built afterwards in one pass each (cheaper than
    maintaining the indexes row by row: docs/decisions/0002-set-based-fold-for-rebuilds.md),
    or, with ``primary_keys=False``, left to ``add_keys_and_indexes`` later.
    """
    if materialise:
        con.execute(f"CREATE OR REPLACE TEMP TABLE sf_src AS SELECT * FROM {source}")
        source = "sf_src"
    steps = (*_reads(source), *_STEPS)
    total = len(steps) + 1
    for table in PROJECTIONS:
        con.execute(f"DROP TABLE {table.name}")
        con.execute(table.ddl(primary_key=False))
    for i, step in enumerate(steps, start=1):
        if on_step is not None:
            on_step(i, total)
        con.execute(step)
    n = con.execute("SELECT coalesce(sum(events), 0) FROM sf_campaigns").fetchone()[0]  # type: ignore[index]
    normalise_error_details(con)
    if primary_keys:
        add_keys_and_indexes(con)
    for ddl in VIEWS_DDL:
        con.execute(ddl)
    for t in _TEMP:
        con.execute(f"DROP TABLE IF EXISTS {t}")
    if on_step is not None:
        on_step(total, total)
    return int(n)


def missing_primary_keys(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Projection tables without their primary key (a rebuild that left them to the writer)."""
    keyed = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_constraints() "
            "WHERE constraint_type = 'PRIMARY KEY' AND schema_name = 'main'"
        ).fetchall()
    }
    return [t.name for t in PROJECTIONS if t.name not in keyed]


def missing_indexes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Secondary indexes (``projector.store.tables.INDEXES``) the database lacks."""
    present = {r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
    return [name for name in INDEXES if name not in present]


def add_keys_and_indexes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Add every missing primary key and secondary index; returns what was added."""
    missing = missing_primary_keys(con)
    by_name = {t.name: t for t in PROJECTIONS}
    for name in missing:
        con.execute(f"ALTER TABLE {name} ADD PRIMARY KEY ({', '.join(by_name[name].key)})")
    indexes = missing_indexes(con)
    for name in indexes:
        con.execute(INDEXES[name])
    return missing + indexes


def normalise_error_details(con: duckdb.DuckDBPyConnection, only: str | None = None) -> None:
    """Store ``error_detail`` as the Python fold does (``json.dumps(sort_keys=True)``).

    DuckDB writes JSON compactly and keeps key order; the rows are few (failed
    batches), so Python re-serialises them: all, or those whose keys the
    relation ``only`` names.
    """
    key = f"{RUN}, batch_id"
    keys = f" AND ({key}) IN (SELECT {key} FROM {only})" if only else ""
    rows = con.execute(
        f"SELECT error_detail, {key} FROM batches WHERE error_detail IS NOT NULL{keys}"
    ).fetchall()
    fixed = [(json.dumps(json.loads(detail), sort_keys=True), *k) for detail, *k in rows]
    if fixed:
        con.executemany(
            "UPDATE batches SET error_detail = ? WHERE workspace_id = ? AND campaign_id = ? "
            "AND run_id = ? AND batch_id = ?",
            fixed,
        )
