"""Which partition of the commands topic a world belongs to: Kafka's default partitioner for a keyed
record, ``(murmur2(key) & 0x7fffffff) % partitions`` over the UTF-8 bytes of the world id — the same
answer as the Java client, aiokafka and every other client that keys the commands by world id. Ownership
(the consumer group's assignment) and fencing (the partition's owner epoch) both follow it.

It lives here, not in ``domain/``: the hash is aiokafka's own (``aiokafka.partitioner.murmur2``, pure
Python, no I/O), and ``domain/`` may not import aiokafka at all. ``storage/`` is the lowest layer that may,
and the one that needs it first (the epoch fence of a write). aiokafka is imported at the first call only
(cluster mode): the embedded default never loads it."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=65_536)
def world_partition(world_id: str, partitions: int) -> int:
    """The partition a record keyed ``world_id`` lands on in a topic of ``partitions`` partitions."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    from aiokafka.partitioner import murmur2  # cached per world id: the import is paid once

    return (murmur2(world_id.encode("utf-8")) & 0x7FFFFFFF) % partitions
