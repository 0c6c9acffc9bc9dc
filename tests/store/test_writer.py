"""The DuckDB store holds exactly what the pure fold computes.

A real DuckDB file in tmp_path; no mocks. The in-memory ``State`` is the
oracle: any batching of any order into DuckDB must read back row for row.
"""

from __future__ import annotations

import dataclasses
import random

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.fold.state import State
from projector.store import keyed as store_module
from projector.store.bookkeeping import DeadLetter
from projector.store.writer import Store
from schemas import EVENT_ADAPTER
from schemas.fastdecode import FastEvent, fast_events
from tests.fixtures.golden import golden_events
from tests.fixtures.projections import dump, read_all
from tests.fixtures.scenarios import histories


def assert_runs_in_memory_match(store: Store) -> None:
    """The API builds status and analytics from Store.runs_of: it must be the table."""
    table = read_all(store)["runs"]
    campaigns = {key[:2] for key in table} | set(store.committed._runs)  # noqa: SLF001
    memory = {r.key: dataclasses.asdict(r) for c in campaigns for r in store.runs_of(c)}
    assert memory == table


def test_golden_into_duckdb_equals_in_memory_fold(tmp_path):
    events = golden_events()
    rng = random.Random(7)
    rng.shuffle(events)
    with Store(tmp_path / "p.duckdb", check_invariants=True) as store:
        for i in range(0, len(events), 10):
            store.flush(events[i : i + 10], {("t", 0): i + 10})
        got = read_all(store)
        assert store.offsets() == {("t", 0): 150}  # 147 events in flushes of 10
    state = State()
    state.apply(golden_events())
    assert got == dump(state)


def events_of(items):
    return [EVENT_ADAPTER.validate_json(e.json) if isinstance(e, FastEvent) else e for e in items]


def _as_fast(ev):
    """The event as ``schemas.fastdecode`` decodes its JSON (the model if it declines)."""
    got = fast_events(ev.model_dump_json().encode())
    return ev if got is None else got[0][0]


def stored_heads(store: Store) -> dict[str, dict[str, int]]:
    """{campaign_id: {workspace_id: position}} as the tables say."""
    heads: dict[str, dict[str, int]] = {}
    for ws, cid, pos in store.con.execute(
        "SELECT c.workspace_id, c.campaign_id, p.position FROM campaigns c "
        "JOIN campaign_positions p USING (workspace_id, campaign_id)"
    ).fetchall():
        heads.setdefault(cid, {})[ws] = pos
    return heads


def assert_heads_match(store: Store) -> None:
    """Every campaign's head (per workspace, its position) is the table's."""
    stored = stored_heads(store)
    noted = store.committed._heads  # noqa: SLF001
    assert {cid: dict(store.heads(cid)) for cid in stored | noted} == stored


@pytest.mark.parametrize(
    ("cache_rows", "merge_min"),
    [(1_000_000, 0), (3, 0), (0, 0), (1_000_000, 4), (3, 1)],
    ids=["whole-state-cache", "evicting-cache", "no-cache", "sql-merge-large", "sql-merge-all"],
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), events=histories())
def test_any_batching_into_duckdb_equals_the_fold(cache_rows, merge_min, data, events):
    """Flushes of at least ``merge_min`` events go through the set-based merge.

    Some events come as the live pipeline's fast decoder gives them
    (``FastEvent``: canonical JSON), mixed with models.
    """
    shuffled = data.draw(st.permutations(events))
    order = [_as_fast(ev) if data.draw(st.booleans()) else ev for ev in shuffled]
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(order)), max_size=6))))
    with Store(
        ":memory:", cache_max_rows=cache_rows, merge_min_events=merge_min, check_invariants=True
    ) as store:
        start = 0
        for cut in [*cuts, len(order)]:
            store.flush(order[start:cut], {("t", 0): cut})
            start = cut
            assert_runs_in_memory_match(store)
            assert_heads_match(store)
            # After every flush, not only at the end: a later flush (the full
            # redelivery below, a merge) could repair what a stale cache broke.
            so_far = State()
            so_far.apply(events_of(order[:cut]))
            assert read_all(store) == dump(so_far)
        store.flush(order, {})  # a full redelivery changes nothing
        got = read_all(store)
    state = State()
    state.apply(events)
    assert got == dump(state)


def test_reopen_keeps_rows_offsets_and_sequence(tmp_path):
    path = tmp_path / "p.duckdb"
    with Store(path) as store:
        r = store.flush(golden_events()[:50], {("campaign.runs", 0): 12, ("campaign.dlrs", 3): 40})
        assert r.seq == 1 and r.events == 50
    with Store(path) as store:
        assert store.offsets() == {("campaign.runs", 0): 12, ("campaign.dlrs", 3): 40}
        assert store.seq == 1
        assert store.flush([], {("campaign.runs", 0): 13}).seq == 2


def test_deadletters_are_counted_once_per_source_position(tmp_path):
    with Store(tmp_path / "p.duckdb") as store:
        dl = [DeadLetter("campaign.runs", 1, 5, -1, "invalid_json: Expecting value")]
        store.flush([], {("campaign.runs", 1): 6}, dl)
        store.flush([], {("campaign.runs", 1): 6}, dl)  # reprocessed after a crash
        rows = store.con.execute(
            "SELECT reason_code, count(*) FROM deadletters GROUP BY 1"
        ).fetchall()
    assert rows == [("invalid_json", 1)]


def test_a_failed_flush_leaves_rows_and_offsets_untouched(tmp_path):
    with Store(tmp_path / "p.duckdb") as store:
        store.flush(golden_events()[:20], {("t", 0): 20})
        before = read_all(store)
        # Make the offsets write fail after the projection rows were written.
        store.con.execute("DROP TABLE source_offsets")
        store.con.execute(
            "CREATE TABLE source_offsets (topic VARCHAR, partition INTEGER CHECK (partition < 0), "
            "next_offset BIGINT, last_offset BIGINT, last_digest BIGINT)"
        )
        with pytest.raises(Exception, match="rolled back"):
            store.flush(golden_events()[20:], {("t", 0): 147})
        assert read_all(store) == before


def test_a_reopened_database_reads_misses_from_duckdb(tmp_path):
    """After a restart the cache is cold and incomplete: rows must come from DuckDB."""
    events = golden_events()
    rng = random.Random(3)
    rng.shuffle(events)
    path = tmp_path / "p.duckdb"
    for i in range(0, len(events), 30):  # a new process (cold cache) per chunk
        with Store(path, cache_max_rows=50) as store:
            store.flush(events[i : i + 30], {("t", 0): i + 30})
    with Store(path) as store:
        got = read_all(store)
    state = State()
    state.apply(golden_events())
    assert got == dump(state)


@pytest.mark.parametrize(
    ("chunk", "chunked_max"), [(3, 1_000), (50, 1_000), (3, 5)], ids=["chunks", "one-chunk", "scan"]
)
def test_delivery_reports_find_their_recipients_by_chunks_or_by_one_scan(
    tmp_path, monkeypatch, chunk, chunked_max
):
    """Reports whose recipients are not cached are matched on message_id in DuckDB:
    in chunks (served by the index), or past a bound in one scan. Same rows."""
    monkeypatch.setattr(store_module, "KEY_CHUNK", chunk)
    monkeypatch.setattr(store_module, "KEY_CHUNKED_MAX", chunked_max)
    monkeypatch.setattr(store_module, "KEY_CHUNK_MIN_ROWS", 0)  # chunk even this small store
    events = golden_events()
    dlrs = [e for e in events if e.type == "message.dlr"]
    assert len({e.message_id for e in dlrs}) > 5  # more ids than the small bounds
    path = tmp_path / "p.duckdb"
    with Store(path) as store:
        store.flush([e for e in events if e.type != "message.dlr"], {("t", 0): 1})
    with Store(path, cache_max_rows=0) as store:  # every holder comes from DuckDB
        assert store.con.execute(
            "SELECT count(*) FROM duckdb_indexes() WHERE index_name = 'recipients_by_message'"
        ).fetchone() == (1,)
        store.flush(dlrs, {("t", 0): 2})
        got = read_all(store)
    state = State()
    state.apply(events)
    assert got == dump(state)


def test_in_memory_campaign_heads_match_the_tables(tmp_path):
    """The API trusts Store.head for polls: it must equal what the tables say."""
    path = tmp_path / "p.duckdb"
    events = golden_events()
    with Store(path, cache_max_rows=20, check_invariants=True) as store:
        for i in range(0, len(events), 25):
            store.flush(events[i : i + 25], {("t", 0): i + 25})
        live = {cid: dict(store.heads(cid)) for cid in {e.campaign_id for e in events}}
    with Store(path) as store:  # reopened: heads loaded from the tables
        table = stored_heads(store)
        assert live == table
        assert {cid: dict(store.heads(cid)) for cid in table} == table
        assert store.heads("no-such-campaign") == {}
        assert_runs_in_memory_match(store)  # reopened: runs loaded from the table
        assert store.runs_of(("ws", "no-such-campaign")) == []


def test_the_live_store_limits_duckdb_threads_for_every_cursor(tmp_path):
    """``duckdb_threads`` bounds DuckDB's pool for the writer and the API's cursors alike."""
    from projector.settings import Settings
    from projector.store.writer import live_store

    def threads(con) -> int:
        return int(con.execute("SELECT current_setting('threads')").fetchone()[0])

    with live_store(Settings(db=tmp_path / "live.duckdb", duckdb_threads=1)) as store:
        store.flush(golden_events(), {("campaign.runs", 0): 10})
        assert threads(store.con) == 1
        assert threads(store.cursor()) == 1
    # 0 leaves DuckDB's default (one per core), as for rebuilds.
    default = threads(duckdb.connect())
    with live_store(Settings(db=tmp_path / "live.duckdb", duckdb_threads=0)) as store:
        assert threads(store.con) == default


def test_the_live_store_takes_its_cache_bound_from_the_settings(tmp_path):
    """``PROJECTOR_CACHE_MAX_ROWS`` reaches the writer: past it the cache is dropped."""
    from projector.settings import Settings
    from projector.store.writer import live_store

    for bound, kept in ((1_000_000, True), (5, False)):
        path = tmp_path / f"live-{bound}.duckdb"
        with live_store(Settings(db=path, cache_max_rows=bound)) as store:
            store.flush(golden_events(), {("campaign.runs", 0): 10})
            assert (store._prior.cache.size() > 0) is kept  # noqa: SLF001


def test_the_live_store_takes_merge_and_checkpoint_settings(tmp_path):
    """``PROJECTOR_MERGE_MIN_EVENTS`` and ``..._DUCKDB_CHECKPOINT_THRESHOLD`` reach the writer."""
    from projector.settings import Settings
    from projector.store.writer import live_store

    events = golden_events()
    for merge_min, merged in ((len(events), True), (len(events) + 1, False), (0, False)):
        path = tmp_path / f"live-{merge_min}.duckdb"
        settings = Settings(db=path, merge_min_events=merge_min, duckdb_checkpoint_threshold="3MB")
        with live_store(settings) as store:
            store.flush(events, {("campaign.runs", 0): 10})
            # A merge leaves the row cache empty; the Python fold fills it.
            assert (store._prior.cache.size() == 0) is merged  # noqa: SLF001
            threshold = store.con.execute("SELECT current_setting('checkpoint_threshold')")
            assert threshold.fetchone()[0] == "2.8 MiB"
            # A merge runs on two DuckDB threads, then gives the second back.
            threads = store.con.execute("SELECT current_setting('threads')").fetchone()[0]
            assert int(threads) == settings.duckdb_threads == 1


def test_a_merged_flush_writes_recipients_in_list_order(tmp_path):
    """As the Python path does: run detail's top 500 prunes row groups by zone maps."""
    events = golden_events()
    random.Random(3).shuffle(events)
    with Store(tmp_path / "m.duckdb", merge_min_events=1) as store:
        store.flush(events, {("t", 0): 1})
        stored = store.con.execute(
            "SELECT workspace_id, campaign_id, run_id, batch_sequence, recipient_id "
            "FROM recipients ORDER BY rowid"
        ).fetchall()
    assert len(stored) > 1
    assert stored == sorted(stored, key=lambda r: (*r[:3], r[3] is None, r[3] or 0, r[4]))


def test_a_failed_rebuild_says_why_and_leaves_the_connection_as_it_was(tmp_path):
    """The rebuild's insert-order setting is undone after a failure too (after the rollback)."""
    from projector.store.errors import StoreError

    def order(store: Store) -> bool:
        setting = "SELECT current_setting('preserve_insertion_order')"
        return bool(store.con.execute(setting).fetchone()[0])

    with Store(tmp_path / "rebuilt.duckdb") as store:
        with pytest.raises(StoreError, match="rebuild failed and was rolled back.*no_such_table"):
            store.rebuild("(SELECT * FROM no_such_table)", {})
        assert order(store) is True
        store.con.execute("SELECT count(*) FROM runs").fetchone()  # usable: not left aborted
    with Store(tmp_path / "rebuilt2.duckdb") as store:
        from projector.store.setfold import typed

        source = typed(
            "(SELECT 'campaign.defined' AS event_type, "
            "'{\"campaign_id\": \"c1\", \"workspace_id\": \"w1\"}' AS event)"
        )
        assert store.rebuild(source, {("campaign.runs", 0): 1}) == 1
        assert order(store) is True
