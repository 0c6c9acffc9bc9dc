"""Marks that tie stored offsets to the log they came from.

An offset means something only in the log that produced it. A broker that
restarts empty (Tansu's memory storage, a lost disk) and is refilled by
producers hands out the same offsets for other records: once the new log has
grown past ``next_offset``, comparing offsets with log ends sees nothing wrong
and the records below are silently skipped. So every flush also stores, per
partition, the offset of the last record it applied and a digest of that
record's value; the worker re-reads that record from the log on start, on
every log poll and before every commit (``Pipeline.check_marks``), and a
partition whose log holds another record there (or no record at all) is
flagged inconsistent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class LogMark:
    """The last record applied from a partition: where it was and what it held."""

    offset: int
    digest: int


def digest(value: bytes | None) -> int:
    """64-bit digest of a record value, as a signed integer (a DuckDB BIGINT).

    The value alone is enough: every event carries its unique ``event_id``, so
    another record at the same offset has another value. A record resent with
    the very same bytes at the same offset is the same history, and matches.
    """
    raw = hashlib.blake2b(value or b"", digest_size=8).digest()
    return int.from_bytes(raw, "big", signed=True)


def marks_of(
    last: Mapping[TopicPartition, tuple[int, bytes | None]],
) -> dict[TopicPartition, LogMark]:
    """Each partition's mark from its last applied record, given as (offset, value)."""
    return {tp: LogMark(offset, digest(value)) for tp, (offset, value) in last.items()}


def mismatch(tp: TopicPartition, mark: LogMark, found: int | None) -> str | None:
    """The reason a partition's log no longer holds the record we applied, or None."""
    if found is None:
        return (
            f"the record applied at offset {mark.offset} is no longer in the log "
            "(broker lost records)"
        )
    if found != mark.digest:
        return (
            f"the log holds another record at offset {mark.offset} than the one applied "
            "(the log was replaced, e.g. a broker restarted empty and refilled)"
        )
    return None
