"""``bench.shard_cost`` routes as producers do and writes each partition to its own file."""

from __future__ import annotations

import duckdb
import pytest
from aiokafka.partitioner import DefaultPartitioner

from bench.shard_cost import Layout, consumed, parse_variant, partition_of, route
from schemas.topics import TOPIC_KIND_OF_TYPE


@pytest.fixture(scope="module")
def events() -> list:
    return consumed(3000, campaigns=12, recipients=40)


def test_partition_of_is_aiokafkas_default_partitioner():
    ids = [f"cmp_{i:04d}" for i in range(200)] + ["", "é-ünïcode"]
    for n in (1, 4, 16, 64):
        every = list(range(n))
        assert [partition_of(c, n) for c in ids] == [
            DefaultPartitioner()(c.encode(), every, every) for c in ids
        ]


def test_each_store_gets_its_partitions_events_and_next_offsets(events):
    flushes = route(events, 500, 4, 4, {})
    assert sum(len(part.events) for f in flushes for part in f.values()) == len(events)
    seen: dict[tuple[str, int], int] = {}
    for flush in flushes:
        for store, part in flush.items():
            assert {partition_of(ev.campaign_id, 4) for ev in part.events} == {store}
            assert {p for _, p in part.offsets} == {store}
            for tp, nxt in part.offsets.items():
                assert nxt > seen.get(tp, 0)
                seen[tp] = nxt
    # Next offsets count the single-event records of each topic's partition.
    for (kind, p), nxt in seen.items():
        assert nxt == sum(
            1 for ev in events
            if TOPIC_KIND_OF_TYPE[ev.type] == kind and partition_of(ev.campaign_id, 4) == p
        )


def test_one_store_takes_every_partitions_offsets(events):
    flushes = route(events, 1000, 16, 1, {})
    assert all(list(f) == [0] for f in flushes)
    assert {p for f in flushes for (_, p) in f[0].offsets} == {
        partition_of(ev.campaign_id, 16) for ev in events
    }


def test_variants_are_checked():
    assert parse_variant("one") == ("one", 1, False)
    assert parse_variant("attach:16:whole") == ("attach", 16, True)
    assert parse_variant("files:4") == ("files", 4, False)
    for bad in ("files:1", "one:4", "many:4"):
        with pytest.raises(SystemExit):
            parse_variant(bad)


@pytest.mark.parametrize("kind", ["files", "attach"])
def test_every_file_holds_only_its_partitions_campaigns(events, tmp_path, kind):
    layout = Layout(kind, 4, tmp_path, "split")
    layout.open()
    for flush in route(events, 700, 4, 4, {}):
        layout.flush(flush, 0)
    layout.close()
    assert layout.cache_max_rows == 250_000
    # DuckDB reads "2GB" as 2 * 1000**3 bytes: a quarter is 476 MiB.
    assert layout.memory_limit == ("476MiB" if kind == "files" else "2GB")
    found: set[str] = set()
    for k in range(4):
        con = duckdb.connect(str(layout.path(k)), read_only=True)
        campaigns = {c for (c,) in con.execute("SELECT campaign_id FROM campaigns").fetchall()}
        offsets = con.execute("SELECT DISTINCT partition FROM source_offsets").fetchall()
        con.close()
        assert {partition_of(c, 4) for c in campaigns} <= {k}
        assert {p for (p,) in offsets} <= {k}
        found |= campaigns
    assert found == {ev.campaign_id for ev in events}
