"""The pipeline under a lost lease (projector.intake.membership): nothing is committed.

A node paused past its group session may have lost its partitions: its
buffered batch is dropped and read again, never written, so the node's
database holds nothing it read while its partitions may have been another's.
The broker-level proof is tests/service/test_cluster_fence.py.
"""

from __future__ import annotations

import asyncio

from projector.store.writer import Store
from tests.intake.test_logmarks import DLRS, RUNS, _pipeline, _records


def test_a_flush_under_a_lost_lease_commits_nothing_and_reads_again(tmp_path):
    values = _records()
    acked: list[int] = []
    sought: list[tuple[str, int, int]] = []

    async def seek(topic: str, partition: int, offset: int) -> None:
        sought.append((topic, partition, offset))

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = _pipeline(store)
            p.seeker = seek
            why: list[str | None] = ["lease lost: paused 7.0s"]
            p.lease = lambda: why[0]
            for offset, value in enumerate(values[:3]):
                await p.add(*RUNS, offset, None, value, lambda o=offset: acked.append(o))
            await p.add(*DLRS, 0, None, values[3])
            assert await p.flush() is None
            assert store.offsets() == {} and store.seq == 0  # nothing written
            assert acked == []  # nothing acked: faust commits nothing either
            assert sorted(sought) == sorted([(*RUNS, 0), (*DLRS, 0)])
            assert p.expected[RUNS] == 0 and p.expected[DLRS] == 0
            # Renewed: the same records, read again, are committed once.
            why[0] = None
            for offset, value in enumerate(values[:3]):
                await p.add(*RUNS, offset, None, value, lambda o=offset: acked.append(o))
            await p.add(*DLRS, 0, None, values[3])
            result = await p.flush()
            assert result is not None and acked == [0, 1, 2]
            assert store.offsets() == {RUNS: 3, DLRS: 1}

    asyncio.run(go())
