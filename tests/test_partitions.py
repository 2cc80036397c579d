"""world -> partition is exactly Kafka's default partitioner for keyed records, so the worlds an instance
is assigned (by partition) are the worlds whose commands it consumes."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from storage.partitions import world_partition

# org.apache.kafka.common.utils.UtilsTest.testMurmur2 (the Java client's vectors, signed 32-bit).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "signed"), JAVA_MURMUR2.items())
def test_the_hash_is_the_java_clients_murmur2(key: bytes, signed: int) -> None:
    assert murmur2(key) == signed & 0xFFFFFFFF
    # toPositive(murmur2(key)) % n, as the Java client's BuiltInPartitioner.partitionForKey computes it.
    assert world_partition(key.decode(), 1000) == (signed & 0x7FFFFFFF) % 1000


def test_partition_of_a_world_matches_aiokafkas_default_partitioner() -> None:
    partitioner = DefaultPartitioner()
    keys = [f"world-{i}" for i in range(200)] + ["", "a", "wörld-ü", "世界-7", "x" * 128]
    for partitions in (1, 4, 12, 50):
        every = list(range(partitions))
        for key in keys:
            assert world_partition(key, partitions) == partitioner(key.encode(), every, every), (key, partitions)


def test_worlds_spread_over_every_partition_and_a_bad_count_is_refused() -> None:
    assert {world_partition(f"w{i}", 12) for i in range(500)} == set(range(12))
    with pytest.raises(ValueError, match="partitions"):
        world_partition("w", 0)
