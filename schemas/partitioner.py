"""Which partition a campaign's events are on: the contract's partitioner.

Producers key every event by ``campaign_id`` and the contract assumes the Java
client's default partitioner for keyed records: ``toPositive(murmur2(key)) %
partitions`` over the key's UTF-8 bytes (docs/events.md, "Partitioning"). The
projector relies on it to find a campaign's partition, and so its owner,
without asking Kafka.
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: a signed 32-bit hash, exactly as the Java client computes it."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length // 4
    for (k,) in struct.iter_unpack("<I", data[: words * 4]):
        k = (k * _M) & _MASK
        k ^= k >> _R
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & ~3
    left = length % 4
    if left == 3:
        h ^= data[tail + 2] << 16
    if left >= 2:
        h ^= data[tail + 1] << 8
    if left >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_of(campaign_id: str, partitions: int) -> int:
    """The partition of ``campaign_id``'s events among ``partitions`` (the SDK's key bytes:
    the id's UTF-8 encoding, ``projector.tools.emit``)."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    return (murmur2(campaign_id.encode()) & 0x7FFFFFFF) % partitions
