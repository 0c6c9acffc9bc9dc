"""F12 as a property of the set-based rebuild and merge: each workspace's rows are its own.

The stores' side of tests/fold/test_tenancy.py: histories from
``scenarios.histories(tenants=True)``, folded together in any order, with
redeliveries and any batching, by the set-based rebuild and the set-based
merge, must give every workspace the rows of folding its events alone.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.golden import golden_events
from tests.fixtures.projections import dump, fold_in_batches
from tests.fixtures.scenarios import fold_alone, histories, hostile, rows_of, workspaces_of
from tests.store.test_setfold import _sql_rows, _state_rows
from tests.store.test_setmerge import _merged_rows

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=st.data(), events=histories(tenants=True))
def test_set_based_rebuild_keeps_each_workspace_to_its_own_events(data, events):
    mixed = _sql_rows(hostile(events, data))
    for ws in workspaces_of(events):
        assert rows_of(mixed, ws) == _state_rows(fold_alone(events, ws)), ws


@FAST
@given(data=st.data(), events=histories(tenants=True))
def test_set_based_merge_keeps_each_workspace_to_its_own_events(data, events):
    stream = hostile(events, data)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4), label="cuts"))
    bounds = [0, *cuts, len(stream)]
    mixed = _merged_rows([stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)])
    for ws in workspaces_of(events):
        assert rows_of(mixed, ws) == _state_rows(fold_alone(events, ws)), ws


def test_tenancy_example_keeps_campaigns_apart_in_every_fold():
    """The contract's tenancy example: all three folds, per workspace, equal the fold alone."""
    events = golden_events("tenancy")
    python = dump(fold_in_batches(events, []))
    rebuilt = _sql_rows(events)
    merged = _merged_rows([[ev] for ev in reversed(events)])
    for ws in workspaces_of(events):
        alone = fold_alone(events, ws)
        assert rows_of(python, ws) == dump(alone)
        assert rows_of(rebuilt, ws) == _state_rows(alone)
        assert rows_of(merged, ws) == _state_rows(alone)
