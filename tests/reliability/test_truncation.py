"""Guarantee 3: when the broker loses the log, the projector stops applying and says so.

The test's own broker is restarted empty (memory storage) under a running
``projector serve`` and the topics are created again, so every partition's
log end is now behind the offset DuckDB stored. The projector must not
crash, must flag those partitions in ``/readyz`` (503, with reasons), and
the ones that never had a record applied too (nothing tells their old
stream from a new one),
and in ``projector_partition_inconsistent``, log the operator action
(``projector replay``), keep serving reads from the last projections, and
apply nothing of what the new, unrelated log holds, even once it has grown
past the stored offsets.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from projector.intake.offsets import log_end_offsets
from projector.intake.topics import ensure_topics_sync
from projector.tools.simulate import generate
from tests.fixtures.processes import projector_env
from tests.fixtures.topics import make_topics
from tests.reliability.helpers import (
    Serve,
    applied_offsets,
    campaign_owner,
    dump,
    fold_dicts,
    produce_sync,
    read_db,
)

PARTITIONS = 4


def _every_partition(topics) -> set[str]:
    """A lost log flags them all: those never applied could hold another stream."""
    return {f"{t}:{p}" for t in topics.sources for p in range(PARTITIONS)}


def _check_reasons(inconsistent: dict[str, str], stored: dict[str, int], *said: str) -> None:
    for tp, reason in inconsistent.items():
        if tp in stored:
            assert any(s in reason for s in said), (tp, reason)
        else:
            assert "no record applied yet, and the broker lost the log" in reason, (tp, reason)


def test_broker_restarted_empty_flags_partitions_and_applies_nothing(own_broker, procs, tmp_path):
    bootstrap = own_broker.bootstrap
    topics = make_topics(bootstrap)
    env = projector_env(bootstrap, topics, flush_max_events=500, flush_interval_ms=20)
    events = list(generate(campaigns=3, recipients=150, seed=41))
    owner = campaign_owner(events)
    serve = Serve(procs, env, tmp_path / "p.duckdb", tmp_path)
    serve.wait_listening()
    records = produce_sync(bootstrap, topics, events, array_size=5)
    serve.wait_applied(records, 60)
    code, ready = serve.wait("/readyz 200", lambda: (r := serve.readyz())[0] == 200 and r, 30)
    stored = applied_offsets(ready["watermark"])
    probe = next(iter(owner))
    before = serve.status(probe, owner[probe]).json()["data"]

    t0 = time.monotonic()
    own_broker.restart()  # memory storage: every topic, record and group is gone
    ensure_topics_sync(bootstrap, topics.all, PARTITIONS)

    every = _every_partition(topics)
    assert set(stored) < every  # some partitions never had a record: the racy case

    def flagged():
        code, data = serve.readyz()
        return code == 503 and set(data["inconsistent"]) == every and data

    data = serve.wait("/readyz to flag every partition", flagged, 30)
    detected = time.monotonic() - t0
    # Two detectors race: the log poll's log end ("behind the stored
    # offset") and the log-mark check ("no longer in the log"), when the
    # restart falls between the poll's log-end fetch and its mark check.
    # Both name the fault.
    _check_reasons(
        data["inconsistent"], stored, "behind the stored offset", "is no longer in the log"
    )
    for tp in every:
        topic, partition = tp.rsplit(":", 1)
        assert (
            serve.metric("projector_partition_inconsistent", topic=topic, partition=partition) == 1
        )
    assert serve.metric("projector_partition_inconsistent") == len(every)
    assert "projector replay" in serve.log()

    # An unrelated stream lands in the new log, more records than before, so
    # the log ends pass the stored offsets: still nothing may be applied.
    other = list(generate(campaigns=3, recipients=300, seed=42))
    more = produce_sync(bootstrap, topics, other, array_size=2)
    assert more > records
    serve.wait(
        "the log poll to see the new log ends",
        lambda: serve.metric("projector_lag_records_total") > 0,
        30,
    )
    assert serve.applied_records() == records
    assert serve.readyz()[1]["watermark"] == ready["watermark"]
    r = serve.status(probe, owner[probe])
    assert r.status_code == 200 and r.json()["data"] == before, r.text
    assert serve.alive() is None
    serve.stop()
    assert read_db(tmp_path / "p.duckdb") == dump(fold_dicts(events))
    print(
        f"\n{len(events)} events in {records} records applied; broker restarted empty; "
        f"{len(every)} partitions flagged inconsistent ({len(stored)} had records) "
        f"{detected:.1f}s after the restart; "
        f"{more} later records of another stream refused"
    )


def test_log_replaced_while_down_is_flagged_at_start(own_broker, procs, tmp_path):
    """The new log has grown past every stored offset: only the log marks can tell.

    Offsets alone see nothing wrong here (log start 0, log end past the stored
    offset), so without the marks the projector would resume mid-way through
    another history. The stored mark names the last record applied; the new
    log holds another record at that offset. (A log end equal to the stored
    offset looks just as healthy to offsets.)
    """
    bootstrap = own_broker.bootstrap
    topics = make_topics(bootstrap)
    env = projector_env(bootstrap, topics, flush_max_events=500, flush_interval_ms=20)
    db = tmp_path / "p.duckdb"
    events = list(generate(campaigns=3, recipients=150, seed=41))
    serve = Serve(procs, env, db, tmp_path)
    serve.wait_listening()
    records = produce_sync(bootstrap, topics, events, array_size=5)
    serve.wait_applied(records, 60)
    stored = applied_offsets(serve.readyz()[1]["watermark"])
    serve.stop()

    own_broker.restart()
    ensure_topics_sync(bootstrap, topics.all, PARTITIONS)
    # Same campaigns, same partitions, a longer and different history.
    other = list(generate(campaigns=3, recipients=300, seed=41))
    produce_sync(bootstrap, topics, other, array_size=5)
    ends = asyncio.run(log_end_offsets(bootstrap, topics.sources))
    for tp, offset in stored.items():
        topic, partition = tp.rsplit(":", 1)
        assert ends[(topic, int(partition))] >= offset, (tp, offset, ends)

    t0 = time.monotonic()
    again = Serve(procs, env, db, tmp_path, log_name="serve-again")
    again.wait_listening()
    every = _every_partition(topics)
    code, data = again.wait(
        "/readyz to flag every partition",
        lambda: (r := again.readyz())[0] == 503 and set(r[1]["inconsistent"]) == every and r,
        30,
    )
    detected = time.monotonic() - t0
    _check_reasons(data["inconsistent"], stored, "another record")
    assert "projector replay" in again.log()
    assert again.applied_records() == records
    again.stop()
    assert read_db(db) == dump(fold_dicts(events))
    print(
        f"\nlog replaced while the projector was down, new log past every stored offset: "
        f"{len(every)} partitions ({len(stored)} with records) flagged {detected:.1f}s after "
        "start, nothing applied"
    )


def test_log_replaced_and_refilled_under_running_serve_is_flagged(own_broker, procs, tmp_path):
    """The refill races the 1 s log poll: whichever check wins, every partition is flagged."""
    bootstrap = own_broker.bootstrap
    topics = make_topics(bootstrap)
    env = projector_env(bootstrap, topics, flush_max_events=500, flush_interval_ms=20)
    events = list(generate(campaigns=3, recipients=150, seed=41))
    serve = Serve(procs, env, tmp_path / "p.duckdb", tmp_path)
    serve.wait_listening()
    records = produce_sync(bootstrap, topics, events, array_size=5)
    serve.wait_applied(records, 60)
    stored = applied_offsets(
        serve.wait("/readyz 200", lambda: serve.readyz()[0] == 200 and serve.readyz()[1], 30)[
            "watermark"
        ]
    )

    own_broker.restart()
    ensure_topics_sync(bootstrap, topics.all, PARTITIONS)
    produce_sync(bootstrap, topics, list(generate(campaigns=3, recipients=300, seed=41)), 5)
    every = _every_partition(topics)
    data = serve.wait(
        "/readyz to flag every partition",
        lambda: (r := serve.readyz())[0] == 503 and set(r[1]["inconsistent"]) == every and r[1],
        30,
    )
    _check_reasons(data["inconsistent"], stored, "another record", "behind the stored offset")
    reasons = [data["inconsistent"][tp] for tp in stored]
    assert serve.alive() is None
    serve.stop()
    # Checked before every commit, not only by the 1 s poll: nothing of the
    # new log was applied, even where it was already flowing in.
    assert read_db(tmp_path / "p.duckdb") == dump(fold_dicts(events))
    by_marks = sum("another record" in r for r in reasons)
    print(
        f"\nrefilled under a running serve: {len(every)} flagged ({len(stored)} with records), "
        f"{by_marks} by the log marks"
    )


def test_swap_to_a_replay_of_the_new_log_clears_the_flags(own_broker, procs, tmp_path):
    """The operator procedure of docs/operations.md, end to end.

    After the broker lost the log: rebuild from the log as it is now
    (``projector replay``), ``projector swap`` it in under the running serve;
    the flags clear, and what is produced afterwards is applied on top.
    """
    bootstrap = own_broker.bootstrap
    topics = make_topics(bootstrap)
    env = projector_env(bootstrap, topics, flush_max_events=500, flush_interval_ms=20)
    serve = Serve(procs, env, tmp_path / "p.duckdb", tmp_path)
    serve.wait_listening()
    records = produce_sync(bootstrap, topics, list(generate(3, 150, 41)), array_size=5)
    serve.wait_applied(records, 60)
    serve.wait("/readyz 200", lambda: serve.readyz()[0] == 200, 30)

    own_broker.restart()
    ensure_topics_sync(bootstrap, topics.all, PARTITIONS)
    every = _every_partition(topics)
    serve.wait(
        "/readyz to flag every partition",
        lambda: set(serve.readyz()[1]["inconsistent"]) == every,
        30,
    )
    after = list(generate(3, 200, 43))
    more = produce_sync(bootstrap, topics, after, array_size=5)
    new_db = tmp_path / "rebuilt.duckdb"
    procs.run("replay", "--db", str(new_db), env=env, timeout=120, log_name="replay")
    key = next(iter(serve.keys.values()))
    url = f"http://127.0.0.1:{serve.port}"
    out = procs.run(
        "swap", "--url", url, "--db", str(new_db), "--admin-key", key, env=env, timeout=120
    )  # fmt: skip
    assert "swapped to" in out, out
    assert "inconsistent flags cleared: " in out and all(tp in out for tp in every), out
    code, data = serve.wait("/readyz 200 again", lambda: (r := serve.readyz())[0] == 200 and r, 30)
    assert data["inconsistent"] == {}, data
    assert serve.metric("projector_partition_inconsistent") == 0
    # New records after the swap: applied on top of the rebuilt projections,
    # in partitions that had records before the loss and in those that had none.
    later = list(generate(3, 100, 44))
    extra = produce_sync(bootstrap, topics, later, array_size=5)
    serve.wait_applied(more + extra, 60)
    assert serve.readyz()[1]["inconsistent"] == {}
    assert serve.alive() is None
    serve.stop()
    assert read_db(new_db) == dump(fold_dicts(after + later))
    print(f"\nswap after a lost log: {len(every)} flags cleared, {more + extra} records applied")


pytestmark = pytest.mark.timeout(200)
