"""Replay, archive and verify against the real broker and the real worker.

A live database is built by ``projector worker``; ``projector replay`` rebuilds
it from Kafka and from the Parquet archive; ``projector verify`` must find no
difference, and must find one when a row is tampered with.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import given
from hypothesis import strategies as st

from projector.intake.offsets import log_end_offsets
from projector.rebuild.archive import ArchiveWriter, positions, read_archive
from projector.rebuild.replay import replay, start_offsets
from projector.settings import Settings
from projector.store.verify import compare
from projector.store.writer import open_store
from projector.tools.simulate import generate
from schemas import decode_value
from tests.fixtures.kafka import produce
from tests.fixtures.processes import projector_cmd, projector_env
from tests.fixtures.projections import dump, fold_dicts, read_db

pytestmark = pytest.mark.timeout(400)


def _poison(valid: dict) -> list[bytes]:
    bad_item = {**valid, "event_id": 7}
    return [
        b"{not json",
        b"[]",
        orjson.dumps({**valid, "occurred_at": "2026-05-12T10:00:00"}),  # naive timestamp
        # An array record with good and bad items: dead letters by item_index.
        b"[" + orjson.dumps(valid) + b"," + orjson.dumps(bad_item) + b', {"type": "x"}]',
    ]


async def _send_raw(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=b"poison")
    finally:
        await producer.stop()


def _deadletters(db: Path) -> set[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return set(
            con.execute(
                "SELECT source_topic, source_partition, source_offset, item_index, reason_code "
                "FROM deadletters"
            ).fetchall()
        )


def _run(procs, *args: str, env: dict, timeout: float = 180) -> str:
    return procs.run(*args, env=env, timeout=timeout, log_name=args[0])


def _verify(a: Path, b: Path, env: dict) -> tuple[int, str]:
    """``projector verify --db A --db B`` as an operator runs it: a subprocess."""
    return _exit_code("verify", "--db", str(a), "--db", str(b), env=env)


def _exit_code(*args: str, env: dict, timeout: float = 60) -> tuple[int, str]:
    p = subprocess.run(projector_cmd(*args), env=env, capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def test_replay_from_kafka_and_from_archive_equal_the_live_database(
    bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory()
    env = projector_env(bootstrap, topics)
    events = list(generate(campaigns=3, recipients=150, seed=21))
    half = len(events) // 2
    # Single-event records, then array records, then poison among them.
    asyncio.run(produce(bootstrap, topics, events[:half]))
    asyncio.run(_send_raw(bootstrap, topics.submits, _poison(events[-1])))
    asyncio.run(produce(bootstrap, topics, events[half:], array_size=25))

    live = tmp_path / "live.duckdb"
    _run(procs, "worker", "--db", str(live), "--until-caught-up", env=env)
    expected = dump(fold_dicts(events))
    assert read_db(live) == expected

    new = tmp_path / "new.duckdb"
    out = _run(procs, "replay", "--db", str(new), env=env)
    assert "projector replay:" in out
    assert read_db(new) == expected
    assert _deadletters(new) == _deadletters(live) and len(_deadletters(live)) == 5
    assert not (tmp_path / "new.duckdb.partial").exists()

    archive = tmp_path / "archive"
    _run(procs, "archive", "--dir", str(archive), "--until-caught-up", env=env)
    archived = list(read_archive(archive))
    assert len(archived) == len(events) + 1  # the good item of the mixed array record
    assert any(index == 0 for *_, index, _ in archived) and any(i == -1 for *_, i, _ in archived)
    # Running it again archives nothing twice.
    _run(procs, "archive", "--dir", str(archive), "--until-caught-up", env=env)
    assert len(list(read_archive(archive))) == len(archived)

    new2 = tmp_path / "new2.duckdb"
    _run(procs, "replay", "--from-archive", str(archive), "--db", str(new2), env=env)
    new3 = tmp_path / "new3.duckdb"
    _run(procs, "replay", "--from-archive", str(archive), "--no-kafka", "--db", str(new3), env=env)

    for rebuilt in (new, new2, new3):
        assert compare(live, rebuilt).identical
        code, text = _verify(live, rebuilt, env)
        assert code == 0, text
        assert "IDENTICAL" in text

    # verify can fail: one changed counter and one deleted recipient.
    tampered = tmp_path / "tampered.duckdb"
    shutil.copy(new, tampered)
    with duckdb.connect(str(tampered)) as con:
        run_id = con.execute("SELECT min(run_id) FROM runs").fetchone()[0]
        con.execute("UPDATE runs SET sent = sent + 1 WHERE run_id = ?", [run_id])
        con.execute(
            "DELETE FROM recipients WHERE recipient_id = (SELECT min(recipient_id) FROM recipients)"
        )
    diff = compare(live, tampered)
    assert not diff.identical
    by_name = {t.name: t for t in diff.tables}
    assert by_name["runs"].changed == 1 and by_name["recipients"].only_a == 1
    assert by_name["runs"].samples[0][1]["sent"][1] == by_name["runs"].samples[0][1]["sent"][0] + 1
    code, text = _verify(live, tampered, env)
    assert code == 1, text
    assert "DIFFERENT" in text and "sent" in text
    code, text = _verify(live, tmp_path / "nope.duckdb", env)
    assert code == 2, text


def test_archive_then_kafka_continues_from_the_archive_positions(
    bootstrap, topics_factory, procs, tmp_path
):
    topics = topics_factory()
    env = projector_env(bootstrap, topics)
    events = list(generate(campaigns=2, recipients=120, seed=5))
    cut = len(events) * 2 // 3
    asyncio.run(produce(bootstrap, topics, events[:cut], array_size=10))
    archive = tmp_path / "archive"
    _run(procs, "archive", "--dir", str(archive), "--until-caught-up", env=env)
    archived_at = positions(archive)
    asyncio.run(produce(bootstrap, topics, events[cut:], array_size=10))
    new = tmp_path / "new.duckdb"
    _run(procs, "replay", "--from-archive", str(archive), "--db", str(new), env=env)
    assert read_db(new) == dump(fold_dicts(events))
    ends = asyncio.run(log_end_offsets(bootstrap, topics.sources))
    with duckdb.connect(str(new), read_only=True) as con:
        rows = con.execute("SELECT topic, partition, next_offset FROM source_offsets").fetchall()
        stored = {(t, p): o for t, p, o in rows}
    assert stored == ends
    assert any(archived_at[tp] < ends[tp] for tp in archived_at)


def _after_every_record_so_far() -> datetime:
    """A time later than the timestamp of every record produced so far, and already past.

    Kafka stamps records in whole milliseconds when they are sent, so every
    record acked so far is stamped at or before the current millisecond, and
    every record sent from now on at or after the next one. The answer lies
    inside that next millisecond (``--since`` is cut to milliseconds), and is
    returned once the clock has passed it.
    """
    next_ms = time.time_ns() // 1_000_000 + 1
    since = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=next_ms, microseconds=500)
    while datetime.now(UTC) <= since:
        time.sleep(0.0002)
    return since


def test_since_replays_only_records_from_that_time(bootstrap, topics_factory, procs, tmp_path):
    topics = topics_factory(partitions=2)
    env = projector_env(bootstrap, topics)
    events = list(generate(campaigns=2, recipients=80, seed=9))
    cut = len(events) // 2
    asyncio.run(produce(bootstrap, topics, events[:cut], array_size=5))
    before = asyncio.run(log_end_offsets(bootstrap, topics.sources))
    since = _after_every_record_so_far()
    asyncio.run(produce(bootstrap, topics, events[cut:], array_size=5))

    start, end = asyncio.run(start_offsets(bootstrap, list(topics.sources), since=since))
    assert start == before
    assert any(end[tp] > start[tp] for tp in end)
    new = tmp_path / "new.duckdb"
    _run(procs, "replay", "--db", str(new), "--since", since.isoformat(), env=env)
    assert read_db(new) == dump(fold_dicts(events[cut:]))
    # A time after every record: nothing to replay, every partition at its log end.
    later = asyncio.run(
        start_offsets(bootstrap, list(topics.sources), since=_after_every_record_so_far())
    )
    assert later[0] == later[1]


def test_replay_refuses_an_existing_database(bootstrap, topics_factory, tmp_path):
    topics = topics_factory(partitions=1)
    env = projector_env(bootstrap, topics)
    db = tmp_path / "live.duckdb"
    db.write_bytes(b"precious")
    code, text = _exit_code("replay", "--db", str(db), env=env)
    assert code == 2
    assert "exists" in text
    assert db.read_bytes() == b"precious"
    code, text = _exit_code(
        "replay", "--db", str(tmp_path / "x.duckdb"), "--since", "2026-05-12T10:00:00", env=env
    )
    assert code == 2 and "offset" in text


def test_archive_drops_a_chunk_left_incomplete_by_a_crash(tmp_path):
    events = list(generate(campaigns=1, recipients=60, seed=2))
    records = [orjson.dumps(e) for e in events]
    writer = ArchiveWriter(tmp_path / "a", chunk_events=50)
    for i, r in enumerate(records[:200]):
        writer.add("t", i % 2, i, r)
        if writer.due():
            writer.flush()
    writer.flush()
    complete = positions(tmp_path / "a")
    # A crash between the renames of a chunk: one file of a two-file chunk on disk.
    crashed = ArchiveWriter(tmp_path / "a", chunk_events=10_000)
    for i, r in enumerate(records[200:], start=200):
        crashed.add("t", i % 2, i, r)
    files_before = set((tmp_path / "a").rglob("*.parquet"))
    crashed.flush()
    new_files = sorted(set((tmp_path / "a").rglob("*.parquet")) - files_before)
    assert len(new_files) >= 2
    new_files[0].unlink()
    (new_files[0].parent / f".{new_files[0].name}.tmp").write_bytes(b"half")
    assert positions(tmp_path / "a") == complete  # readers ignore the incomplete chunk
    resumed = ArchiveWriter(tmp_path / "a")  # repairs on start
    assert resumed.positions == complete
    assert not list((tmp_path / "a").rglob("*.tmp"))
    for i, r in enumerate(records[200:], start=200):
        resumed.add("t", i % 2, i, r)
    resumed.flush()
    got = [ev.event_id for *_, ev in read_archive(tmp_path / "a")]
    assert sorted(got) == sorted(e["event_id"] for e in events)


def _archive_rows(root: Path) -> list[dict]:
    rows = []
    for f in sorted(root.rglob("*.parquet")):
        for row in pq.read_table(f).to_pylist():
            row["date"] = f.parent.name
            # The JSON's formatting may differ between the two decoders; its values may not.
            row["event"] = decode_value(row["event"]).events[0].model_dump()
            rows.append(row)
    return sorted(rows, key=lambda r: (r["partition"], r["offset"], r["item_index"]))


def test_the_archives_fast_path_writes_what_the_pydantic_path_writes(tmp_path, monkeypatch):
    """``ArchiveWriter.add`` takes most records through ``schemas.fastdecode``; the
    rows (date folder, position, item index, type, campaign, timestamp, typed
    fields, event values) must be those the pydantic path writes."""
    import projector.rebuild.archive as archive_module

    events = list(generate(campaigns=2, recipients=40, seed=9))
    # Another day in UTC than in its own offset; and one the fast path leaves to pydantic.
    late = {**events[3], "occurred_at": "2026-05-12T23:30:00-02:00"}
    unknown = {**events[4], "unknown": 1}
    records = (
        [orjson.dumps(e) for e in events[:150]]
        + [orjson.dumps(events[i : i + 20]) for i in range(150, len(events), 20)]
        + [orjson.dumps(late), orjson.dumps(unknown)]
        + [orjson.dumps([events[0], {"type": "nope"}]), b"{not json"]
    )

    def write(root: Path) -> None:
        writer = ArchiveWriter(root, chunk_events=120)
        for i, r in enumerate(records):
            writer.add("t", i % 3, i, r)
            if writer.due():
                writer.flush()
        writer.flush()

    write(tmp_path / "fast")
    monkeypatch.setattr(archive_module, "fast_events", lambda data: None)
    write(tmp_path / "pydantic")
    fast, slow = _archive_rows(tmp_path / "fast"), _archive_rows(tmp_path / "pydantic")
    assert len(fast) == len(events) + 3  # late, unknown and the array's valid item
    assert any(r["date"] == "date=2026-05-13" for r in fast)
    assert fast == slow


def _fold_with_python(path, records) -> None:
    """The live path's result: the Python fold, in micro-batches, through the store."""
    with open_store(path) as store:
        for start in range(0, len(records), 97):
            chunk = records[start : start + 97]
            events = [ev for r in chunk for ev in decode_value(r).events]
            store.flush(events, {("t", 0): start + len(chunk)})


def test_archive_rebuild_equals_the_python_fold_for_old_and_new_files(tmp_path):
    """The set-based rebuild reads typed ``fields`` where files have them, JSON where not.

    Archives written before ``fields`` existed must rebuild to the same rows;
    half the files here are rewritten without the column.
    """
    events = list(generate(campaigns=3, recipients=80, seed=5))
    records = [orjson.dumps(e) for e in events] + [b"{not json", b"[]"]
    writer = ArchiveWriter(tmp_path / "a", chunk_events=150)
    for i, r in enumerate(records):
        writer.add("t", 0, i, r)
        if writer.due():
            writer.flush()
    writer.flush()
    files = sorted((tmp_path / "a").rglob("*.parquet"))
    assert len(files) >= 4
    for f in files[::2]:
        table = pq.read_table(f)
        assert "fields" in table.column_names
        pq.write_table(table.drop_columns(["fields"]), f)
    _fold_with_python(tmp_path / "python.duckdb", records)
    settings = Settings(bootstrap="127.0.0.1:1")
    out = replay(
        settings,
        tmp_path / "rebuilt.duckdb",
        from_archive=tmp_path / "a",
        use_kafka=False,
        progress=False,
    )
    assert out.stats.events == len(events)
    diff = compare(tmp_path / "python.duckdb", tmp_path / "rebuilt.duckdb")
    assert diff.identical, diff.render()
    assert out.offsets == {("t", 0): len(records)}


def test_a_rebuild_leaves_primary_keys_to_the_first_writer(tmp_path):
    """A rebuilt file has no primary keys (they were a quarter of the rebuild);
    the first writer that opens it builds them, so it upserts like any live
    database and stays equal to the Python fold of the same events."""
    from projector.store.setfold import missing_primary_keys
    from projector.store.tables import PROJECTIONS
    from projector.store.writer import Store

    events = list(generate(campaigns=2, recipients=60, seed=9))
    head, tail = events[:400], events[400:]
    records = [orjson.dumps(e) for e in head]
    writer = ArchiveWriter(tmp_path / "a", chunk_events=100)
    for i, r in enumerate(records):
        writer.add("t", 0, i, r)
    writer.flush()
    settings = Settings(bootstrap="127.0.0.1:1")
    replay(settings, tmp_path / "rebuilt.duckdb", from_archive=tmp_path / "a",
           use_kafka=False, progress=False)
    with duckdb.connect(str(tmp_path / "rebuilt.duckdb"), read_only=True) as con:
        assert missing_primary_keys(con) == [t.name for t in PROJECTIONS]
    with Store(tmp_path / "rebuilt.duckdb") as store:
        assert missing_primary_keys(store.con) == []
        # Upserts over rows the rebuild wrote: the keys are what makes them replace.
        evs = [ev for e in tail for ev in decode_value(orjson.dumps(e)).events]
        store.flush(evs, {("t", 0): len(events)})
    _fold_with_python(tmp_path / "python.duckdb", [orjson.dumps(e) for e in events])
    diff = compare(tmp_path / "python.duckdb", tmp_path / "rebuilt.duckdb")
    assert diff.identical, diff.render()


def test_kafka_replay_decoding_in_worker_processes_equals_decoding_in_process(
    bootstrap, topics_factory, tmp_path, monkeypatch
):
    """Chunks decoded by worker processes, out of step with fetching, give the same database."""
    import projector.rebuild.replay as replay_mod

    topics = topics_factory()
    events = list(generate(campaigns=2, recipients=120, seed=8))
    asyncio.run(produce(bootstrap, topics, events[:300]))
    asyncio.run(_send_raw(bootstrap, topics.dlrs, _poison(events[-1])))
    asyncio.run(produce(bootstrap, topics, events[300:], array_size=7))
    settings = Settings(bootstrap=bootstrap, topics=topics)
    monkeypatch.setattr(replay_mod, "POOL_MIN_RECORDS", 0)
    inline = replay(settings, tmp_path / "inline.duckdb", progress=False, decode_workers=0)
    pooled = replay(settings, tmp_path / "pooled.duckdb", progress=False, decode_workers=2)
    # The poison's mixed array record holds one good event (a redelivery).
    assert pooled.stats.events == inline.stats.events == len(events) + 1
    assert compare(tmp_path / "inline.duckdb", tmp_path / "pooled.duckdb").identical
    assert read_db(tmp_path / "pooled.duckdb") == dump(fold_dicts(events))
    assert _deadletters(tmp_path / "pooled.duckdb") == _deadletters(tmp_path / "inline.duckdb")
    assert len(_deadletters(tmp_path / "pooled.duckdb")) == 5
    assert pooled.offsets == inline.offsets
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inline.duckdb", "pooled.duckdb"]


def test_a_failed_kafka_replay_leaves_no_database_and_no_staged_files(
    bootstrap, topics_factory, tmp_path, monkeypatch
):
    """A reader that fails mid-way: the replay says why, and its stage files go with it."""
    import projector.rebuild.readers as readers
    from projector.rebuild.replay import ReplayError

    topics = topics_factory()
    asyncio.run(produce(bootstrap, topics, list(generate(campaigns=1, recipients=40, seed=3))))
    settings = Settings(bootstrap=bootstrap, topics=topics)
    real = readers.decode_chunk
    calls = []

    def failing(values):
        calls.append(len(values))
        real(values)
        raise readers.ReadError("broker went away (simulated)")

    monkeypatch.setattr(readers, "decode_chunk", failing)
    with pytest.raises(ReplayError, match="simulated"):
        replay(settings, tmp_path / "new.duckdb", progress=False, decode_workers=0)
    assert calls, "the reader never decoded a chunk"
    assert list(tmp_path.iterdir()) == []


@given(
    sizes=st.dictionaries(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 15)),
        st.tuples(st.integers(0, 50), st.integers(0, 5_000)),
    ),
    readers=st.integers(1, 4),
)
def test_partitions_are_shared_once_each_and_balanced_by_records(sizes, readers):
    from projector.rebuild.readers import split

    start = {tp: s for tp, (s, _) in sizes.items()}
    end = {tp: s + n for tp, (s, n) in sizes.items()}
    shares = split(start, end, readers)
    todo = sorted(tp for tp in end if end[tp] > start[tp])
    assert sorted(tp for share in shares for tp in share) == todo
    assert len(shares) == min(readers, len(todo)) and all(shares)
    loads = sorted(sum(end[tp] - start[tp] for tp in share) for share in shares)
    if loads:
        # Greedy: the heaviest share exceeds the lightest by at most one partition.
        assert loads[-1] - loads[0] <= max(end[tp] - start[tp] for tp in todo)


def test_reader_processes_that_cannot_reach_the_broker_fail_the_replay_clearly(tmp_path):
    import socket

    from projector.rebuild.replay import ReplayError, stage_from_kafka
    from projector.store.writer import Store

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    start = {("t", 0): 0, ("t", 1): 0}
    end = {("t", 0): 10, ("t", 1): 10}
    store = Store(tmp_path / "new.duckdb").open()
    try:
        with pytest.raises(ReplayError, match=f"reading from {dead} failed"):
            stage_from_kafka(store, dead, start, end, readers=2)
    finally:
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.duckdb"]
