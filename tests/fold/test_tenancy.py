"""F12 as a property: each workspace's projections are what its own events alone give.

Histories from ``scenarios.histories(tenants=True)`` put two or three
campaigns, in two workspaces and with one campaign id in both, on the same
run, batch, recipient and message ids. Folded together in any order, with
redeliveries and any batching, by the Python fold, every workspace's rows
must equal those of folding that workspace's events alone: no id of one
tenant reaches another's rows. The set-based rebuild and merge are held to
the same in tests/store/test_tenancy.py.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.projections import dump, fold_in_batches
from tests.fixtures.scenarios import fold_alone, histories, hostile, rows_of, workspaces_of

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=st.data(), events=histories(tenants=True))
def test_python_fold_keeps_each_workspace_to_its_own_events(data, events):
    stream = hostile(events, data)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    mixed = dump(fold_in_batches(stream, cuts))
    for ws in workspaces_of(events):
        assert rows_of(mixed, ws) == dump(fold_alone(events, ws)), ws
