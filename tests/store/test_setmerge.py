"""The set-based merge (projector.store.setmerge) equals the Python fold, chunk by chunk.

A history is shuffled, duplicated in part, cut into chunks, and merged one
chunk at a time onto the tables the previous chunks left: every rule then
has to compare stored winners with new events, in every order, as the
Python fold does one event at a time. The result must be the Python fold's
tables, row for row.
"""

from __future__ import annotations

from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.fold.state import State
from projector.store.setfold import typed
from projector.store.setmerge import merge_into
from projector.store.tables import PROJECTIONS, VIEWS_DDL
from tests.fixtures.golden import golden_events
from tests.fixtures.scenarios import histories
from tests.store.test_setfold import _rivals, _state_rows, _stored_rows

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _merged_rows(chunks: list[list[Any]]) -> dict[str, dict[Any, tuple[Any, ...]]]:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for table in PROJECTIONS:
        con.execute(table.ddl())
    for ddl in VIEWS_DDL:
        con.execute(ddl)
    con.execute("CREATE TABLE src (event_type VARCHAR, event VARCHAR)")
    for chunk in chunks:
        con.execute("DELETE FROM src")
        if chunk:
            con.executemany(
                "INSERT INTO src VALUES (?, ?)", [(ev.type, ev.model_dump_json()) for ev in chunk]
            )
        con.execute("BEGIN")
        merged = merge_into(con, typed("src"))
        con.execute("COMMIT")
        assert merged.events == len(chunk)
        assert merged.campaigns >= {(ev.workspace_id, ev.campaign_id) for ev in chunk}
    out = _stored_rows(con)
    con.close()
    return out


def _assert_same(events: list[Any], chunks: list[list[Any]]) -> None:
    state = State()
    state.apply(events)
    want = _state_rows(state)
    got = _merged_rows(chunks)
    for name in want:
        assert got[name] == want[name], name


@FAST
@given(histories(), st.data())
def test_merging_chunk_by_chunk_equals_the_python_fold(
    events: list[Any], data: st.DataObject
) -> None:
    events = events + _rivals(events, data)
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=5)) if events else []
    shuffled = data.draw(st.permutations(events + dupes))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=4)))
    bounds = [0, *cuts, len(shuffled)]
    chunks = [shuffled[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    _assert_same(events, chunks)


def test_golden_example_one_event_at_a_time() -> None:
    events = golden_events()
    _assert_same(events, [[ev] for ev in events])


def test_golden_example_at_once_and_again() -> None:
    """A redelivered chunk changes nothing (F1)."""
    events = golden_events()
    _assert_same(events, [events, events])
