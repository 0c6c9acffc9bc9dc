"""The invariant mode (``PROJECTOR_CHECK_INVARIANTS``): memory against DuckDB after each flush.

A real DuckDB file; the broken memory comes from deliberately broken copies
of the code that keeps it (``Committed.note_heads``, ``Committed.note_runs``), as a
regression there would break it.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.intake.pipeline import Pipeline
from projector.intake.worker import EXIT_INVARIANT_BROKEN
from projector.settings import Settings
from projector.store.committed import Committed
from projector.store.errors import InvariantError, StoreError
from projector.store.writer import Store, live_store
from tests.fixtures.golden import golden_events, golden_lines


def _off_by_one_heads(self, changed, seq):  # noqa: ANN001, ANN202
    """``Committed.note_heads`` with a bug: every campaign a flush changed is one flush behind."""
    for ws, cid in changed:
        self._heads[cid] = {**self._heads.get(cid, {}), ws: seq - 1}


def _forgetful_runs(self, runs):  # noqa: ANN001, ANN202
    """``Committed.note_runs`` with a bug: a run already known is never updated again."""
    for row in runs:
        current = self._runs.get(row.campaign_key, {})
        if row.run_id not in current:
            self._runs[row.campaign_key] = {**current, row.run_id: row}


@pytest.mark.parametrize("merge_min", [0, 1], ids=["python-fold", "set-merge"])
def test_memory_equals_duckdb_after_every_flush_in_a_hostile_order(tmp_path, merge_min):
    events = golden_events()
    random.Random(31).shuffle(events)
    with Store(tmp_path / "p.duckdb", merge_min_events=merge_min, check_invariants=True) as store:
        for i in range(0, len(events), 7):
            store.flush(events[i : i + 7], {("t", 0): i + 7})
        store.flush(events, {})  # a redelivery of everything changes nothing
        assert store.seq == len(range(0, len(events), 7)) + 1


@pytest.mark.parametrize("merge_min", [0, 1], ids=["python-fold", "set-merge"])
def test_a_broken_head_update_stops_the_flush_naming_campaign_flush_and_both_heads(
    tmp_path, monkeypatch, merge_min
):
    events = golden_events()
    monkeypatch.setattr(Committed, "note_heads", _off_by_one_heads)
    with Store(tmp_path / "p.duckdb", merge_min_events=merge_min, check_invariants=True) as store:
        with pytest.raises(InvariantError) as caught:
            store.flush(events, {("t", 0): 10})
        said = str(caught.value)
        assert said.startswith("after flush 1, campaign ")
        cid, ws = said.split("campaign ", 1)[1].split(":", 1)[0].split(" of workspace ")
        assert (ws, cid) in {(e.workspace_id, e.campaign_id) for e in events}, said
        assert "memory holds position 0, DuckDB 1" in said, said
        # The flush itself committed: DuckDB is right, only memory is not.
        assert store.offsets() == {("t", 0): 10}


def test_a_broken_run_update_names_the_run_in_both_versions(tmp_path, monkeypatch):
    events = golden_events()
    monkeypatch.setattr(Committed, "note_runs", _forgetful_runs)
    with Store(tmp_path / "p.duckdb", check_invariants=True) as store:
        with pytest.raises(InvariantError) as caught:
            for i in range(0, len(events), 5):
                store.flush(events[i : i + 5], {})
    said = str(caught.value)
    assert "memory holds runs RunRow(workspace_id=" in said, said
    assert ", DuckDB RunRow(workspace_id=" in said, said


def test_without_the_mode_nothing_is_compared(tmp_path, monkeypatch):
    """Off by default: the broken head update goes unnoticed by the store itself."""
    monkeypatch.setattr(Committed, "note_heads", _off_by_one_heads)
    with Store(tmp_path / "p.duckdb") as store:
        store.flush(golden_events(), {})


def test_the_mode_is_off_by_default_and_on_from_the_environment(tmp_path, monkeypatch):
    assert Settings().check_invariants is False
    assert live_store(Settings(db=tmp_path / "a.duckdb")).check_invariants is False
    monkeypatch.setenv("PROJECTOR_CHECK_INVARIANTS", "1")
    assert live_store(Settings(db=tmp_path / "b.duckdb")).check_invariants is True


def test_the_pipeline_never_retries_a_broken_invariant_and_says_so(tmp_path, monkeypatch):
    """A store error is retried (the flush rolled back); a broken invariant is not (the
    flush committed, memory is wrong): the host is told once and the batch kept."""
    monkeypatch.setattr(Committed, "note_heads", _off_by_one_heads)
    told: list[InvariantError] = []

    async def go() -> None:
        with Store(tmp_path / "p.duckdb", check_invariants=True) as store:
            p = Pipeline(
                store, executor=ThreadPoolExecutor(max_workers=1), deadletters=None,
                status=PipelineStatus(), metrics=Metrics(),
                flush_max_events=10_000, flush_interval_ms=60_000,
            )  # fmt: skip
            p.prepare({("campaign.runs", 0): 0})
            p.on_invariant_broken = told.append
            await p.add("campaign.runs", 0, 0, None, golden_lines()[0].encode())
            with pytest.raises(InvariantError):
                await p.flush()
            assert p.metrics.flush_failures._value.get() == 0  # noqa: SLF001 - not a retry
            assert p.status.snapshot().last_error == str(told[0])
            assert p._batch.records == 1  # noqa: SLF001 - kept, never acked

    asyncio.run(go())
    assert len(told) == 1


def test_a_broken_invariant_stops_the_process_with_its_message() -> None:
    """``projector serve`` and ``worker`` exit at once, status 70, the message logged."""
    code = (
        "import logging; logging.basicConfig()\n"
        "from projector.store.errors import InvariantError\n"
        "from projector.intake.worker import stop_on_broken_invariant\n"
        "stop_on_broken_invariant(InvariantError('after flush 7, campaign c1 of workspace w: "
        "memory holds position 6, DuckDB 7'))\n"
        "print('still running')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_INVARIANT_BROKEN == 70
    assert "invariant broken, stopping: after flush 7, campaign c1" in done.stderr
    assert "still running" not in done.stdout


def test_a_check_that_cannot_read_duckdb_is_a_store_error(tmp_path):
    from projector.store.invariants import check_memory

    with Store(tmp_path / "p.duckdb") as store:
        store.con.execute("ALTER TABLE campaign_positions RENAME TO gone")
        with pytest.raises(StoreError, match="invariant check of flush 3 could not read"):
            check_memory(store.con, 3, ["c1"], store.polled)
