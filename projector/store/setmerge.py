"""The fold as set-based SQL onto projections that already hold rows: a merge.

``projector.store.setfold`` builds tables from a complete event set. A backlog is
not complete: its events land on rows earlier flushes wrote. But every row
keeps the ordering key of the event that won each of its values (see
``projector.fold.rows``), so the winner of "stored row plus new events" is the
winner between the stored value and the new events' own winner: the same
comparison the Python fold makes, once per key instead of once per event.
Counters are not merged but recounted, for the runs and batches the events
touch only, from the recipient and batch rows (the sums the Python fold
maintains by differences).

Like ``setfold`` this is a second statement of F1-F12:
``tests/store/test_setmerge.py`` folds hypothesis histories chunk by chunk
through it and requires the Python fold's tables.

Input: a relation of validated events with ``event_type`` and ``fields``
(``setfold.EVENT_STRUCT``), as ``setfold.fold_into`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from projector.fold.rows import CampaignKey, RunKey
from projector.store import insight
from projector.store.setfold import (
    _MEMBERS,
    _TERMINAL_DLR,
    CAMPAIGN,
    RUN,
    _earliest,
    _first,
    _latest,
    _reads,
    normalise_error_details,
    run_counters,
)


def _gt(a: tuple[str, ...], b: tuple[str, ...]) -> str:
    """SQL for the tuple ``a`` ordering after ``b`` (lexicographic, no NULLs)."""
    head = f"{a[0]} > {b[0]}"
    if len(a) == 1:
        return head
    return f"({head} OR ({a[0]} = {b[0]} AND {_gt(a[1:], b[1:])}))"


def _wins_later(new: tuple[str, str], old: tuple[str, str]) -> str:
    """``fold._after``: the new (at, id) orders after the stored one, or none is stored."""
    return f"({old[0]} IS NULL OR {_gt(new, (old[0], f'coalesce({old[1]}, {chr(39) * 2})'))})"


def _wins_earlier(new: tuple[str, str], old: tuple[str, str]) -> str:
    """``fold._before``: the new (at, id) orders before the stored one, or none is stored."""
    return f"({old[0]} IS NULL OR {_gt((old[0], f'coalesce({old[1]}, {chr(39) * 2})'), new)})"


def _on(a: str, b: str, columns: str) -> str:
    """SQL matching the ``columns`` (a comma list) of the aliases ``a`` and ``b``."""
    return " AND ".join(f"{a}.{c} = {b}.{c}" for c in (c.strip() for c in columns.split(",")))


def _on_list(alias: str, columns: str) -> str:
    """The ``columns`` (a comma list) qualified by ``alias``."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _pick(win: str, pairs: tuple[tuple[str, str, str], ...]) -> str:
    """Columns taken from the new side when ``win`` holds, else from the stored row."""
    return ",\n       ".join(
        f"CASE WHEN {win} THEN {new} ELSE {old} END AS {name}" for name, new, old in pairs
    )


_READ_TEMP = ("sm_msg_new",)
# The stored rows of the recipients whose insight facts a merge recounts.
_INSIGHT_OF = (
    f"(SELECT r.* FROM recipients r SEMI JOIN sm_ins_keys k "
    f"ON {_on('r', 'k', f'{RUN}, recipient_id')})"
)

_MERGE = (
    # Attempt rows these events add to each run (the runs' insight counts them).
    f"""CREATE OR REPLACE TEMP TABLE sm_att_new AS {insight.attempt_rows(
        f"(SELECT DISTINCT {_on_list('n', f'{RUN}, recipient_id, attempt')} FROM sf_sub n "
        f"ANTI JOIN attempts o ON {_on('o', 'n', f'{RUN}, recipient_id, attempt')})"
    )}""",
    # Attempts: within one attempt the later, then larger id (F4).
    f"""INSERT OR REPLACE INTO attempts BY NAME
SELECT n.workspace_id, n.campaign_id, n.run_id, n.recipient_id, n.attempt,
       n.ev_at AS submitted_at, n.event_id, n.outcome, n.message_id, n.batch_id, n.reason
FROM sf_sub n LEFT JOIN attempts o ON {_on("o", "n", f"{RUN}, recipient_id, attempt")}
WHERE o.event_id IS NULL OR {_gt(("n.ev_at", "n.event_id"), ("o.submitted_at", "o.event_id"))}""",
    # Reports (F5): terminal beats non-terminal, then later, then larger id.
    f"""CREATE OR REPLACE TEMP TABLE sm_msg_won AS
SELECT n.* FROM sm_msg_new n LEFT JOIN messages o ON {_on("o", "n", f"{RUN}, message_id")}
WHERE o.event_id IS NULL OR {
        _gt(
            (f"(n.status IN ({_TERMINAL_DLR}))::INT", "n.reported_at", "n.event_id"),
            (f"(o.status IN ({_TERMINAL_DLR}))::INT", "o.reported_at", "o.event_id"),
        )
    }""",
    "INSERT OR REPLACE INTO messages BY NAME SELECT * FROM sm_msg_won",
    *_MEMBERS,
    # Recipients: the stored row against these events' winning submit (F4)
    # and first naming batch (F11).
    f"""CREATE OR REPLACE TEMP TABLE sm_rec AS
WITH w AS {_first("sf_sub", f"{RUN}, recipient_id", "attempt DESC, ev_at DESC, event_id DESC")},
k AS (SELECT {RUN}, recipient_id FROM w UNION SELECT {RUN}, recipient_id FROM sf_members),
j AS (
  SELECT {RUN}, recipient_id, o.phone_number AS o_phone_number,
         o.batch_sequence AS o_batch_sequence, o.created_batch_id AS o_created_batch_id,
         o.attempt AS o_attempt, o.submitted_at AS o_submitted_at,
         o.submit_event_id AS o_submit_event_id, o.outcome AS o_outcome,
         o.message_id AS o_message_id, o.submit_batch_id AS o_submit_batch_id,
         o.submit_phone AS o_submit_phone, o.reason AS o_reason,
         m.phone_number AS m_phone_number, m.batch_sequence AS m_batch_sequence,
         m.batch_id AS m_batch_id,
         w.attempt AS w_attempt, w.ev_at AS w_ev_at, w.event_id AS w_event_id,
         w.outcome AS w_outcome, w.message_id AS w_message_id, w.batch_id AS w_batch_id,
         w.phone_number AS w_phone_number, w.reason AS w_reason,
         m.run_id IS NOT NULL AND (o.batch_sequence IS NULL OR {
        _gt(
            ("o.batch_sequence", "coalesce(o.created_batch_id, '')"),
            ("m.batch_sequence", "m.batch_id"),
        )
    }) AS mw,
         w.run_id IS NOT NULL AND (o.attempt IS NULL OR {
        _gt(
            ("w.attempt", "w.ev_at", "w.event_id"),
            ("o.attempt", "o.submitted_at", "o.submit_event_id"),
        )
    }) AS ww
  FROM k
  LEFT JOIN recipients o USING ({RUN}, recipient_id)
  LEFT JOIN sf_members m USING ({RUN}, recipient_id)
  LEFT JOIN w USING ({RUN}, recipient_id))
SELECT {RUN}, recipient_id, o_submit_batch_id,
       {
        _pick(
            "mw",
            (
                ("phone_number", "m_phone_number", "o_phone_number"),
                ("batch_sequence", "m_batch_sequence", "o_batch_sequence"),
                ("created_batch_id", "m_batch_id", "o_created_batch_id"),
            ),
        )
    },
       {
        _pick(
            "ww",
            (
                ("attempt", "w_attempt", "o_attempt"),
                ("submitted_at", "w_ev_at", "o_submitted_at"),
                ("submit_event_id", "w_event_id", "o_submit_event_id"),
                ("outcome", "w_outcome", "o_outcome"),
                ("message_id", "w_message_id", "o_message_id"),
                ("submit_batch_id", "w_batch_id", "o_submit_batch_id"),
                ("submit_phone", "w_phone_number", "o_submit_phone"),
                ("reason", "w_reason", "o_reason"),
            ),
        )
    }
FROM j""",
    # A recipient's delivery state is always its winning message's (F5, F11).
    # Written in list order, as the Python path writes them
    # (store.upsert.write_changes): run detail's top 500 then prunes row
    # groups by zone maps. On two threads INSERT OR REPLACE does not keep the
    # order; DELETE and a plain INSERT do.
    #
    # The recipients this merge may change (rewritten, or holding a message
    # with a new winning report) and their insight facts before it: the
    # runs' insight counts change by their facts after minus these.
    f"""CREATE OR REPLACE TEMP TABLE sm_ins_keys AS
SELECT {RUN}, recipient_id FROM sm_rec
UNION SELECT {_on_list("r", RUN)}, r.recipient_id FROM recipients r
JOIN sm_msg_won m ON {_on("r", "m", f"{RUN}, message_id")}""",
    f"""CREATE OR REPLACE TEMP TABLE sm_ins_old AS {insight.counted(_INSIGHT_OF, sign=-1)}""",
    f"""DELETE FROM recipients
WHERE ({RUN}, recipient_id) IN (SELECT {RUN}, recipient_id FROM sm_rec)""",
    f"""INSERT INTO recipients BY NAME
SELECT r.* EXCLUDE (o_submit_batch_id), msg.status AS delivery_status,
       msg.reported_at AS delivery_reported_at, msg.error_code AS delivery_error_code
FROM sm_rec r LEFT JOIN messages msg ON {_on("msg", "r", f"{RUN}, message_id")}
ORDER BY {_on_list("r", RUN)}, r.batch_sequence ASC NULLS LAST, r.recipient_id""",
    # Recipients whose message has a new winning report (F12: of the run
    # the report names, which is among these events' runs).
    f"""UPDATE recipients SET delivery_status = m.status, delivery_reported_at = m.reported_at,
  delivery_error_code = m.error_code
FROM sm_msg_won m
WHERE {_on("recipients", "m", f"{RUN}, message_id")}
  AND (recipients.delivery_status IS DISTINCT FROM m.status
       OR recipients.delivery_reported_at IS DISTINCT FROM m.reported_at
       OR recipients.delivery_error_code IS DISTINCT FROM m.error_code)""",
    f"""CREATE OR REPLACE TEMP TABLE sm_ins_delta AS
SELECT {insight.KEY}, sum(n) AS n FROM (
  SELECT * FROM sm_ins_old UNION ALL {insight.counted(_INSIGHT_OF)}
  UNION ALL SELECT * FROM sm_att_new
) GROUP BY ALL HAVING sum(n) <> 0""",
    *insight.merge_delta("sm_ins_delta"),
    # Batches: the stored row against these events' winners (F6); counts
    # recounted for every batch a winning submit entered or left.
    f"""CREATE OR REPLACE TEMP TABLE sm_bkeys AS
SELECT DISTINCT {RUN}, batch_id FROM sf_e WHERE type LIKE 'batch.%'
UNION SELECT {RUN}, o_submit_batch_id FROM sm_rec WHERE o_submit_batch_id IS NOT NULL
UNION SELECT {RUN}, submit_batch_id FROM sm_rec WHERE submit_batch_id IS NOT NULL""",
    f"""CREATE OR REPLACE TEMP TABLE sm_batches AS
WITH cr AS ({_latest("type = 'batch.created'", f"{RUN}, batch_id")}),
st AS ({_earliest("type = 'batch.started'", f"{RUN}, batch_id")}),
te AS ({_earliest("type IN ('batch.completed', 'batch.failed')", f"{RUN}, batch_id")}),
seen AS (SELECT DISTINCT {RUN}, batch_id FROM sf_e WHERE type LIKE 'batch.%'),
cnt AS (SELECT {_on_list("r", RUN)}, r.submit_batch_id AS batch_id,
               count(*) FILTER (WHERE r.outcome = 'sent') AS sent_count,
               count(*) FILTER (WHERE r.outcome = 'failed') AS failed_count
        FROM recipients r JOIN sm_bkeys k
          ON {_on("r", "k", RUN)} AND r.submit_batch_id = k.batch_id GROUP BY ALL),
j AS (
  SELECT {RUN}, batch_id,
         coalesce(o.seen, false) OR seen.run_id IS NOT NULL AS seen,
         o.batch_sequence AS o_batch_sequence, o.recipient_count AS o_recipient_count,
         o.created_at AS o_created_at, o.created_event_id AS o_created_event_id,
         o.started_at AS o_started_at, o.started_event_id AS o_started_event_id,
         o.terminal_status AS o_terminal_status, o.terminal_at AS o_terminal_at,
         o.terminal_event_id AS o_terminal_event_id, o.error_detail AS o_error_detail,
         cr.batch_sequence AS cr_batch_sequence,
         coalesce(json_array_length(cr.recipients), 0) AS cr_recipient_count,
         cr.ev_at AS cr_at, cr.event_id AS cr_id, st.ev_at AS st_at, st.event_id AS st_id,
         substr(te.type, 7) AS te_status, te.ev_at AS te_at, te.event_id AS te_id,
         te.error_detail AS te_error_detail,
         cr.run_id IS NOT NULL AND {
        _wins_later(("cr.ev_at", "cr.event_id"), ("o.created_at", "o.created_event_id"))
    } AS crw,
         st.run_id IS NOT NULL AND {
        _wins_earlier(("st.ev_at", "st.event_id"), ("o.started_at", "o.started_event_id"))
    } AS stw,
         te.run_id IS NOT NULL AND {
        _wins_earlier(("te.ev_at", "te.event_id"), ("o.terminal_at", "o.terminal_event_id"))
    } AS tew,
         coalesce(cnt.sent_count, 0) AS sent_count, coalesce(cnt.failed_count, 0) AS failed_count
  FROM sm_bkeys k
  LEFT JOIN batches o USING ({RUN}, batch_id) LEFT JOIN seen USING ({RUN}, batch_id)
  LEFT JOIN cr USING ({RUN}, batch_id) LEFT JOIN st USING ({RUN}, batch_id)
  LEFT JOIN te USING ({RUN}, batch_id) LEFT JOIN cnt USING ({RUN}, batch_id))
SELECT {RUN}, batch_id, seen,
       {
        _pick(
            "crw",
            (
                ("batch_sequence", "cr_batch_sequence", "o_batch_sequence"),
                ("recipient_count", "cr_recipient_count", "coalesce(o_recipient_count, 0)"),
                ("created_at", "cr_at", "o_created_at"),
                ("created_event_id", "cr_id", "o_created_event_id"),
            ),
        )
    },
       {
        _pick(
            "stw",
            (
                ("started_at", "st_at", "o_started_at"),
                ("started_event_id", "st_id", "o_started_event_id"),
            ),
        )
    },
       {
        _pick(
            "tew",
            (
                ("terminal_status", "te_status", "o_terminal_status"),
                ("terminal_at", "te_at", "o_terminal_at"),
                ("terminal_event_id", "te_id", "o_terminal_event_id"),
                ("error_detail", "te_error_detail", "o_error_detail"),
            ),
        )
    },
       tew AND te_error_detail IS NOT NULL AS detail_new,
       sent_count, failed_count
FROM j""",
    # A batch named by no batch event and counting no submit is as absent (BatchRow.empty).
    f"""DELETE FROM batches WHERE ({RUN}, batch_id) IN (
  SELECT {RUN}, batch_id FROM sm_batches
  WHERE NOT seen AND sent_count = 0 AND failed_count = 0)""",
    """INSERT OR REPLACE INTO batches BY NAME
SELECT * EXCLUDE (detail_new) FROM sm_batches
WHERE seen OR sent_count > 0 OR failed_count > 0""",
    # F10: the latest snapshot wins.
    f"""INSERT OR REPLACE INTO snapshots BY NAME
SELECT {_on_list("n", RUN)}, n.ev_at AS event_at, n.event_id, n.frozen_at, n.channel,
       n.provider, n.sender_id, n.template, n.personalized, n.body,
       n.cost.total_cost AS total_cost, n.cost.currency_units AS currency_units,
       n.recipient_count, from_json(n.recipients, '["VARCHAR"]') AS recipients
FROM ({_latest("type = 'run.snapshot_frozen'", RUN)}) n
LEFT JOIN snapshots o ON {_on("o", "n", RUN)}
WHERE o.event_id IS NULL OR {_gt(("n.ev_at", "n.event_id"), ("o.event_at", "o.event_id"))}""",
    # Runs: the stored row against these events' winners (F3), updated_at
    # (F8), and every counter recounted (F7, F9, F11).
    f"""CREATE OR REPLACE TEMP TABLE sm_runs AS
WITH keys AS (SELECT {RUN} FROM sf_runs),
sc AS ({_latest("type = 'run.scheduled'", RUN)}),
cl AS ({_earliest("type = 'run.claimed'", RUN)}),
te AS ({_earliest("type IN ('run.completed', 'run.failed', 'run.cancelled')", RUN)}),
sn AS (SELECT DISTINCT {RUN} FROM sf_e WHERE type = 'run.snapshot_frozen'),
{run_counters(f" SEMI JOIN keys USING ({RUN})")},
j AS (
  SELECT {RUN},
         o.scheduled_at AS o_scheduled_at, o.recipient_count AS o_recipient_count,
         o.batch_size AS o_batch_size, o.declared_total_batches AS o_declared_total_batches,
         o.max_attempts AS o_max_attempts, o.scheduled_event_at AS o_scheduled_event_at,
         o.scheduled_event_id AS o_scheduled_event_id, o.claimed_at AS o_claimed_at,
         o.claimed_event_id AS o_claimed_event_id, o.terminal_status AS o_terminal_status,
         o.terminal_at AS o_terminal_at, o.terminal_event_id AS o_terminal_event_id,
         o.error_code AS o_error_code, o.error_message AS o_error_message,
         coalesce(o.has_snapshot, false) OR sn.run_id IS NOT NULL AS has_snapshot,
         CASE WHEN o.updated_at IS NULL OR n.updated_at > o.updated_at
              THEN n.updated_at ELSE o.updated_at END AS updated_at,
         sc.scheduled_at AS sc_scheduled_at, sc.recipient_count AS sc_recipient_count,
         sc.batch_size AS sc_batch_size, sc.total_batches AS sc_total_batches,
         sc.max_attempts AS sc_max_attempts, sc.ev_at AS sc_at, sc.event_id AS sc_id,
         cl.ev_at AS cl_at, cl.event_id AS cl_id,
         substr(te.type, 5) AS te_status, te.ev_at AS te_at, te.event_id AS te_id,
         te.error.code AS te_error_code, te.error.message AS te_error_message,
         sc.run_id IS NOT NULL AND {
        _wins_later(("sc.ev_at", "sc.event_id"), ("o.scheduled_event_at", "o.scheduled_event_id"))
    } AS scw,
         cl.run_id IS NOT NULL AND {
        _wins_earlier(("cl.ev_at", "cl.event_id"), ("o.claimed_at", "o.claimed_event_id"))
    } AS clw,
         te.run_id IS NOT NULL AND {
        _wins_earlier(("te.ev_at", "te.event_id"), ("o.terminal_at", "o.terminal_event_id"))
    } AS tew,
         coalesce(rc.known_recipients, 0) AS known_recipients, coalesce(rc.sent, 0) AS sent,
         coalesce(rc.failed, 0) AS failed, coalesce(rc.skipped, 0) AS skipped,
         coalesce(rc.delivered, 0) AS delivered,
         coalesce(rc.failed_delivery, 0) AS failed_delivery,
         coalesce(bc.batches_seen, 0) AS batches_seen,
         coalesce(bc.batches_completed, 0) AS batches_completed,
         rc.first_sent_at, rc.last_sent_at
  FROM keys k LEFT JOIN runs o USING ({RUN}) LEFT JOIN sf_runs n USING ({RUN})
  LEFT JOIN sc USING ({RUN}) LEFT JOIN cl USING ({RUN}) LEFT JOIN te USING ({RUN})
  LEFT JOIN sn USING ({RUN}) LEFT JOIN rc USING ({RUN}) LEFT JOIN bc USING ({RUN}))
SELECT {RUN}, has_snapshot, updated_at,
       {
        _pick(
            "scw",
            (
                ("scheduled_at", "sc_scheduled_at", "o_scheduled_at"),
                (
                    "recipient_count",
                    "coalesce(sc_recipient_count, 0)",
                    "coalesce(o_recipient_count, 0)",
                ),
                ("batch_size", "sc_batch_size", "o_batch_size"),
                ("declared_total_batches", "sc_total_batches", "o_declared_total_batches"),
                ("max_attempts", "sc_max_attempts", "o_max_attempts"),
                ("scheduled_event_at", "sc_at", "o_scheduled_event_at"),
                ("scheduled_event_id", "sc_id", "o_scheduled_event_id"),
            ),
        )
    },
       {
        _pick(
            "clw",
            (
                ("claimed_at", "cl_at", "o_claimed_at"),
                ("claimed_event_id", "cl_id", "o_claimed_event_id"),
            ),
        )
    },
       {
        _pick(
            "tew",
            (
                ("terminal_status", "te_status", "o_terminal_status"),
                ("terminal_at", "te_at", "o_terminal_at"),
                ("terminal_event_id", "te_id", "o_terminal_event_id"),
                ("error_code", "te_error_code", "o_error_code"),
                ("error_message", "te_error_message", "o_error_message"),
            ),
        )
    },
       known_recipients, sent, failed, skipped, delivered, failed_delivery,
       batches_seen, batches_completed, first_sent_at, last_sent_at
FROM j""",
    "INSERT OR REPLACE INTO runs BY NAME SELECT * FROM sm_runs",
    # Campaigns: the latest event, the latest definition.
    f"""CREATE OR REPLACE TEMP TABLE sm_campaigns AS
WITH d AS ({_latest("type = 'campaign.defined'", CAMPAIGN)})
SELECT {CAMPAIGN},
       CASE WHEN o.updated_at IS NULL OR n.updated_at > o.updated_at
            THEN n.updated_at ELSE o.updated_at END AS updated_at,
       {
        _pick(
            "d.campaign_id IS NOT NULL AND "
            + _wins_later(("d.ev_at", "d.event_id"), ("o.defined_at", "o.defined_event_id")),
            (
                ("name", "d.name", "o.name"),
                ("channel", "d.channel", "o.channel"),
                ("channel_name", "d.channel_name", "o.channel_name"),
                ("provider", "d.provider", "o.provider"),
                ("campaign_type", "d.campaign_type", "o.campaign_type"),
                ("defined_at", "d.ev_at", "o.defined_at"),
                ("defined_event_id", "d.event_id", "o.defined_event_id"),
            ),
        )
    }
FROM sf_campaigns n LEFT JOIN campaigns o USING ({CAMPAIGN})
LEFT JOIN d USING ({CAMPAIGN})""",
    "INSERT OR REPLACE INTO campaigns BY NAME SELECT * FROM sm_campaigns",
)

_TEMP = (
    "sf_e", "sf_runs", "sf_sub", "sf_named", "sf_members", "sf_campaigns", "sm_msg_new",
    "sm_msg_won", "sm_rec", "sm_bkeys", "sm_batches", "sm_runs", "sm_campaigns",
    "sm_ins_keys", "sm_ins_old", "sm_ins_delta", "sm_att_new",
)  # fmt: skip


@dataclass(frozen=True)
class Merged:
    """What a merge changed: events read, and the campaigns and runs whose rows it wrote."""

    events: int
    campaigns: frozenset[CampaignKey]
    run_keys: frozenset[RunKey]


def merge_into(con: duckdb.DuckDBPyConnection, source: str) -> Merged:
    """Fold every event of ``source`` into the projection tables as they stand.

    Runs in the caller's transaction; the tables must have their primary
    keys (``INSERT OR REPLACE``). ``source`` is read several times: pass a
    table, not a JSON relation to parse again on every read.

    The statements go to DuckDB as one script: each call into duckdb-python
    takes the GIL back on its way in and out, and beside a busy event loop
    every take waits (docs/decisions/0026-merge-as-one-script.md).
    """
    steps = (
        "CREATE OR REPLACE TEMP TABLE sm_msg_new AS SELECT * FROM messages LIMIT 0",
        *_reads(source, messages="sm_msg_new"),
        *_MERGE,
    )
    con.execute(";\n".join(steps))
    normalise_error_details(con, "sm_batches WHERE detail_new")
    n = con.execute("SELECT coalesce(sum(events), 0) FROM sf_campaigns").fetchone()[0]  # type: ignore[index]
    runs = con.execute(f"SELECT {RUN} FROM sm_runs").fetchall()
    campaigns = set(con.execute(f"SELECT {CAMPAIGN} FROM sf_campaigns").fetchall())
    campaigns.update(r[:2] for r in runs)
    con.execute(";\n".join(f"DROP TABLE IF EXISTS {t}" for t in _TEMP))
    return Merged(int(n), frozenset(campaigns), frozenset(runs))
