"""Topic creation: the one place the projector creates Kafka topics.

Neither Tansu nor the compose Kafka is relied on for automatic creation, and
creating here first matters on Tansu 0.6.0: it auto-creates any topic named
in a Metadata request (aiokafka sends ``allow_auto_topic_creation=true``)
with 4 partitions, whatever this module would have chosen. So this module
creates before it describes, and callers should run it before any client
touches the topics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Iterable, Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code

from projector.intake.errors import PartitionCountError, TopicsError

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


async def _start_admin(bootstrap: str, connect_timeout: float) -> AIOKafkaAdminClient:
    """Start an admin client, retrying while the broker is still coming up."""
    deadline = time.monotonic() + connect_timeout
    delay = 0.05
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            return admin
        except (KafkaConnectionError, OSError) as e:
            await admin.close()
            if time.monotonic() + delay > deadline:
                raise TopicsError(
                    f"cannot reach Kafka at {bootstrap} within {connect_timeout:.0f}s: {e}"
                ) from e
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    *,
    replication_factor: int = 1,
    connect_timeout: float = 30.0,
) -> dict[str, int]:
    """Create ``topics`` with ``partitions`` each; existing topics are left alone.

    Idempotent. An existing topic with another partition count only logs a
    warning: repartitioning would move campaigns between partitions, which is
    an operator's decision (``require_copartitioned`` refuses to run on it).

    Returns:
        Every topic's partition count as the broker describes it.

    Raises:
        TopicsError: The broker is unreachable or refused a topic.
    """
    names = list(dict.fromkeys(topics))
    if not names:
        return {}
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    admin = await _start_admin(bootstrap, connect_timeout)
    try:
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor) for name in names]
        )
        for topic, code, message, *_ in response.topic_errors:
            if code == 0:
                log.info("created topic %s with %d partitions", topic, partitions)
            elif code != _TOPIC_ALREADY_EXISTS:
                err = for_code(code)
                raise TopicsError(f"cannot create topic {topic}: {err.__name__}: {message}")
        # Describe only after creating: on Tansu a Metadata request naming an
        # unknown topic would create it with the broker's default partitions.
        counts: dict[str, int] = {}
        for meta in await admin.describe_topics(names):
            if meta["error_code"]:
                err = for_code(meta["error_code"])
                raise TopicsError(f"topic {meta['topic']} is unusable: {err.__name__}")
            have = counts[meta["topic"]] = len(meta["partitions"])
            if have != partitions:
                log.warning(
                    "topic %s exists with %d partitions, not %d; left as it is "
                    "(all contract topics must have the same count)",
                    meta["topic"],
                    have,
                    partitions,
                )
        return counts
    except KafkaError as e:
        raise TopicsError(f"creating topics on {bootstrap} failed: {e!r}") from e
    finally:
        await admin.close()


def require_copartitioned(counts: Mapping[str, int], sources: Iterable[str]) -> int:
    """The one partition count every source topic has; refuses topics that differ.

    Producers key by ``campaign_id``, so only equal counts put a campaign on
    the same partition of every topic: partition p of the four topics is then
    one closed set of campaigns, the unit the consumer group assigns (faust
    co-partitions only topics of equal count) and the offsets are kept for.
    Checked before the group is joined: unequal counts would split a
    campaign's events between partitions that different nodes may own.

    Raises:
        PartitionCountError: The counts differ (or a source is missing); the
            message names each topic's count and the way out.
    """
    names = list(dict.fromkeys(sources))
    missing = [t for t in names if t not in counts]
    if missing:
        raise PartitionCountError(f"source topics not found: {', '.join(missing)}")
    found = {counts[t] for t in names}
    if len(found) == 1:
        return found.pop()
    listed = ", ".join(f"{t} has {counts[t]}" for t in names)
    most = max(found)
    raise PartitionCountError(
        f"the source topics must have the same partition count, but {listed}. "
        "A campaign's events would land on different partitions of different topics. "
        f"Recreate the topics with one count, or raise the others to {most} "
        f"(kafka-topics --alter --topic NAME --partitions {most}; existing campaigns "
        "then move to other partitions: rebuild with `projector replay`, docs/operations.md)."
    )


def ensure_topics_sync(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    *,
    replication_factor: int = 1,
    connect_timeout: float = 30.0,
) -> dict[str, int]:
    """:func:`ensure_topics`, blocking; callable with or without a running event loop.

    Inside a running loop (an async test calling a sync factory) it runs on a
    private loop in a helper thread, since ``asyncio.run`` cannot nest.
    """
    names = list(topics)

    def run() -> dict[str, int]:
        return asyncio.run(
            ensure_topics(
                bootstrap,
                names,
                partitions,
                replication_factor=replication_factor,
                connect_timeout=connect_timeout,
            )
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()
