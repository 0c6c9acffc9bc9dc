"""A store per partition: each shard holds exactly its partition's rows and offsets.

Real DuckDB files in tmp_path; the pure fold is the oracle. Events go to the
partition the contract's partitioner gives their campaign id, as producers
put them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from projector.fold.state import State
from projector.settings import Settings
from projector.store.bookkeeping import DeadLetter
from projector.store.errors import StoreError
from projector.store.shards import (
    SHARD_MEMORY_FLOOR,
    ShardLocked,
    Shards,
    live_shards,
    shard_path,
    size_bytes,
    stored_partitions,
)
from projector.store.writer import Store
from schemas.partitioner import partition_of
from tests.fixtures.golden import golden_events
from tests.fixtures.projections import dump, read_all
from tests.fixtures.scenarios import histories

FEW = settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TOPIC = "campaign.events"
PARTITIONS = 4


def new_shards(root) -> Shards:
    shards = Shards(root, lambda path: Store(path, check_invariants=True)).open()
    shards.partitions = PARTITIONS
    return shards


def flush_all(shards: Shards, events, size: int, sent: dict[int, int]) -> None:
    """Flush ``events`` in batches of ``size`` as the pipeline would: each event with
    its partition, each partition's next offset counted per partition in ``sent``."""
    for i in range(0, len(events), size):
        batch = events[i : i + size]
        parts = [partition_of(ev.campaign_id, PARTITIONS) for ev in batch]
        for p in parts:
            sent[p] = sent.get(p, 0) + 1
        offsets = {(TOPIC, p): sent[p] for p in set(parts)}
        shards.flush(batch, offsets, partitions=parts)


def union(shards: Shards) -> dict:
    out: dict = {}
    for p in sorted(shards.attached):
        rows = read_all(shards.shard(p))
        for table, keyed in rows.items():
            out.setdefault(table, {}).update(keyed)
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=histories(tenants=True), size=st.integers(1, 40))
def test_the_shards_together_hold_exactly_the_fold(tmp_path_factory, events, size):
    root = tmp_path_factory.mktemp("shards")
    with new_shards(root) as shards:
        for p in range(PARTITIONS):
            shards.attach(p)
        sent: dict[int, int] = {}
        flush_all(shards, events, size, sent)
        state = State()
        state.apply(events)
        assert union(shards) == dump(state)
        for p in range(PARTITIONS):
            store = shards.shard(p)
            # A shard holds its partition's campaigns only, and its partition's offsets.
            campaigns = read_all(store)["campaigns"]
            assert {partition_of(cid, PARTITIONS) for _, cid in campaigns} <= {p}
            assert store.offsets() == ({(TOPIC, p): sent[p]} if p in sent else {})


@FEW
@given(events=histories(tenants=True))
def test_a_partition_moves_alone_by_its_file(tmp_path_factory, events):
    tmp_path = tmp_path_factory.mktemp("shards")
    with new_shards(tmp_path) as first:
        for p in range(PARTITIONS):
            first.attach(p)
        flush_all(first, events, 7, {})
        before = {p: read_all(first.shard(p)) for p in range(PARTITIONS)}
        offsets = {p: first.shard(p).offsets() for p in range(PARTITIONS)}
        first.detach(2)
        assert first.attached == frozenset({0, 1, 3})
    assert stored_partitions(tmp_path) == [0, 1, 2, 3]
    with new_shards(tmp_path) as second:
        store = second.attach(2)
        assert read_all(store) == before[2]
        assert store.offsets() == offsets[2]
        # Its memory, for the API, came with it.
        for ws, cid in before[2]["campaigns"]:
            assert ws in second.heads(cid)


@FEW
@given(events=histories(tenants=True), parallel=st.sampled_from([1, 4]))
def test_a_retried_flush_skips_the_shards_that_committed(tmp_path_factory, events, parallel):
    """A crash between two shards' commits (flushed one after the other, or side by
    side): the retry must not apply a share twice, nor skip the one that failed."""
    with (
        new_shards(tmp_path_factory.mktemp("shards")) as shards,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        shards.parallel = parallel
        for p in range(PARTITIONS):
            shards.attach(p)
        parts = [partition_of(ev.campaign_id, PARTITIONS) for ev in events]
        touched = sorted(set(parts))
        assume(len(touched) >= 2)
        offsets = {(TOPIC, p): parts.count(p) for p in touched}
        letters = [DeadLetter(TOPIC, p, 0, -1, "bad: test") for p in touched]
        last = shards.shard(touched[-1])
        real = last.flush
        calls = {"n": 0}

        def failing(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 1:
                raise StoreError("disk full (test)")
            return real(*args, **kwargs)

        monkeypatch.setattr(last, "flush", failing)
        with pytest.raises(StoreError):
            shards.flush(events, offsets, letters, partitions=parts)
        shards.flush(events, offsets, letters, partitions=parts)
        state = State()
        state.apply(events)
        assert union(shards) == dump(state)
        for p in touched:
            con = shards.shard(p).con
            assert con.execute("SELECT count(*) FROM deadletters").fetchone()[0] == 1


@FEW
@given(events=histories(tenants=True))
def test_a_share_of_a_partition_not_held_here_is_left(tmp_path_factory, events):
    with new_shards(tmp_path_factory.mktemp("shards")) as shards:
        shards.attach(0)
        parts = [partition_of(ev.campaign_id, PARTITIONS) for ev in events]
        offsets = {(TOPIC, p): parts.count(p) for p in set(parts)}
        shards.flush(events, offsets, partitions=parts)
        mine = [ev for ev, p in zip(events, parts, strict=True) if p == 0]
        state = State()
        state.apply(mine)
        assert read_all(shards.shard(0)) == dump(state)
        assert shards.offsets() == ({(TOPIC, 0): parts.count(0)} if 0 in parts else {})


def test_a_flush_without_partitions_is_refused(tmp_path):
    events = golden_events()
    with new_shards(tmp_path) as shards, pytest.raises(StoreError, match="source partition"):
        shards.flush(events, {(TOPIC, 0): 1})


def test_a_shard_another_process_holds_is_locked_until_it_lets_go(tmp_path):
    """DuckDB's file lock is the fence on a shared volume."""
    path = shard_path(tmp_path, 1)
    Store(path).open().close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, duckdb
            con = duckdb.connect({str(path)!r})
            print("held", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == b"held"
        with new_shards(tmp_path) as shards:
            with pytest.raises(ShardLocked):
                shards.attach(1)
            assert not shards.holds(1)
            holder.stdin.write(b"\n")
            holder.stdin.flush()
            holder.wait(timeout=30)
            assert shards.attach(1) is shards.shard(1)
    finally:
        holder.kill()
        holder.wait()


def test_each_shard_gets_a_share_of_the_nodes_budget(tmp_path):
    settings = Settings(data_dir=tmp_path, duckdb_memory_limit="8GB", cache_max_rows=1_600_000)
    shards = live_shards(settings).open()
    shards.partitions = 16
    with shards:
        store = shards.attach(3)
        assert store.cache_max_rows == 100_000
        assert store.memory_limit == f"{8 * 10**9 // 16 // 2**20}MiB"
    shards = live_shards(Settings(data_dir=tmp_path, duckdb_memory_limit="1GB")).open()
    shards.partitions = 64
    with shards:
        assert shards.attach(0).memory_limit == f"{SHARD_MEMORY_FLOOR // 2**20}MiB"


def test_sizes_are_read_as_duckdb_reads_them():
    assert size_bytes("2GB") == 2 * 10**9
    assert size_bytes("512MiB") == 512 * 2**20
    assert size_bytes(" 1.5 gib ") == int(1.5 * 2**30)
    assert size_bytes("lots") is None
