"""Cluster membership: which node of the consumer group owns which partition.

Nodes of one group split the partitions through faust's co-partitioned,
sticky assignment. Each node gives faust its advertised URL as
``canonical_url``; the group leader puts every member's URL into the
assignment it sends to all members (``faust/assignor/partition_assignor.py``:
``external_topics_metadata()``, URL -> topic -> partitions). The four source
topics are co-partitioned, so partition p of each goes to one member: that
member owns p (docs/operations.md, "Scaling out").

``Membership`` keeps that map for the API (it has the shape of
``api.routing.Owners`` without importing it). It is unsettled from the moment
partitions are revoked until the next assignment is in place and this node's
partitions are sought to their stored offsets: while unsettled nobody is
named the owner of anything, so nobody answers from a map that no longer holds.

A lease fences a node that stopped running for a while (SIGSTOP, a frozen
VM, an event loop blocked for seconds): the group may have handed its
partitions to others meanwhile, yet nothing tells this node so until its next
heartbeat is answered. The worker ticks the lease (``tick``) twice a second;
a gap longer than ``lease_seconds`` between two looks at the clock means the
broker may have expelled this member, so the lease is lost: nobody is named
the owner of anything here (503) and the pipeline commits nothing
(``lease_lost``), until a rebalance that began after the loss has put a new
assignment in place. The gap is also checked lazily wherever the lease
matters (``owner_of``, ``owners``, ``settled``, ``lease_lost``), because after
SIGCONT the API thread's pending requests may run before the ticker does.

Written from faust's event loop, read from the API's thread: a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from projector.intake.metrics import Metrics

log = logging.getLogger(__name__)

# A restore's progress line at most this often.
PROGRESS_SECONDS = 5.0

# faust's HostToPartitionMap: member URL -> topic -> partitions.
Distribution = Mapping[str, Mapping[str, Sequence[int]]]


def lease_clock() -> float:
    """Seconds on the clock the lease is measured with.

    ``CLOCK_BOOTTIME`` where there is one (Linux): like ``time.monotonic()``
    it never steps with the wall clock (an NTP correction must neither fake a
    pause nor hide one, so not ``time.time()``), and unlike Linux's
    ``CLOCK_MONOTONIC`` it keeps counting while the machine is suspended. The
    broker's session clock runs on another host and never stops, so a
    suspended or frozen host must see that time passed too. A process stopped
    with SIGSTOP sees it on either clock.
    """
    return time.clock_gettime(_LEASE_CLOCK)


_LEASE_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def owner_map(
    distribution: Distribution, sources: Sequence[str], partitions: int
) -> dict[int, str]:
    """Partition -> owner URL of the source topics, from the leader's distribution.

    A partition that the source topics put at two different URLs (topics that
    are not co-partitioned) is left out: it has no single owner. Partitions
    outside ``range(partitions)`` and topics other than ``sources`` are ignored.
    """
    owners: dict[int, str] = {}
    split: set[int] = set()
    wanted = set(sources)
    for url, topics in distribution.items():
        for topic, numbers in topics.items():
            if topic not in wanted:
                continue
            for p in numbers:
                if not 0 <= p < partitions:
                    continue
                if owners.setdefault(p, url) != url:
                    split.add(p)
    for p in sorted(split):
        log.error("partition %d of the source topics is assigned to several members", p)
        del owners[p]
    return owners


class Membership:
    """This node's view of the group; structurally an ``api.routing.Owners``."""

    def __init__(
        self,
        url: str,
        partitions: int,
        sources: Sequence[str],
        *,
        metrics: Metrics | None = None,
        lease_seconds: float | None = None,
        clock: Callable[[], float] = lease_clock,
    ) -> None:
        self._url = url.rstrip("/")
        self._partitions = partitions
        self._sources = tuple(sources)
        self._metrics = metrics
        self._lock = threading.Lock()
        self._map: dict[int, str] = {}
        self._in_place = False  # this node's assignment taken and sought
        self._settled = False  # ... and the map names this node's partitions as its own
        self._local: frozenset[int] = frozenset()
        # Gained partitions whose projections here are older than what their
        # last owner committed: partition -> {topic-partition: offset to reach}.
        self._restoring: dict[int, dict[tuple[str, int], int]] = {}
        # Records each restoring partition still lacks, as of the last flush.
        self._remaining: dict[int, int] = {}
        self._progress_logged = 0.0
        # Partitions owned here whose shard file another process still holds
        # (projector.store.shards: its last owner has not closed it yet).
        self._opening: frozenset[int] = frozenset()
        self.assignments = 0  # assignments taken: a changing figure shows rebalances
        # The lease (module docstring): None turns it off (a test, or no group).
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._last_tick: float | None = None  # no lease kept before the first tick
        self._lease_lost: str | None = None  # why, while lost
        self._revoked_since_loss = False  # a rebalance began after the loss
        self._rejoin_wanted = False  # a loss the ticker has not acted on yet
        self.leases_lost = 0

    @property
    def url(self) -> str:
        """This node's advertised base URL."""
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        """Set before the node joins the group (the port is known once bound)."""
        self._url = value.rstrip("/")

    @property
    def partitions(self) -> int:
        """Partition count of the source topics."""
        return self._partitions

    @partitions.setter
    def partitions(self, value: int) -> None:
        """Set from the topics as the broker describes them, before the node joins:
        the setting only says how many to create, and topics may exist already."""
        self._partitions = value

    @property
    def settled(self) -> bool:
        """Owners are named: the assignment is in place and the map is sound."""
        with self._lock:
            self._check_lease()
            return self._settled and self._lease_lost is None

    @property
    def in_place(self) -> bool:
        """This node's partitions are assigned and sought (the map may still be unsound)."""
        with self._lock:
            return self._in_place

    @property
    def local(self) -> frozenset[int]:
        """Partitions of the latest assignment owned here (kept while unsettled)."""
        with self._lock:
            return self._local

    @property
    def restoring(self) -> frozenset[int]:
        """Partitions owned here that are still catching up to their last owner."""
        with self._lock:
            return frozenset(self._restoring) | self._opening

    def opening(self, partitions: Iterable[int]) -> None:
        """These owned partitions wait for their shard's file: no owner until it opens."""
        with self._lock:
            self._opening = frozenset(partitions)
        self._publish()

    @property
    def restore_remaining(self) -> dict[int, int]:
        """Per restoring partition, the records it still lacks as of the last flush
        (-1: waiting for its shard's file); what /readyz and the metric show."""
        with self._lock:
            return self._to_go()

    def _to_go(self) -> dict[int, int]:
        out = {p: self._remaining.get(p, 0) for p in self._restoring}
        out.update(dict.fromkeys(self._opening, -1))
        return out

    @property
    def remaining(self) -> dict[int, int]:
        """Records each restoring partition still lacks, as of the last flush."""
        with self._lock:
            return dict(self._remaining)

    def owner_of(self, partition: int) -> str | None:
        """The owner's URL; None while unsettled, when the partition has none, or
        (on the owner) while it restores: no answer older than its last owner's."""
        with self._lock:
            self._check_lease()
            if (
                not self._settled
                or self._lease_lost is not None
                or partition in self._restoring
                or partition in self._opening
            ):
                return None
            return self._map.get(partition)

    def owners(self) -> dict[int, str] | None:
        """Every partition's owner; None while unsettled, restoring, or any has none."""
        with self._lock:
            self._check_lease()
            if (
                not self._settled
                or self._lease_lost is not None
                or self._restoring
                or self._opening
                or len(self._map) < self._partitions
            ):
                return None
            return dict(self._map)

    def caught_up(self, applied: Mapping[tuple[str, int], int]) -> None:
        """Release the restoring partitions whose ``applied`` offsets reached their targets;
        show how far the others still are (metric; a log line every few seconds)."""
        with self._lock:
            remaining = {
                p: sum(max(0, offset - applied.get(tp, 0)) for tp, offset in targets.items())
                for p, targets in self._restoring.items()
            }
            done = [p for p, left in remaining.items() if left == 0]
            for p in done:
                del self._restoring[p]
            self._remaining = {p: left for p, left in remaining.items() if left}
        if done:
            log.info("restored partitions %s: answering for them", ",".join(map(str, done)))
        now = time.monotonic()
        if self._remaining and now - self._progress_logged >= PROGRESS_SECONDS:
            self._progress_logged = now
            log.info(
                "restoring: %s",
                ", ".join(f"partition {p} {left:,} records to go"
                          for p, left in sorted(self._remaining.items())),
            )  # fmt: skip
        self._publish()

    def revoked(self) -> None:
        """A rebalance began: every partition's owner is unknown until the next assignment."""
        with self._lock:
            self._in_place = self._settled = False
            if self._lease_lost is not None:
                self._revoked_since_loss = True
        self._publish()

    def left(self) -> None:
        """This node stops: it owns nothing any more."""
        with self._lock:
            self._in_place = self._settled = False
            self._local = frozenset()
            self._restoring = {}
            self._opening = frozenset()
            self._map = {}
            self._last_tick = None  # no more ticks: nothing to measure
        self._publish()

    def assigned(
        self,
        distribution: Distribution,
        assigned: Iterable[tuple[str, int]],
        committed: Mapping[tuple[str, int], int] | None = None,
        applied: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        """The new assignment is in place and this node's partitions are sought: settle.

        ``distribution`` is the leader's (``app.assignor.external_topics_metadata()``),
        ``assigned`` this node's own topic-partitions. ``committed`` is the group's
        offsets as read for this assignment: how far each partition's last owner
        had stored (it acks only what its database holds), and ``applied`` how far
        this node's database is. A partition gained here whose ``applied`` is
        behind ``committed`` restores: its campaigns get no owner (503) until it
        has caught up (``caught_up``), so an answer is never older than one its
        last owner gave, and a poller's status never goes back across a move.
        """
        owners = owner_map(distribution, self._sources, self._partitions)
        mine = frozenset(p for t, p in assigned if t in self._sources)
        named_here = frozenset(p for p, url in owners.items() if url == self._url)
        if named_here != mine:
            # Our partitions under another URL: two members advertise one URL,
            # or this node's URL changed after it joined. Routing on such a
            # map would send requests to the wrong node: stay unsettled.
            log.error(
                "the group's map names %s as %s's partitions but this node holds %s; "
                "do two nodes advertise the same URL?",
                sorted(named_here),
                self._url,
                sorted(mine),
            )
        behind: dict[int, dict[tuple[str, int], int]] = {}
        with self._lock:
            self._check_lease()
            # After a lost lease every partition counts as gained: the group may
            # have handed even those this node holds again to another member
            # meanwhile, which applied records this node's database lacks.
            gained = mine if self._lease_lost is not None else mine - self._local
            for (topic, partition), offset in (committed or {}).items():
                if topic in self._sources and partition in gained:
                    if (applied or {}).get((topic, partition), 0) < offset:
                        behind.setdefault(partition, {})[(topic, partition)] = offset
            self._restoring = behind
            self._remaining = {
                p: sum(max(0, o - (applied or {}).get(tp, 0)) for tp, o in targets.items())
                for p, targets in behind.items()
            }
            self._map = owners
            self._local = mine
            self._in_place = True
            self._settled = named_here == mine
            self.assignments += 1
            renewed = self._lease_lost if self._revoked_since_loss else None
            if renewed is not None:
                # Only an assignment from a rebalance that began after the
                # loss renews the lease: one handed out before it (its
                # callback paused midway) may already be another node's.
                self._lease_lost = None
                self._revoked_since_loss = False
        if renewed is not None:
            log.info("lease renewed by a new assignment (it was lost: %s)", renewed)
        if behind:
            log.info(
                "restoring partitions %s: catching up to their last owner's offsets",
                ",".join(map(str, sorted(behind))),
            )
        missing = self._partitions - len(owners)
        log.info(
            "partitions owned here: %s; %d members; %s",
            ",".join(map(str, sorted(mine))) or "none",
            len(set(owners.values())),
            f"{missing} partitions without an owner" if missing else "every partition owned",
        )
        self._publish()

    # -- the lease -----------------------------------------------------------------
    def tick(self) -> bool:
        """Look at the clock (the worker calls this every ``TICK_SECONDS``).

        Returns True once per loss (seen here or lazily by a reader): the
        caller then asks the consumer to rejoin the group, as the broker may
        still count this member in (a loop blocked while heartbeats went on,
        or a broker slow to expel it), and then no rebalance would come to
        renew the lease.
        """
        with self._lock:
            self._check_lease()
            if self._lease_seconds is not None:
                self._last_tick = self._clock()
            wanted, self._rejoin_wanted = self._rejoin_wanted, False
        if wanted:
            self._publish()
        return wanted

    def lease_lost(self) -> str | None:
        """Why this node may not write to or answer for its partitions now; None if it may."""
        with self._lock:
            self._check_lease()
            return self._lease_lost

    def _check_lease(self) -> None:
        """Lose the lease if the clock jumped past it since the last tick (lock held)."""
        if self._lease_seconds is None or self._last_tick is None:
            return
        now = self._clock()
        gap = now - self._last_tick
        if gap <= self._lease_seconds:
            return
        # Sticky: the next tick closes the gap, the loss stays until renewed.
        self._last_tick = now
        self._lease_lost = (
            f"lease lost: paused {gap:.1f}s (process stopped or its loop blocked), past the "
            f"{self._lease_seconds:g}s lease (the group's session timeout less a heartbeat)"
        )
        self._revoked_since_loss = False
        self._rejoin_wanted = True
        self.leases_lost += 1
        log.warning(
            "%s; answering for and writing to no partition until the group reassigns them",
            self._lease_lost,
        )
        if self._metrics is not None:
            self._metrics.lease_lost.inc()

    def _publish(self) -> None:
        if self._metrics is None:
            return
        with self._lock:
            settled, local = self._settled and self._lease_lost is None, self._local
            to_go = self._to_go()
        self._metrics.cluster_settled.set(1 if settled else 0)
        for p in range(self._partitions):
            self._metrics.partition_owned.labels(str(p)).set(1 if p in local else 0)
            self._metrics.partition_restoring.labels(str(p)).set(to_go.get(p, 0))
