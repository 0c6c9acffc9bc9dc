"""The set-based SQL fold (projector.store.setfold) equals the Python fold, table for table.

The SQL is a second statement of F1-F12, used to rebuild databases from the
archive; any drift from ``projector.fold.rules`` would make a rebuild differ from
the live projections. Hypothesis histories (ties, retries across batches,
reports before submits, several terminal events) are folded both ways, with
duplicates added to the SQL side's input.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.fold.state import State
from projector.store.setfold import fold_into, typed
from projector.store.tables import BATCHES, PROJECTIONS, Table
from tests.fixtures.golden import golden_events
from tests.fixtures.projections import tables
from tests.fixtures.scenarios import histories

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _state_rows(state: State) -> dict[str, dict[Any, tuple[Any, ...]]]:
    by_table = tables(state)
    out: dict[str, dict[Any, tuple[Any, ...]]] = {}
    for table in PROJECTIONS:
        rows = by_table[table.name]
        # Through the storage codec, so JSON columns compare as stored text.
        arrow = table.to_arrow(list(rows.values()))
        out[table.name] = _keyed(table, [tuple(r.values()) for r in arrow.to_pylist()])
    return out


def _keyed(table: Table, tuples: list[tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
    names = [c.name for c in table.columns]
    idx = [names.index(k) for k in table.key]
    return {tuple(t[i] for i in idx): t for t in tuples}


def _sql_rows(events: list[Any]) -> dict[str, dict[Any, tuple[Any, ...]]]:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for table in PROJECTIONS:
        con.execute(table.ddl())
    src = [(ev.type, ev.model_dump_json()) for ev in events]
    con.execute("CREATE TABLE src (event_type VARCHAR, event VARCHAR)")
    if src:
        con.executemany("INSERT INTO src VALUES (?, ?)", src)
    con.execute("BEGIN")
    assert fold_into(con, typed("src"), materialise=True) == len(src)
    con.execute("COMMIT")
    out = _stored_rows(con)
    con.close()
    return out


def _stored_rows(con: duckdb.DuckDBPyConnection) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every projection table as stored, keyed like ``_state_rows``."""
    out: dict[str, dict[Any, tuple[Any, ...]]] = {}
    for table in PROJECTIONS:
        arrow = con.sql(f"SELECT {table.select_list} FROM {table.name}").to_arrow_table()
        arrow = arrow.cast(table.arrow_schema)
        out[table.name] = _keyed(table, [tuple(r.values()) for r in arrow.to_pylist()])
    return out


def _assert_same(events: list[Any], sql_input: list[Any]) -> None:
    state = State()
    state.apply(events)
    want = _state_rows(state)
    got = _sql_rows(sql_input)
    for name in want:
        assert got[name] == want[name], name


def _rivals(events: list[Any], data: st.DataObject) -> list[Any]:
    """Other events for the same keys: same attempt, same batch, same message, other time/id.

    The scenarios emit one event per key and kind; rivals make the tie-breaks
    of every winner rule (later, then larger id) decide.
    """
    if not events:
        return []
    picks = data.draw(st.lists(st.sampled_from(events), max_size=6))
    out = []
    for i, ev in enumerate(picks):
        update: dict[str, Any] = {
            "event_id": data.draw(st.sampled_from(["000-r", "500-r", "999-r"])) + str(i),
            "occurred_at": ev.occurred_at
            + timedelta(seconds=data.draw(st.sampled_from([-5, 0, 0, 5]))),
        }
        if ev.type == "batch.created":
            # Another batch naming the same recipients: membership by sequence, then id.
            update["batch_sequence"] = data.draw(st.integers(1, 3))
            update["batch_id"] = data.draw(st.sampled_from([ev.batch_id, "b-rival"]))
        out.append(ev.model_copy(update=update))
    return out


@FAST
@given(histories(), st.data())
def test_sql_fold_equals_python_fold(events: list[Any], data: st.DataObject) -> None:
    events = events + _rivals(events, data)
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=5)) if events else []
    _assert_same(events, events + dupes)


def test_golden_example() -> None:
    events = golden_events()
    _assert_same(events, events)


def test_error_detail_stored_like_the_python_fold() -> None:
    from schemas import EVENT_ADAPTER

    base = {"workspace_id": "ws", "campaign_id": "c", "run_id": "r", "batch_id": "b"}
    failed = EVENT_ADAPTER.validate_python(
        {
            **base,
            "type": "batch.failed",
            "event_id": "e1",
            "occurred_at": "2026-01-01T00:00:00+02:00",
            "error_detail": {"z": [1, 2.5, None], "a": {"nested": "x"}},
        }
    )
    _assert_same([failed], [failed])
    rows = _sql_rows([failed])["batches"]
    (row,) = rows.values()
    detail = [c.name for c in BATCHES.columns].index("error_detail")
    assert json.loads(row[detail]) == {"z": [1, 2.5, None], "a": {"nested": "x"}}


def test_every_optional_field_and_offset_folds_the_same() -> None:
    """Fields the scenarios leave at their defaults, and timestamps with offsets."""
    from schemas import EVENT_ADAPTER

    env = {"workspace_id": "ws", "campaign_id": "c"}
    raw = [
        {
            "type": "campaign.defined",
            "name": "n",
            "channel": "SMS",
            "channel_name": "Texts",
            "provider": "p",
            "campaign_type": "reminder",
        },
        {
            "type": "run.scheduled",
            "run_id": "r",
            "scheduled_at": "2026-01-01T09:00:00+03:00",
            "recipient_count": 5,
            "batch_size": 2,
            "total_batches": 7,
            "max_attempts": 3,
        },
        {
            "type": "run.snapshot_frozen",
            "run_id": "r",
            "frozen_at": "2026-01-01T06:00:01Z",
            "channel": "SMS",
            "provider": "p",
            "sender_id": "S",
            "template": "t-1",
            "personalized": True,
            "body": "b",
            "cost": {"total_cost": 2.5, "currency_units": "parts"},
            "recipient_count": 5,
        },
        {"type": "run.failed", "run_id": "r", "error": {"code": "E1", "message": "m"}},
        {
            "type": "batch.created",
            "run_id": "r",
            "batch_id": "b1",
            "batch_sequence": 1,
            "recipients": [{"recipient_id": "x", "phone_number": "1"}],
        },
        {
            "type": "message.submitted",
            "run_id": "r",
            "batch_id": "b1",
            "recipient_id": "x",
            "phone_number": "1",
            "outcome": "skipped",
            "reason": "opted out",
            "message_id": "",
        },
        {
            "type": "message.submitted",
            "run_id": "r",
            "batch_id": "b2",
            "recipient_id": "y",
            "phone_number": "2",
            "outcome": "sent",
            "message_id": "m2",
            "attempt": 2,
        },
        {
            "type": "message.dlr",
            "run_id": "r",
            "message_id": "m2",
            "status": "undelivered",
            "error_code": 31,
        },
        {"type": "message.dlr", "run_id": "r2", "message_id": "m9", "status": "buffered"},
    ]
    events = [
        EVENT_ADAPTER.validate_python(
            {**env, **e, "event_id": f"e{i}", "occurred_at": f"2026-01-01T0{i}:00:00.5-02:00"}
        )
        for i, e in enumerate(raw)
    ]
    _assert_same(events, events)
