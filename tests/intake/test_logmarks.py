"""The log marks in the pipeline, without Kafka: what is stored, and what a replaced log does.

The broker-level proofs are in tests/reliability/test_truncation.py; these pin
the pipeline's own rules with a verifier that answers what a test wants.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from projector.intake.health import PipelineStatus
from projector.intake.metrics import Metrics
from projector.intake.offsets import OffsetsError
from projector.intake.pipeline import Pipeline
from projector.store.logmark import LogMark, digest
from projector.store.writer import Store
from tests.fixtures.golden import golden_lines

RUNS = ("campaign.runs", 0)
DLRS = ("campaign.dlrs", 0)
SUBMITS = ("campaign.submits", 0)
BATCHES = ("campaign.batches", 0)


def _pipeline(store: Store) -> Pipeline:
    pipeline = Pipeline(
        store,
        executor=ThreadPoolExecutor(max_workers=1),
        deadletters=None,
        status=PipelineStatus(),
        metrics=Metrics(),
        flush_max_events=10_000,
        flush_interval_ms=60_000,  # flushes only when the test asks
    )
    pipeline.prepare({RUNS: 0, DLRS: 0})
    return pipeline


def _records() -> list[bytes]:
    return [line.encode() for line in golden_lines()]


async def _flushed_once(store: Store, values: list[bytes]) -> Pipeline:
    """A pipeline that has committed runs[0]."""
    p = _pipeline(store)
    await p.add(*RUNS, 0, None, values[0])
    await p.flush()
    return p


def _raising(error: Exception):  # noqa: ANN202 - a Verifier
    async def verify(wanted):
        raise error

    return verify


def test_a_flush_stores_the_last_record_of_each_partition(tmp_path):
    values = _records()

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = _pipeline(store)
            for offset, value in enumerate(values[:5]):
                await p.add(*RUNS, offset, None, value)
            await p.add(*DLRS, 0, None, values[5])
            await p.flush()
            assert store.marks() == {
                RUNS: LogMark(4, digest(values[4])),
                DLRS: LogMark(0, digest(values[5])),
            }
            assert p.marks == store.marks()

    asyncio.run(go())


def test_a_replaced_log_is_flagged_before_the_commit_and_the_rest_read_again(tmp_path):
    values = _records()
    seeks: list[tuple[str, int, int]] = []
    asked: list[dict] = []

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = _pipeline(store)
            for offset, value in enumerate(values[:3]):
                await p.add(*RUNS, offset, None, value)
            await p.add(*DLRS, 0, None, values[3])
            await p.flush()
            seq = store.seq

            async def verify(wanted):
                asked.append(dict(wanted))
                # runs[0] still holds what we applied at offset 2; dlrs[0] now
                # holds another record at offset 0.
                return {
                    tp: (digest(values[2]) if tp == RUNS else digest(b"other")) for tp in wanted
                }

            async def seek(topic, partition, offset):
                seeks.append((topic, partition, offset))

            p.verifier, p.seeker = verify, seek
            await p.add(*RUNS, 3, None, values[4])
            await p.add(*DLRS, 1, None, values[5])
            assert await p.flush() is None  # dropped, nothing committed
            assert store.seq == seq
            assert asked == [{RUNS: 2, DLRS: 0}]
            assert set(p.inconsistent) == {DLRS}
            assert "another record at offset 0" in p.inconsistent[DLRS]
            assert seeks == [(*RUNS, 3)]  # the consistent partition is read again
            assert p.expected[RUNS] == 3 and p.applied[RUNS] == 3
            # Read again, runs[0] is applied; dlrs[0] is refused from now on.
            await p.add(*RUNS, 3, None, values[4])
            await p.add(*DLRS, 1, None, values[5])
            await p.flush()
            assert store.offsets() == {RUNS: 4, DLRS: 1}

    asyncio.run(go())


def test_the_final_flush_is_abandoned_when_the_broker_cannot_be_asked(tmp_path):
    values = _records()

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = await _flushed_once(store, values)
            p.verifier = _raising(OffsetsError("broker unreachable"))
            await p.add(*RUNS, 1, None, values[1])
            await p.close(timeout=5)  # logged, not raised
            assert store.offsets() == {RUNS: 1}

    asyncio.run(go())


def test_a_flush_that_fails_unexpectedly_keeps_its_records(tmp_path):
    """Any exception, not only the expected store and offsets errors, puts the
    batch back: its records are committed by the next flush, never skipped
    (seen: a bare TimeoutError from the log check lost a batch while later
    flushes moved the offsets past it)."""
    values = _records()

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = await _flushed_once(store, values)
            answers = p.verifier
            p.verifier = _raising(RuntimeError("unexpected"))
            await p.add(*RUNS, 1, None, values[1])
            with pytest.raises(RuntimeError):
                await p.flush()
            p.verifier = answers
            await p.add(*RUNS, 2, None, values[2])
            await p.flush()
            assert store.offsets() == {RUNS: 3}
            with Store(tmp_path / "q.duckdb") as reference:
                q = _pipeline(reference)
                for offset, value in enumerate(values[:3]):
                    await q.add(*RUNS, offset, None, value)
                await q.flush()
                for table in ("campaigns", "runs", "batches", "recipients"):
                    sql = f"SELECT * FROM {table} ORDER BY ALL"
                    assert (
                        store.con.execute(sql).fetchall() == reference.con.execute(sql).fetchall()
                    ), table

    asyncio.run(go())


def test_a_lost_log_refuses_partitions_that_never_had_a_record_applied(tmp_path):
    """With no stored offset and no mark, nothing tells an old stream from a new one.

    Seen: after the broker restarted empty, the new stream landed on
    partitions DuckDB had never applied and was applied there.
    """
    values = _records()

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = _pipeline(store)
            p.prepare({RUNS: 0, DLRS: 0, SUBMITS: 0})
            p.applied[DLRS] = 0  # a replay stores offset 0 for a partition it found empty
            await p.add(*RUNS, 0, None, values[0])
            await p.add(*RUNS, 1, None, values[1])
            await p.flush()
            p.observe_log({}, {RUNS: 0, SUBMITS: 0})  # runs[0] lost its two records
            assert "behind the stored offset 2" in p.inconsistent[RUNS]
            assert set(p.inconsistent) == {RUNS, DLRS, SUBMITS}
            assert "lost the log of campaign.runs[0]" in p.inconsistent[SUBMITS]
            # New records land where nothing was applied, in a partition not
            # known before too: none is buffered, none committed.
            await p.add(*SUBMITS, 0, None, values[2])
            await p.add(*BATCHES, 0, None, values[3])
            assert BATCHES in p.inconsistent
            assert await p.flush() is None
            assert store.offsets() == {RUNS: 2}

    asyncio.run(go())


def test_first_records_of_a_partition_are_committed_only_while_every_mark_holds(tmp_path):
    """A batch of only unmarked partitions checks the other partitions' marks."""
    values = _records()
    asked: list[dict] = []

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = await _flushed_once(store, values)

            async def verify(wanted):
                asked.append(dict(wanted))
                return {tp: None for tp in wanted}  # runs[0] lost its record

            p.verifier = verify
            await p.add(*DLRS, 0, None, values[1])
            assert await p.flush() is None
            assert asked == [{RUNS: 0}]
            assert set(p.inconsistent) == {RUNS, DLRS}
            assert store.offsets() == {RUNS: 1}

    asyncio.run(go())


def test_marks_are_read_back_once_per_epoch_and_assignment(tmp_path):
    """Steady state asks the broker nothing; a reconnection or an assignment asks again,
    and the records wait for the answer."""
    values = _records()
    asked: list[dict] = []
    epoch = [1]
    log: list[bytes] | Exception = values  # what the broker holds: offset i is values[i]

    async def go() -> None:
        nonlocal log
        with Store(tmp_path / "p.duckdb") as store:
            p = await _flushed_once(store, values)  # runs[0] marked at offset 0
            p.epoch = lambda: epoch[0]

            async def verify(wanted):
                asked.append(dict(wanted))
                if isinstance(log, Exception):
                    raise log
                return {tp: digest(log[offset]) for tp, offset in wanted.items()}

            p.verifier = verify

            async def flush_next(offset: int) -> None:
                await p.add(*RUNS, offset, None, values[offset])
                await p.flush()

            await flush_next(1)
            await flush_next(2)
            await flush_next(3)
            assert asked == [{RUNS: 0}]  # confirmed once; the same epoch asks no more
            assert store.offsets() == {RUNS: 4}

            epoch[0] += 1  # the consumer reconnected
            await flush_next(4)
            await flush_next(5)
            assert asked[1:] == [{RUNS: 3}]

            p.assigned({RUNS})  # the group handed the partition out again
            await flush_next(6)
            assert asked[2:] == [{RUNS: 5}]

            epoch[0] += 1  # reconnected to a log that cannot be asked yet: held
            log = OffsetsError("broker unreachable")
            await p.add(*RUNS, 7, None, values[7])
            with pytest.raises(OffsetsError):
                await p.flush(retry=False)
            assert store.offsets() == {RUNS: 7}

            log = [b"another history"] * len(values)  # the log was replaced
            assert await p.flush() is None
            assert "another record at offset 6" in p.inconsistent[RUNS]
            assert store.offsets() == {RUNS: 7}
            assert p.metrics.mark_checks._value.get() == len(asked)

    asyncio.run(go())


def test_a_mark_read_back_during_a_reconnection_is_not_confirmed(tmp_path):
    """The epoch is read before asking: a reconnection meanwhile makes the next commit ask again."""
    values = _records()
    asked: list[dict] = []
    epoch = [1]

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = await _flushed_once(store, values)
            p.epoch = lambda: epoch[0]

            async def verify(wanted):
                asked.append(dict(wanted))
                epoch[0] += 1
                return {RUNS: p.marks[RUNS].digest}

            p.verifier = verify
            for offset in (1, 2):
                await p.add(*RUNS, offset, None, values[offset])
                await p.flush()
            assert len(asked) == 2

    asyncio.run(go())


def test_an_assignment_reads_the_marks_back_at_once(tmp_path):
    """A replaced log that delivers nothing new is flagged without waiting for a commit;
    a read begun before an assignment confirms nothing after it."""
    values = _records()

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = await _flushed_once(store, values)
            p.epoch = lambda: 1
            holds = [digest(values[0])]

            async def verify(wanted):
                p.assigned({RUNS})  # a rebalance while the broker answers
                return {tp: holds[0] for tp in wanted}

            p.verifier = verify
            await p.confirm_soon({RUNS})
            assert RUNS not in p.inconsistent and RUNS not in p.confirmed

            holds[0] = digest(b"another history")
            await p.confirm_soon({RUNS})
            assert "another record at offset 0" in p.inconsistent[RUNS]

    asyncio.run(go())


def test_marks_taken_from_a_swapped_in_database_are_read_back_before_relied_on(tmp_path):
    values = _records()
    asked: list[dict] = []

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = await _flushed_once(store, values)
            p.epoch = lambda: 1

            async def verify(wanted):
                asked.append(dict(wanted))
                return {tp: digest(values[offset]) for tp, offset in wanted.items()}

            p.verifier = verify
            await p.add(*RUNS, 1, None, values[1])
            await p.flush()
            assert asked == [{RUNS: 0}]  # now confirmed
            # A database that read further (a replay) is swapped in: its mark is NEW's.
            p.adopt({RUNS: 3}, {RUNS: LogMark(2, digest(values[2]))}, {})
            await p.add(*RUNS, 3, None, values[3])
            await p.flush()
            assert asked[1:] == [{RUNS: 2}]

    asyncio.run(go())


def test_a_swap_seeks_repaired_partitions_to_the_rebuilt_position(tmp_path):
    """The consumer stood at the lost log's offset; faust drops records below where it
    was last sought, so the rebuilt position must be sought, not waited for."""
    values = _records()
    seeks: list[tuple[str, int, int]] = []

    async def go() -> None:
        with Store(tmp_path / "p.duckdb") as store:
            p = _pipeline(store)
            for offset in range(3):
                await p.add(*RUNS, offset, None, values[offset])
            await p.flush()
            p.observe_log({}, {RUNS: 0, DLRS: 0})  # the broker lost the log
            assert set(p.inconsistent) == {RUNS, DLRS}

            async def seek(topic, partition, offset):
                seeks.append((topic, partition, offset))

            p.seeker = seek
            # Rebuilt from the new log: one record in runs[0], none in dlrs[0].
            p.adopt({RUNS: 1}, {RUNS: LogMark(0, digest(b"new"))}, {RUNS: 1, DLRS: 0})
            await p.reposition({RUNS, DLRS})
            assert sorted(seeks) == [(*DLRS, 0), (*RUNS, 1)]
            assert p.inconsistent == {}
            assert set(p.resyncing) == {RUNS, DLRS}  # the watchdog's fallback
            await p.add(*RUNS, 1, None, values[3])
            assert RUNS not in p.resyncing

    asyncio.run(go())


pytestmark = pytest.mark.timeout(60)
