"""The stall watchdog's judgement (``Pipeline.stalled``), without a broker.

A partition silent since assignment is re-sought only when the consumer
group had committed past DuckDB: the end-to-end case is
``tests/intake/test_worker.py::test_a_fresh_database_rebuilds_all_history_even_when_the_group_committed_the_end``.
Here, the other side: a partition merely waiting behind a backlog is left alone.
"""

from __future__ import annotations

import time

from projector.store.writer import Store
from tests.intake.test_logmarks import DLRS, RUNS, _pipeline, _records

END = {RUNS: 50, DLRS: 50}


def test_a_partition_silent_since_assignment_is_re_sought_only_if_the_group_was_past_duckdb(
    tmp_path,
):
    with Store(tmp_path / "p.duckdb") as store:
        p = _pipeline(store)  # DuckDB needs offset 0 of both
        p.assigned({RUNS, DLRS})
        assert p.stalled(END, 0.0, {}) == {}  # no committed offset: fetching from 0
        assert p.stalled(END, 0.0, {RUNS: 0, DLRS: None}) == {}  # at DuckDB's offset
        assert p.stalled(END, 0.0, {RUNS: 40}) == {RUNS: 0}  # moved past: seek back
        assert p.stalled(END, 3600.0, {RUNS: 40}) == {}  # not silent for long enough
        assert p.stalled({RUNS: 0}, 0.0, {RUNS: 40}) == {}  # nothing below the log end


def test_a_partition_that_delivered_is_never_re_sought(tmp_path):
    import asyncio

    with Store(tmp_path / "p.duckdb") as store:
        p = _pipeline(store)
        p.assigned({RUNS})
        asyncio.run(p.add(*RUNS, 0, None, _records()[0]))
        p.last_seen[RUNS] = time.monotonic() - 10  # quiet since, e.g. behind a slow flush
        assert p.stalled(END, 1.0, {RUNS: 40}) == {}
