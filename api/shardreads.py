"""The API's reads over a node's shards (a store per partition: ``projector.store.shards``).

A campaign lives in one shard, the one its partition (murmur2 of its id)
names, so every read of one campaign is the same ``ReadStore`` read, asked of
that shard. Reads of a workspace's campaign list ask every attached shard and
merge in the list's order (``campaign_id``), as ``api.gather`` does across
nodes. ``consistent()`` opens a read transaction on each shard as it is first
read inside it: one committed state per shard, which is all a campaign's read
needs (it touches one shard).

A campaign whose shard is not attached here (its partition is another node's,
or waits for its file) is ``PartitionUnavailable`` (503 with Retry-After),
never a 404: the campaign may well exist.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from api.errors import PartitionUnavailable
from api.readstore import (
    FailureGroups,
    Heads,
    LatencyAggregates,
    ReadStore,
    RecipientAnchors,
    StatsAggregates,
)
from projector.fold.rows import (
    BatchRow,
    CampaignKey,
    CampaignRow,
    RecipientRow,
    RunKey,
    RunRow,
    SnapshotRow,
)
from projector.store.shards import Shards
from projector.store.writer import Store

TopicPartition = tuple[str, int]


class ShardedReadStore(ReadStore):
    def __init__(self, shards: Shards) -> None:
        super().__init__(self._no_cursor, heads=shards.heads, polled=self._polled)
        self.shards = shards
        # One ReadStore per attached shard's Store: a shard attached again is a
        # new Store, with new cursors.
        self._readers: dict[int, tuple[Store, ReadStore]] = {}
        self._readers_lock = threading.Lock()
        self._local_tx = threading.local()

    @staticmethod
    def _no_cursor() -> Any:
        raise PartitionUnavailable("a sharded read names its shard")

    # -- which shard ------------------------------------------------------------------
    def _reader_of(self, partition: int) -> ReadStore | None:
        store = self.shards.shard(partition)
        if store is None:
            return None
        with self._readers_lock:
            held = self._readers.get(partition)
            if held is None or held[0] is not store:
                held = (store, ReadStore(store.cursor))
                self._readers[partition] = held
        reader = held[1]
        stack: ExitStack | None = getattr(self._local_tx, "stack", None)
        if stack is not None:
            entered: set[int] = self._local_tx.entered
            if partition not in entered:
                stack.enter_context(reader.consistent())
                entered.add(partition)
        return reader

    def _for(self, campaign_id: str) -> ReadStore:
        reader = self._reader_of(self.shards.partition_of(campaign_id))
        if reader is None:
            raise PartitionUnavailable(f"campaign {campaign_id!r}: its shard is not open here")
        return reader

    def _all_readers(self) -> list[ReadStore]:
        return [r for p in sorted(self.shards.attached) if (r := self._reader_of(p)) is not None]

    @contextmanager
    def consistent(self) -> Iterator[ReadStore]:
        if getattr(self._local_tx, "stack", None) is not None:
            yield self  # nested: the outer one holds the transactions
            return
        with ExitStack() as stack:
            self._local_tx.stack, self._local_tx.entered = stack, set()
            try:
                yield self
            finally:
                self._local_tx.stack = None

    # -- one campaign: its shard's answer -------------------------------------------
    def _polled(self, workspace_id: str, campaign_id: str) -> tuple[Heads, list[RunRow]]:
        if not self.shards.holds(self.shards.partition_of(campaign_id)):
            raise PartitionUnavailable(f"campaign {campaign_id!r}: its shard is not open here")
        return self.shards.polled(workspace_id, campaign_id)

    def campaign(self, campaign: CampaignKey) -> CampaignRow | None:
        return self._for(campaign[1]).campaign(campaign)

    def runs_of(self, campaign: CampaignKey) -> list[RunRow]:
        return self._for(campaign[1]).runs_of(campaign)

    def run(self, run: RunKey) -> RunRow | None:
        return self._for(run[1]).run(run)

    def batches_of(self, run: RunKey) -> list[BatchRow]:
        return self._for(run[1]).batches_of(run)

    def recipients_of(self, run: RunKey, limit: int, offset: int = 0) -> list[RecipientRow]:
        return self._for(run[1]).recipients_of(run, limit, offset)

    def snapshot(self, run: RunKey) -> SnapshotRow | None:
        return self._for(run[1]).snapshot(run)

    def known_heads(self, campaign_id: str) -> Heads | None:
        if not self.shards.holds(self.shards.partition_of(campaign_id)):
            return None  # asked of stored_heads, which says the shard is not here
        return super().known_heads(campaign_id)

    def stored_heads(self, campaign_id: str) -> Heads:
        return self._for(campaign_id).stored_heads(campaign_id)

    def position(self, campaign: CampaignKey) -> int:
        return self._for(campaign[1]).position(campaign)

    def stats_aggregates(self, campaign: CampaignKey) -> StatsAggregates:
        return self._for(campaign[1]).stats_aggregates(campaign)

    def batches_page(
        self,
        campaign: CampaignKey,
        *,
        status: str | None,
        run_id: str | None,
        limit: int,
        offset: int,
    ) -> tuple[int, list[BatchRow]]:
        return self._for(campaign[1]).batches_page(
            campaign, status=status, run_id=run_id, limit=limit, offset=offset
        )

    def batch_counters(self, run: RunKey, batch_ids: list[str]) -> dict[str, dict[str, int]]:
        return self._for(run[1]).batch_counters(run, batch_ids)

    def recipient_anchors(
        self, run: RunKey, *, status: str | None, stride: int
    ) -> RecipientAnchors:
        return self._for(run[1]).recipient_anchors(run, status=status, stride=stride)

    def recipients_from(
        self, run: RunKey, *, status: str | None, anchor: tuple[int, str], limit: int
    ) -> list[tuple[RecipientRow, str | None, Any]]:
        return self._for(run[1]).recipients_from(run, status=status, anchor=anchor, limit=limit)

    def attempts_of(
        self, run: RunKey, recipient_ids: list[str]
    ) -> dict[str, list[tuple[Any, ...]]]:
        return self._for(run[1]).attempts_of(run, recipient_ids)

    def export_recipients(
        self, run: RunKey, *, status: str | None, chunk_rows: int = 2000
    ) -> Iterator[list[tuple[RecipientRow, int]]]:
        return self._for(run[1]).export_recipients(run, status=status, chunk_rows=chunk_rows)

    def receipt_overdue(self, campaign: CampaignKey, cutoff: Any) -> dict[str, int]:
        return self._for(campaign[1]).receipt_overdue(campaign, cutoff)

    def timeline_minutes(self, run: RunKey) -> list[tuple[str, Any, int]]:
        return self._for(run[1]).timeline_minutes(run)

    def failure_groups(
        self, campaign: CampaignKey, run_id: str | None, *, top: int
    ) -> FailureGroups:
        return self._for(campaign[1]).failure_groups(campaign, run_id, top=top)

    def latency(self, run: RunKey, edges_ms: tuple[int, ...]) -> LatencyAggregates:
        return self._for(run[1]).latency(run, edges_ms)

    # -- every shard: merged in the list's order ----------------------------------------
    def offsets(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for reader in self._all_readers():
            out.update(reader.offsets())
        return out

    def flush_seq(self) -> int:
        """The sum of the shards' flush sequences: it moves whenever any shard commits."""
        return sum(reader.flush_seq() for reader in self._all_readers())

    def campaigns_page(
        self, workspace_id: str, *, limit: int, offset: int
    ) -> tuple[int, list[CampaignRow]]:
        total, parts = 0, []
        for reader in self._all_readers():
            n, rows = reader.campaigns_page(workspace_id, limit=offset + limit, offset=0)
            total += n
            parts.append(rows)
        merged = heapq.merge(*parts, key=lambda c: c.campaign_id)
        return total, list(merged)[offset : offset + limit]

    def campaign_ids(self, workspace_id: str) -> list[str]:
        return list(heapq.merge(*(r.campaign_ids(workspace_id) for r in self._all_readers())))

    def campaigns_named(self, workspace_id: str, campaign_ids: list[str]) -> list[CampaignRow]:
        by_shard: dict[int, list[str]] = {}
        for cid in campaign_ids:
            by_shard.setdefault(self.shards.partition_of(cid), []).append(cid)
        parts = [self._for(ids[0]).campaigns_named(workspace_id, ids) for ids in by_shard.values()]
        return list(heapq.merge(*parts, key=lambda c: c.campaign_id))

    def runs_of_many(self, workspace_id: str, campaign_ids: list[str]) -> dict[str, list[RunRow]]:
        out: dict[str, list[RunRow]] = {c: [] for c in campaign_ids}
        by_shard: dict[int, list[str]] = {}
        for cid in campaign_ids:
            by_shard.setdefault(self.shards.partition_of(cid), []).append(cid)
        for ids in by_shard.values():
            out.update(self._for(ids[0]).runs_of_many(workspace_id, ids))
        return out
