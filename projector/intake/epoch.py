"""The consumer's log epoch: a number that moves whenever the log it reads may have changed.

A stored log mark (``projector.store.logmark``) proves that DuckDB and the
broker hold the same history, but reading it back costs a fetch. Within one
epoch the consumer reads over the same connections to the same leaders, and a
log cannot be replaced under an open connection: a broker that restarts
(empty, and refilled by producers) drops every connection first, and a
partition whose leader moves is announced by new metadata. So the pipeline
reads each partition's mark back once per epoch and per assignment, before
the first commit of that partition's records, instead of before every commit
(docs/decisions/0034-log-marks-once-per-epoch.md).

The epoch moves on:

* every new connection of the consumer's client (a reconnect after the
  broker went away, restarted or not; a first connection to a new leader or
  coordinator);
* cluster metadata naming another broker set or another leader for a
  partition (an unclean leader election hands out a diverged log).

The watcher runs on faust's consumer thread; it bumps the number before the
connection that triggers it carries any fetch, so every record fetched over
it reaches the pipeline after the bump.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

log = logging.getLogger(__name__)


class LogEpoch:
    """A counter bumped when the log under the consumer may have changed.

    Written by one thread (the consumer's), read by the pipeline's loop; an
    ``int`` read or written under the GIL needs no lock.
    """

    def __init__(self, on_bump: Callable[[str], None] | None = None) -> None:
        self.value = 0
        self.on_bump = on_bump

    def __call__(self) -> int:
        return self.value

    def bump(self, why: str) -> None:
        self.value += 1
        log.debug("log epoch %d: %s", self.value, why)
        if self.on_bump is not None:
            self.on_bump(why)

    def watch(self, consumer: Any) -> None:
        """Bump on every new connection and leader change of ``consumer`` (an AIOKafkaConsumer).

        aiokafka has no public hook for either: the client's connection
        getter is wrapped (every request, fetches included, asks it for its
        connection), and a metadata listener compares leaders.
        """
        client = consumer._client  # noqa: SLF001 - no public hook exists
        get_conn = client._get_conn  # noqa: SLF001
        seen: weakref.WeakSet[Any] = weakref.WeakSet()

        async def watched_get_conn(node_id: Any, **kwargs: Any) -> Any:
            conn = await get_conn(node_id, **kwargs)
            if conn is not None and conn not in seen:
                seen.add(conn)
                self.bump(f"new connection to broker {node_id}")
            return conn

        client._get_conn = watched_get_conn  # noqa: SLF001
        client.cluster.add_listener(self._leaders_listener())

    def _leaders_listener(self) -> Callable[[Any], None]:
        last: dict[str, Any] = {}

        def on_metadata(cluster: Any) -> None:
            now = _leaders(cluster)
            before = last.get("leaders")
            last["leaders"] = now
            if before is not None and now != before:
                self.bump("the cluster metadata names other brokers or leaders")

        return on_metadata


def _leaders(cluster: Any) -> tuple[frozenset[Any], dict[tuple[str, int], Any]]:
    """The broker ids and the leader of every partition that ``cluster`` (ClusterMetadata) knows."""
    brokers = frozenset(b.nodeId for b in cluster.brokers())
    leaders = {}
    for topic in cluster.topics():
        for partition in cluster.partitions_for_topic(topic) or ():
            leaders[(topic, partition)] = cluster.leader_for_partition(
                TopicPartition(topic, partition)
            )
    return brokers, leaders
