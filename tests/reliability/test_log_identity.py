"""A partition never resumes on a different log, and resumes on the same one.

The log poll that reads every stored mark back is made slow here (an hour),
so what is proved is the check a commit makes itself: after an assignment or
a reconnection to the broker, a partition's records are applied only once
the record at its stored mark is read back intact.
"""

from __future__ import annotations

import time

import pytest

from projector.intake.topics import ensure_topics_sync
from projector.tools.simulate import generate
from tests.fixtures.processes import projector_env
from tests.fixtures.topics import make_topics
from tests.reliability.helpers import (
    Serve,
    applied_offsets,
    dump,
    fold_dicts,
    produce_sync,
    read_db,
)

PARTITIONS = 4
# Longer than any test here: the poll runs once, at start, and never again.
SLOW_POLL = 3600
# Past the group's 6 s session timeout (projector.intake.worker.new_faust_app).
PAUSE_SECONDS = 8.0


def _serve(own_broker, procs, tmp_path, **extra):
    topics = make_topics(own_broker.bootstrap, PARTITIONS)
    env = projector_env(
        own_broker.bootstrap,
        topics,
        flush_max_events=500,
        flush_interval_ms=20,
        log_poll_seconds=SLOW_POLL,
        **extra,
    )
    serve = Serve(procs, env, tmp_path / "p.duckdb", tmp_path)
    serve.wait_listening()
    return topics, serve


def _watermark(serve: Serve) -> dict[str, int]:
    return applied_offsets(serve.readyz()[1]["watermark"])


def test_a_log_replaced_and_refilled_before_any_poll_is_flagged_not_resumed(
    own_broker, procs, tmp_path
):
    bootstrap = own_broker.bootstrap
    topics, serve = _serve(own_broker, procs, tmp_path)
    events = list(generate(campaigns=3, recipients=150, seed=41))
    records = produce_sync(bootstrap, topics, events, array_size=5)
    serve.wait_applied(records, 60)
    stored = _watermark(serve)
    checks = serve.metric("projector_log_mark_checks_total")

    own_broker.restart()  # memory storage: every topic, record and group is gone
    ensure_topics_sync(bootstrap, topics.all, PARTITIONS)
    # The same campaigns (so the same partitions), a longer, different history:
    # every log that had records is refilled past its stored offset.
    t0 = time.monotonic()
    more = produce_sync(bootstrap, topics, list(generate(3, 300, 41)), array_size=5)
    assert more > records

    every = {f"{t}:{p}" for t in topics.sources for p in range(PARTITIONS)}

    def flagged():
        code, data = serve.readyz()
        return code == 503 and set(data["inconsistent"]) == every and data

    data = serve.wait("/readyz to flag every partition", flagged, 60)
    detected = time.monotonic() - t0
    for tp in stored:
        # By the mark a commit read back: the poll, the other detector, never ran again.
        assert "holds another record at offset" in data["inconsistent"][tp], data
    assert serve.metric("projector_partition_inconsistent") == len(every)
    assert serve.metric("projector_log_mark_checks_total") > checks
    assert "projector replay" in serve.log()
    assert _watermark(serve) == stored
    assert serve.alive() is None
    serve.stop()
    assert read_db(tmp_path / "p.duckdb") == dump(fold_dicts(events))
    print(
        f"\nlog replaced and refilled ({more} records) with the poll off: {len(every)} "
        f"partitions flagged ({len(stored)} by their marks) {detected:.1f}s after the refill "
        "began; nothing of the new log applied"
    )


def test_a_reconnection_to_the_same_log_resumes_without_a_flag(own_broker, procs, tmp_path):
    """The broker restarts empty and gets the very same records back: the same log.

    (Tansu keeps nothing across a restart, so this is how a broker that comes
    back with its data intact looks here.) Every connection is new and the
    group is joined anew; the marks are read back, match, and what comes next
    is applied.
    """
    bootstrap = own_broker.bootstrap
    topics, serve = _serve(own_broker, procs, tmp_path)
    first = list(generate(campaigns=3, recipients=150, seed=41))
    records = produce_sync(bootstrap, topics, first, array_size=5)
    serve.wait_applied(records, 60)
    checks = serve.metric("projector_log_mark_checks_total")
    epochs = serve.metric("projector_log_epochs_total")

    own_broker.restart()
    ensure_topics_sync(bootstrap, topics.all, PARTITIONS)
    assert produce_sync(bootstrap, topics, first, array_size=5) == records
    later = list(generate(campaigns=3, recipients=100, seed=44))
    extra = produce_sync(bootstrap, topics, later, array_size=5)
    serve.wait_applied(records + extra, 60)
    assert serve.readyz()[1]["inconsistent"] == {}
    assert serve.metric("projector_partition_inconsistent") == 0
    assert serve.metric("projector_log_epochs_total") > epochs
    assert serve.metric("projector_log_mark_checks_total") > checks
    assert serve.alive() is None
    serve.stop()
    assert read_db(tmp_path / "p.duckdb") == dump(fold_dicts(first + later))


def test_a_paused_broker_resumes_without_a_flag(own_broker, procs, tmp_path):
    """SIGSTOP past the group's session timeout, then SIGCONT: data intact, no flag.

    Whether the marks are read back again depends on what the pause cost:
    the connections survive a SIGSTOP, and the group was joined anew in
    some runs and not in others. Either way nothing is flagged.
    """
    bootstrap = own_broker.bootstrap
    topics, serve = _serve(own_broker, procs, tmp_path)
    first = list(generate(campaigns=3, recipients=150, seed=41))
    records = produce_sync(bootstrap, topics, first, array_size=5)
    serve.wait_applied(records, 60)

    own_broker.pause()
    paused_at = time.monotonic()
    while time.monotonic() - paused_at < PAUSE_SECONDS:  # the outage itself, not a wait
        assert serve.alive() is None
        time.sleep(0.25)
    own_broker.resume()
    later = list(generate(campaigns=3, recipients=100, seed=44))
    extra = produce_sync(bootstrap, topics, later, array_size=5)
    serve.wait_applied(records + extra, 90)
    assert serve.readyz()[1]["inconsistent"] == {}
    assert serve.alive() is None
    serve.stop()
    assert read_db(tmp_path / "p.duckdb") == dump(fold_dicts(first + later))


pytestmark = pytest.mark.timeout(200)
