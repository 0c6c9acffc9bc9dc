"""Every read of ``ReadStore`` is asked of the campaign's shard by ``ShardedReadStore``.

A read added to ``ReadStore`` and not overridden there would run on the sharded
store's own (absent) cursor: a 503 for every campaign on a node with shards.
"""

from __future__ import annotations

import inspect

from api.readstore import ReadStore
from api.shardreads import ShardedReadStore

# Plumbing that works through the overridden reads, or that the sharded store sets up
# in its constructor (``polled``, ``known_heads`` through ``heads=``).
NOT_DELEGATED = {"open_file", "close", "beside_writer", "polled", "campaign_heads"}


def test_every_read_is_delegated() -> None:
    reads = {
        name
        for name, value in vars(ReadStore).items()
        if not name.startswith("_") and name not in NOT_DELEGATED
        and (inspect.isfunction(value) or isinstance(value, property))
    }
    missing = sorted(name for name in reads if name not in vars(ShardedReadStore))
    assert missing == []


def test_the_insight_reads_are_among_them() -> None:
    for name in ("timeline_minutes", "failure_groups", "latency", "receipt_overdue"):
        assert name in vars(ShardedReadStore), name
