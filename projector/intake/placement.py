"""Shards follow the assignment: attach what the group gives this node, detach what it takes.

With a store per partition (``projector.store.shards``), each assignment
names the partitions whose shard this node must hold. A partition taken away
is flushed (what is buffered of it is committed in its own shard) and its
shard closed, which lets go of the file at once. A gained partition's shard is
opened, and the pipeline takes its offsets and marks as the partition's
position. On a shared volume the last owner may not have closed the file yet
(it learns of the rebalance at its own pace, or is paused): DuckDB's lock
refuses us, the partition has no owner meanwhile (503), and it is tried again
every ``retry_seconds`` until the file is free, then sought to its offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from projector.intake.membership import Membership
from projector.intake.pipeline import Pipeline
from projector.store.errors import StoreError
from projector.store.shards import ShardLocked, Shards, close_shard

log = logging.getLogger(__name__)

# In the writer's thread, one call at a time with the flushes.
InWriter = Callable[..., Awaitable[Any]]


class Placement:
    def __init__(
        self,
        shards: Shards,
        pipeline: Pipeline,
        membership: Membership,
        in_writer: InWriter,
        *,
        retry_seconds: float = 0.5,
    ) -> None:
        self.shards = shards
        self.pipeline = pipeline
        self.membership = membership
        self.in_writer = in_writer
        self.retry_seconds = retry_seconds
        self.wanted: frozenset[int] = frozenset()
        self.waiting: set[int] = set()
        # Shards taken away and being closed in a thread of their own.
        self._closing: dict[int, asyncio.Task[None]] = {}
        self._retry: asyncio.Task[None] | None = None

    async def follow(self, partitions: frozenset[int]) -> None:
        """Make the attached shards those of ``partitions`` (called on each assignment).

        Shards gained here are attached before the pipeline's partitions are
        sought, so the seek goes to the shard's offsets.
        """
        self.wanted = partitions
        lost = sorted(self.shards.attached - partitions)
        if lost:
            # What is buffered of them goes into their shards before they close.
            try:
                await self.pipeline.flush(retry=False)
            except Exception as e:  # noqa: BLE001 (unacked: their next owner reads them)
                log.warning("flush before detaching shards %s failed: %s", lost, e)
        for p in lost:
            # Out of the node at once; closed (checkpoint, lock let go) beside
            # it: seconds for a large shard, which faust's rebalance callback
            # must not wait for (it timed out, and the member lost the group).
            store = await self.in_writer(self.shards.release, p)
            self.pipeline.shard_detached(p)
            if store is not None:
                self._closing[p] = asyncio.get_running_loop().create_task(
                    asyncio.to_thread(close_shard, p, store)
                )
        self.waiting &= set(partitions)
        gained = sorted(partitions - self.shards.attached)
        # Records of a gained partition wait for its shard (Pipeline.add)
        # rather than being dropped: a dropped record moves faust's read
        # offset past it, and the seek back that follows races aiokafka's
        # fetcher (a KeyError in fetched_records killed the fetcher).
        loop = asyncio.get_running_loop()
        for p in gained:
            self.pipeline.attaching.setdefault(p, loop.create_future())
        try:
            # Side by side: each shard is its own DuckDB, and an open costs
            # ~70 ms or more (a WAL to replay), which faust's rebalance waits for.
            await asyncio.gather(*(self._attach(p) for p in gained))
        finally:
            for p in gained:
                ready = self.pipeline.attaching.pop(p, None)
                if ready is not None and not ready.done():
                    ready.set_result(None)
        self.membership.opening(self.waiting)
        if self.waiting and (self._retry is None or self._retry.done()):
            self._retry = asyncio.get_running_loop().create_task(self._keep_trying())

    async def _attach(self, partition: int) -> bool:
        closing = self._closing.pop(partition, None)
        if closing is not None:
            await closing  # regained while still closing: its file must be let go first
        try:
            store = await asyncio.to_thread(self.shards.attach, partition)
            offsets = await self.in_writer(store.offsets)
            marks = await self.in_writer(store.marks)
        except ShardLocked as e:
            if partition not in self.waiting:
                log.warning("partition %d: waiting for its shard: %s", partition, e)
            self.waiting.add(partition)
            return False
        except StoreError as e:
            log.error("partition %d: cannot open its shard, retrying: %s", partition, e)
            self.waiting.add(partition)
            return False
        self.pipeline.shard_attached(partition, offsets, marks)
        self.waiting.discard(partition)
        return True

    async def _keep_trying(self) -> None:
        while self.waiting:
            await asyncio.sleep(self.retry_seconds)  # a poll of the file lock: no event to wait on
            for p in sorted(self.waiting):
                if p not in self.wanted:
                    self.waiting.discard(p)
                elif await self._attach(p):
                    log.info("partition %d: shard attached after waiting for its file", p)
                    tps = [tp for tp in self.pipeline.expected if tp[1] == p]
                    await self.pipeline.reposition(tps)
                    self.pipeline.confirm_soon(tps)
            self.membership.opening(self.waiting)
            self.membership.caught_up(self.pipeline.applied)

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        for task in list(self._closing.values()):
            await task
        self._closing.clear()

