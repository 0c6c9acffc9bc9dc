"""The rows beside the projections: source offsets with log marks, dead letters, positions.

Written in the flush's transaction with the rows they account for: the next
offset of every source partition a micro-batch covered (where a restart
resumes) and the last record applied there (``logmark``: a log replaced under
us shows there), the records it rejected, and the flush sequence of every
campaign it changed (the API's ETags).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from projector.fold.rows import CampaignKey
from projector.store.keyed import key_table
from projector.store.logmark import LogMark
from projector.store.tables import CAMPAIGN_KEY

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record (or array item) the decoder rejected, by source position."""

    topic: str
    partition: int
    offset: int
    item_index: int  # -1 for the whole record
    reason: str

    @property
    def reason_code(self) -> str:
        return self.reason.split(":", 1)[0]


def read_offsets(con: duckdb.DuckDBPyConnection) -> dict[TopicPartition, int]:
    rows = con.execute("SELECT topic, partition, next_offset FROM source_offsets").fetchall()
    return {(t, p): o for t, p, o in rows}


def read_marks(con: duckdb.DuckDBPyConnection) -> dict[TopicPartition, LogMark]:
    """The last record applied per partition, where known (``projector.store.logmark``)."""
    rows = con.execute(
        "SELECT topic, partition, last_offset, last_digest FROM source_offsets "
        "WHERE last_offset IS NOT NULL AND last_digest IS NOT NULL"
    ).fetchall()
    return {(t, p): LogMark(o, d) for t, p, o, d in rows}


def write_offsets(
    con: duckdb.DuckDBPyConnection,
    offsets: Mapping[TopicPartition, int],
    marks: Mapping[TopicPartition, LogMark],
) -> None:
    tps = list(offsets)
    off = pa.table(  # noqa: F841 (read by DuckDB by name)
        {
            "topic": [tp[0] for tp in tps],
            "partition": pa.array([tp[1] for tp in tps], pa.int32()),
            "next_offset": pa.array([offsets[tp] for tp in tps], pa.int64()),
            "last_offset": pa.array(
                [m.offset if (m := marks.get(tp)) else None for tp in tps], pa.int64()
            ),
            "last_digest": pa.array(
                [m.digest if (m := marks.get(tp)) else None for tp in tps], pa.int64()
            ),
        }
    )
    # A partition flushed without a mark (a rebuild from the archive, which
    # keeps no record values) loses its old one: it would name an older record.
    con.execute(
        "INSERT OR REPLACE INTO source_offsets "
        "(topic, partition, next_offset, last_offset, last_digest) "
        "SELECT topic, partition, next_offset, last_offset, last_digest FROM off"
    )


def write_deadletters(con: duckdb.DuckDBPyConnection, deadletters: Iterable[DeadLetter]) -> None:
    unique = {(d.topic, d.partition, d.offset, d.item_index): d for d in deadletters}
    if not unique:
        return
    dl = pa.table(  # noqa: F841
        {
            "source_topic": [k[0] for k in unique],
            "source_partition": pa.array([k[1] for k in unique], pa.int32()),
            "source_offset": [k[2] for k in unique],
            "item_index": pa.array([k[3] for k in unique], pa.int32()),
            "reason_code": [d.reason_code for d in unique.values()],
            "reason": [d.reason[:2000] for d in unique.values()],
        }
    )
    con.execute("INSERT OR REPLACE INTO deadletters SELECT * FROM dl")


def write_positions(
    con: duckdb.DuckDBPyConnection, changed: Iterable[CampaignKey], seq: int
) -> None:
    """Record ``seq`` as the position of every campaign this flush changed (the API's ETag)."""
    keys = sorted(changed)
    if not keys:
        return
    pos = key_table(CAMPAIGN_KEY, keys).append_column(  # noqa: F841
        "position", pa.array([seq] * len(keys), pa.int64())
    )
    con.execute("INSERT OR REPLACE INTO campaign_positions SELECT * FROM pos")
