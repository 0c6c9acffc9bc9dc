"""The partition -> owner map, built from the assignment faust's own assignor makes.

The group leader's ``PartitionAssignor`` runs here on member metadata as the
members send it; each member's share is decoded the way
``PartitionAssignor.on_assignment`` decodes it, and fed to ``Membership``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from faust.assignor.client_assignment import ClientAssignment, ClientMetadata
from faust.assignor.partition_assignor import PartitionAssignor

from projector.intake.membership import Membership, owner_map
from projector.intake.metrics import Metrics
from projector.intake.worker import new_faust_app
from projector.settings import Topics

SOURCES = Topics().sources


class _Cluster:
    """What the assignor asks of Kafka's cluster metadata: partitions per topic."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))


def leader_assignment(urls: list[str], partitions: int) -> dict[str, tuple[set[Any], Any]]:
    """member id -> (its topic-partitions, the distribution it receives)."""
    app = new_faust_app("g", "127.0.0.1:1", partitions=partitions, fetch_max_wait_ms=100)
    assignor = PartitionAssignor(app)
    members = {
        f"member-{i}": ConsumerProtocolMemberMetadata(
            assignor.version,
            list(SOURCES),
            ClientMetadata(
                assignment=ClientAssignment(actives={}, standbys={}),
                url=url,
                changelog_distribution={},
            ).dumps(),
        )
        for i, url in enumerate(urls)
    }
    result = assignor._perform_assignment(_Cluster(partitions), members)  # noqa: SLF001
    out = {}
    for member, protocol in result.items():
        meta = ClientMetadata.loads(assignor._decompress(protocol.user_data))  # noqa: SLF001
        tps = {(t, p) for t, ps in protocol.assignment for p in ps}
        out[member] = (tps, meta.external_topic_distribution)
    return out


URLS = ["http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"]


def test_every_member_builds_the_same_disjoint_covering_map() -> None:
    shares = leader_assignment(URLS, 8)
    maps = []
    for i, (tps, distribution) in enumerate(shares.values()):
        m = Membership(URLS[i], 8, SOURCES)
        m.assigned(distribution, tps)
        every = m.owners()
        assert every is not None and sorted(every) == list(range(8))
        assert {p for p, url in every.items() if url == URLS[i]} == m.local
        # co-partitioned: partition p of all four topics is one member's
        assert tps == {(t, p) for t in SOURCES for p in m.local}
        maps.append(every)
    assert maps[0] == maps[1] == maps[2]
    assert set(maps[0].values()) == set(URLS)


def test_unsettled_from_revocation_to_the_next_assignment() -> None:
    (tps, distribution), *_ = leader_assignment(URLS[:1], 4).values()
    metrics = Metrics()
    m = Membership(URLS[0], 4, SOURCES, metrics=metrics)
    assert m.owners() is None and m.owner_of(0) is None  # not joined yet
    m.assigned(distribution, tps)
    assert m.owners() == dict.fromkeys(range(4), URLS[0])
    assert metrics.cluster_settled._value.get() == 1  # noqa: SLF001
    m.revoked()
    assert m.owners() is None and m.owner_of(2) is None
    assert m.local == frozenset(range(4))  # kept for lag while rebalancing
    assert metrics.cluster_settled._value.get() == 0  # noqa: SLF001
    m.assigned(distribution, tps)
    assert m.owner_of(2) == URLS[0]
    m.left()
    assert m.owners() is None and m.local == frozenset()


def test_a_gained_partition_behind_its_last_owner_restores_before_it_has_an_owner() -> None:
    (tps, distribution), *_ = leader_assignment(URLS[:1], 4).values()
    runs, dlrs = SOURCES[0], SOURCES[3]
    # The last owner had stored up to these; this node's database is behind on 3 only.
    committed = {(runs, 1): 5, (runs, 3): 10, (dlrs, 3): 40}
    applied = {(runs, 1): 5, (runs, 3): 10, (dlrs, 3): 12}
    m = Membership(URLS[0], 4, SOURCES)
    m.assigned(distribution, tps, committed, applied)
    assert m.restoring == {3}
    assert m.owner_of(3) is None and m.owner_of(1) == URLS[0]  # 3: 503 until caught up
    assert m.owners() is None  # the campaign list needs every owner
    m.caught_up({**applied, (dlrs, 3): 39})
    assert m.owner_of(3) is None
    m.caught_up({**applied, (dlrs, 3): 40})
    assert m.restoring == frozenset() and m.owner_of(3) == URLS[0]
    assert m.owners() == dict.fromkeys(range(4), URLS[0])
    # Kept across a rebalance, not gained: never restoring, whatever the group says.
    m.revoked()
    m.assigned(distribution, tps, {(dlrs, 2): 99}, {})
    assert m.restoring == frozenset() and m.owner_of(2) == URLS[0]


def test_a_restore_shows_its_progress_in_the_metrics() -> None:
    (tps, distribution), *_ = leader_assignment(URLS[:1], 4).values()
    runs, dlrs = SOURCES[0], SOURCES[3]
    metrics = Metrics()
    m = Membership(URLS[0], 4, SOURCES, metrics=metrics)
    m.assigned(distribution, tps, {(runs, 3): 10, (dlrs, 3): 40}, {(dlrs, 3): 12})
    gauge = metrics.partition_restoring
    assert m.remaining == {3: 38} and gauge.labels("3")._value.get() == 38  # noqa: SLF001
    m.caught_up({(runs, 3): 10, (dlrs, 3): 30})
    assert m.remaining == {3: 10} and gauge.labels("3")._value.get() == 10  # noqa: SLF001
    m.caught_up({(runs, 3): 10, (dlrs, 3): 40})
    assert m.remaining == {} and gauge.labels("3")._value.get() == 0  # noqa: SLF001


def test_a_partition_waiting_for_its_shard_file_has_no_owner() -> None:
    (tps, distribution), *_ = leader_assignment(URLS[:1], 4).values()
    metrics = Metrics()
    m = Membership(URLS[0], 4, SOURCES, metrics=metrics)
    m.assigned(distribution, tps)
    m.opening({2})
    assert m.owner_of(2) is None and m.owner_of(1) == URLS[0]
    assert m.restoring == {2} and m.owners() is None
    assert metrics.partition_restoring.labels("2")._value.get() == -1  # noqa: SLF001
    m.opening(())
    assert m.owner_of(2) == URLS[0] and m.owners() is not None


def test_two_members_advertising_one_url_never_settle() -> None:
    shares = list(leader_assignment([URLS[0], URLS[0]], 4).values())
    for tps, distribution in shares:
        m = Membership(URLS[0], 4, SOURCES)
        m.assigned(distribution, tps)
        # one member's partitions are under the shared URL, the other's lost
        assert m.owners() is None
        assert m.in_place  # it still consumes: readiness does not wait for a sound map


class _Clock:
    """The lease's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _leased(metrics: Metrics | None = None) -> tuple[Membership, _Clock, Any, set[Any]]:
    (tps, distribution), *_ = leader_assignment(URLS[:1], 4).values()
    clock = _Clock()
    m = Membership(URLS[0], 4, SOURCES, metrics=metrics, lease_seconds=5.0, clock=clock)
    m.tick()
    m.assigned(distribution, tps)
    return m, clock, distribution, tps


def test_ticks_within_the_lease_keep_it() -> None:
    m, clock, _, _ = _leased()
    for _ in range(40):  # 20 s of ticks half a second apart
        clock.now += 0.5
        assert m.tick() is False
    clock.now += 4.9  # a slow loop, within the lease
    assert m.owner_of(1) == URLS[0] and m.lease_lost() is None
    assert m.tick() is False and m.leases_lost == 0


def test_a_pause_past_the_lease_fences_readers_before_the_ticker_runs() -> None:
    metrics = Metrics()
    m, clock, distribution, tps = _leased(metrics)
    clock.now += 7.0  # SIGSTOP ... SIGCONT: a request runs before the ticker
    assert m.owner_of(1) is None
    assert m.owners() is None and not m.settled
    assert (why := m.lease_lost()) is not None and "paused 7.0s" in why
    assert metrics.lease_lost._value.get() == 1  # noqa: SLF001
    # The ticker runs next: it closes the gap, the loss stays, and it asks once to rejoin.
    assert m.tick() is True
    assert metrics.cluster_settled._value.get() == 0  # noqa: SLF001
    clock.now += 0.5
    assert m.tick() is False and m.lease_lost() is not None and m.owner_of(1) is None
    assert m.leases_lost == 1
    # The rebalance the rejoin starts: revoked, then a new assignment renews the lease.
    m.revoked()
    m.assigned(distribution, tps)
    assert m.lease_lost() is None and m.owner_of(1) == URLS[0]
    assert metrics.cluster_settled._value.get() == 1  # noqa: SLF001


def test_after_a_lost_lease_even_partitions_held_again_restore() -> None:
    # Held before the pause and again after it, but another node owned them
    # meanwhile and applied records this node's database lacks.
    m, clock, distribution, tps = _leased()
    runs = SOURCES[0]
    clock.now += 20.0
    m.tick()
    m.revoked()
    m.assigned(distribution, tps, {(runs, 0): 30, (runs, 1): 4}, {(runs, 0): 12, (runs, 1): 4})
    assert m.lease_lost() is None
    assert m.restoring == {0} and m.owner_of(0) is None and m.owner_of(1) == URLS[0]
    m.caught_up({(runs, 0): 30})
    assert m.owner_of(0) == URLS[0]


def test_the_ticker_itself_sees_a_pause() -> None:
    m, clock, _, _ = _leased()
    clock.now += 30.0
    assert m.tick() is True
    assert m.owner_of(0) is None and m.lease_lost() is not None


def test_an_assignment_from_before_the_loss_does_not_renew_the_lease() -> None:
    # The assignment callback was paused midway: its assignment may be stale.
    m, clock, distribution, tps = _leased()
    m.revoked()
    clock.now += 8.0
    m.assigned(distribution, tps)  # the callback resumes: the gap is seen here first
    assert m.owner_of(2) is None and m.lease_lost() is not None
    m.tick()
    m.assigned(distribution, tps)  # still no rebalance since the loss
    assert m.owner_of(2) is None
    m.revoked()
    m.assigned(distribution, tps)
    assert m.owner_of(2) == URLS[0]


def test_no_lease_before_the_first_tick_nor_after_leaving() -> None:
    (tps, distribution), *_ = leader_assignment(URLS[:1], 4).values()
    clock = _Clock()
    m = Membership(URLS[0], 4, SOURCES, lease_seconds=5.0, clock=clock)
    m.assigned(distribution, tps)
    clock.now += 60.0  # start-up may take long before the worker ticks
    assert m.owner_of(0) == URLS[0] and m.tick() is False
    m.left()
    clock.now += 60.0
    assert m.lease_lost() is None and m.tick() is False
    unleased = Membership(URLS[0], 4, SOURCES, clock=clock)
    unleased.tick()
    unleased.assigned(distribution, tps)
    clock.now += 600.0
    assert unleased.owner_of(0) == URLS[0] and unleased.lease_lost() is None


def test_a_partition_split_between_members_has_no_owner() -> None:
    distribution = {
        "http://a": {SOURCES[0]: [0, 1], SOURCES[1]: [0]},
        "http://b": {SOURCES[1]: [1], "other": [2]},
    }
    assert owner_map(distribution, SOURCES, 4) == {0: "http://a"}


@pytest.mark.parametrize(
    ("host", "advertise", "port", "url"),
    [
        ("127.0.0.1", None, 8123, "http://127.0.0.1:8123"),
        ("::1", None, 81, "http://[::1]:81"),
        ("127.0.0.1", "http://node-2:9000/", 8123, "http://node-2:9000"),
    ],
)
def test_the_advertised_url(host: str, advertise: str | None, port: int, url: str) -> None:
    from projector.settings import Settings

    assert Settings(host=host, advertise=advertise).advertised_url(port) == url


class _Fetcher:
    def __init__(self, reason: BaseException | None) -> None:
        self.crashed = reason is not None
        self.crash_reason = reason


class _App:
    def __init__(self, reason: BaseException | None) -> None:
        self._fetcher = _Fetcher(reason)


def test_a_dead_fetcher_makes_the_node_give_up_its_partitions(monkeypatch) -> None:
    """faust's fetcher ended by an error (not a rebalance's cancellation): the node
    must stop answering for partitions whose records it no longer reads."""
    import asyncio
    import os
    import signal as signals

    from projector.intake import worker
    from projector.intake.health import PipelineStatus

    assert worker.fetcher_died(_App(None)) is None
    assert worker.fetcher_died(_App(asyncio.CancelledError())) is None  # restarted by faust
    why = worker.fetcher_died(_App(KeyError("dlrs-1")))
    assert why is not None and "KeyError" in why

    (tps, distribution), *_ = leader_assignment(URLS[:1], 4).values()
    m = Membership(URLS[0], 4, SOURCES)
    m.assigned(distribution, tps)
    assert m.owner_of(1) == URLS[0]
    killed, timers = [], []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append((pid, sig)))

    class _Timer:
        def __init__(self, seconds, fn, args):
            timers.append(seconds)
            self.daemon = False

        def start(self) -> None:
            pass

    monkeypatch.setattr(worker.threading, "Timer", _Timer)

    class _Projector:
        membership = m
        status = PipelineStatus(ready=True)

    worker.give_up(_Projector(), why)  # type: ignore[arg-type]
    assert m.owner_of(1) is None and m.owners() is None
    assert not _Projector.status.snapshot().ready
    assert killed == [(os.getpid(), signals.SIGTERM)] and timers == [worker.GIVE_UP_SECONDS]
