"""F12 as a property: each workspace's projections are what its own events alone give.

Histories from ``scenarios.histories(tenants=True)`` put two or three
campaigns, in two workspaces and with one campaign id in both, on the same
run, batch, recipient and message ids. Folded together in any order, with
redeliveries and any batching, by the Python fold, the set-based rebuild and
the set-based merge, every workspace's rows must equal those of folding that
workspace's events alone: no id of one tenant reaches another's rows.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.fold.state import State
from tests.fixtures.golden import golden_events
from tests.fixtures.scenarios import histories
from tests.fold.test_properties import dump, fold_in_batches
from tests.store.test_setfold import _sql_rows, _state_rows
from tests.store.test_setmerge import _merged_rows

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _workspaces(events: list[Any]) -> set[str]:
    return {ev.workspace_id for ev in events}


def _alone(events: list[Any], ws: str) -> State:
    state = State()
    state.apply([ev for ev in events if ev.workspace_id == ws])
    return state


def _of(rows: dict[str, dict[Any, Any]], ws: str) -> dict[str, dict[Any, Any]]:
    """The rows of one workspace: every key starts with its workspace_id."""
    return {name: {k: v for k, v in table.items() if k[0] == ws} for name, table in rows.items()}


def _hostile(events: list[Any], data: st.DataObject) -> list[Any]:
    """``events`` shuffled, with redeliveries at random places."""
    if not events:
        return []
    dups = data.draw(st.lists(st.sampled_from(events), max_size=len(events)), label="dups")
    return data.draw(st.permutations(events + dups), label="order")


@FAST
@given(data=st.data(), events=histories(tenants=True))
def test_python_fold_keeps_each_workspace_to_its_own_events(data, events):
    stream = _hostile(events, data)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    mixed = dump(fold_in_batches(stream, cuts))
    for ws in _workspaces(events):
        assert _of(mixed, ws) == dump(_alone(events, ws)), ws


@FAST
@given(data=st.data(), events=histories(tenants=True))
def test_set_based_rebuild_keeps_each_workspace_to_its_own_events(data, events):
    mixed = _sql_rows(_hostile(events, data))
    for ws in _workspaces(events):
        assert _of(mixed, ws) == _state_rows(_alone(events, ws)), ws


@FAST
@given(data=st.data(), events=histories(tenants=True))
def test_set_based_merge_keeps_each_workspace_to_its_own_events(data, events):
    stream = _hostile(events, data)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4), label="cuts"))
    bounds = [0, *cuts, len(stream)]
    mixed = _merged_rows([stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)])
    for ws in _workspaces(events):
        assert _of(mixed, ws) == _state_rows(_alone(events, ws)), ws


def test_tenancy_example_keeps_campaigns_apart_in_every_fold():
    """The contract's tenancy example: all three folds, per workspace, equal the fold alone."""
    events = golden_events("tenancy")
    python = dump(fold_in_batches(events, []))
    rebuilt = _sql_rows(events)
    merged = _merged_rows([[ev] for ev in reversed(events)])
    for ws in _workspaces(events):
        alone = _alone(events, ws)
        assert _of(python, ws) == dump(alone)
        assert _of(rebuilt, ws) == _state_rows(alone)
        assert _of(merged, ws) == _state_rows(alone)

