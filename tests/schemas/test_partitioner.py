"""The contract's partitioner equals Kafka's Java default and the SDK's producer."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from schemas.partitioner import murmur2, partition_of

# Kafka's own vectors: UtilsTest.testMurmur2 in the Java client
# (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
    # Quoted as the Java client's values in akka's Murmur2Spec (one to five bytes).
    (b"1", -1993445489),
    (b"12", 126087238),
    (b"123", -267702483),
    (b"1234", -1614185708),
    (b"12345", -1188365604),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_equals_the_java_client(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@given(st.binary(max_size=200))
def test_murmur2_equals_aiokafka(data: bytes) -> None:
    assert murmur2(data) & 0xFFFFFFFF == aiokafka_murmur2(data)


@given(st.text(max_size=80), st.integers(min_value=1, max_value=512))
def test_partition_of_equals_the_sdk_producers_partitioner(campaign_id: str, n: int) -> None:
    # What projector.tools.emit asks of aiokafka: the key is the id's UTF-8 bytes.
    partitions = list(range(n))
    assert partition_of(campaign_id, n) == DefaultPartitioner()(
        campaign_id.encode(), partitions, partitions
    )


def test_partition_of_refuses_no_partitions() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        partition_of("c1", 0)
