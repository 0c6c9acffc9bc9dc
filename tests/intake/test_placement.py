"""Shards follow the assignment (``projector.intake.placement``), without Kafka.

A pipeline over real shard files; the assignment is what the test says. The
broker-level proofs are tests/service/test_cluster_blackbox.py (own and shared
data directories).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from projector.intake.health import PipelineStatus
from projector.intake.membership import Membership
from projector.intake.metrics import Metrics
from projector.intake.pipeline import Pipeline
from projector.intake.placement import Placement
from projector.settings import Topics
from projector.store.shards import Shards
from projector.store.writer import Store
from tests.fixtures.golden import golden_lines

SOURCES = Topics().sources
RUNS = SOURCES[0]


def _node(root) -> tuple[Shards, Pipeline, Placement]:
    shards = Shards(root, lambda path: Store(path)).open()
    shards.partitions = 2
    pipeline = Pipeline(
        shards,  # type: ignore[arg-type]
        executor=ThreadPoolExecutor(max_workers=1),
        deadletters=None,
        status=PipelineStatus(),
        metrics=Metrics(),
        flush_max_events=10_000,
        flush_interval_ms=60_000,  # flushes only when the test asks
    )
    pipeline.prepare({(t, p): 0 for t in SOURCES for p in (0, 1)})
    pipeline.holds = shards.holds
    membership = Membership("http://me", 2, SOURCES)
    return shards, pipeline, Placement(shards, pipeline, membership, pipeline.in_writer)


def test_records_go_to_the_shard_of_their_partition_and_move_with_it(tmp_path):
    values = [line.encode() for line in golden_lines()]
    acked: list[int] = []

    async def go() -> None:
        shards, pipeline, placement = _node(tmp_path)
        await placement.follow(frozenset({0}))
        assert shards.attached == {0}
        for offset, value in enumerate(values[:6]):
            await pipeline.add(RUNS, 0, offset, None, value, lambda o=offset: acked.append(o))
        # Partition 1 is not held here: its record is neither taken nor acked.
        await pipeline.add(RUNS, 1, 0, None, values[6], lambda: acked.append(-1))
        assert pipeline.expected_offset(RUNS, 1) == 0
        # The group moves partition 0 away: what is buffered is flushed into its shard first.
        await placement.follow(frozenset({1}))
        assert acked == list(range(6))
        assert shards.attached == {1}
        assert (RUNS, 0) not in pipeline.applied and pipeline.expected_offset(RUNS, 0) == 0
        await placement.stop()  # the released shard's close, in its own thread, ends
        shards.close()

        # Another node (a shared directory) gains partition 0: it takes the shard's position.
        _, other, moved = _node(tmp_path)
        await moved.follow(frozenset({0, 1}))
        assert other.applied == {(RUNS, 0): 6}
        assert other.expected_offset(RUNS, 0) == 6
        assert set(other.marks) == {(RUNS, 0)}
        moved.shards.close()

    asyncio.run(go())


def test_a_record_of_a_partition_being_attached_waits_for_its_shard(tmp_path):
    """Not dropped: a dropped record moves faust's read offset past it, and the seek
    back that follows raced aiokafka's fetcher (KeyError in fetched_records)."""
    values = [line.encode() for line in golden_lines()]

    async def go() -> None:
        shards, pipeline, placement = _node(tmp_path)
        follow = asyncio.get_running_loop().create_task(placement.follow(frozenset({0, 1})))
        await asyncio.sleep(0)  # follow() has marked partitions 0 and 1 as attaching
        assert set(pipeline.attaching) == {0, 1}
        await pipeline.add(RUNS, 1, 0, None, values[0])  # waits for shard 1, then is taken
        assert shards.holds(1) and pipeline.expected_offset(RUNS, 1) == 1
        await follow
        assert pipeline.attaching == {}
        await pipeline.flush()
        assert shards.shard(1).offsets() == {(RUNS, 1): 1}
        # A partition neither held nor being attached: left, as before.
        await pipeline.add(RUNS, 2, 0, None, values[1])
        assert pipeline.expected_offset(RUNS, 2) is None
        await placement.stop()
        shards.close()

    asyncio.run(go())
