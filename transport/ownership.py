"""Cluster mode's ownership engine: the consumer group's assignment of the commands topic, turned into
owner epochs in SQL.

aiokafka rebalances eagerly: before every rebalance the whole assignment is revoked, after it the whole new
one is assigned. So on revocation this instance first lets the consumer loop settle what it fetched
(``transport.kafka_consumer``), then gives the worlds of those partitions up (``give_up``: the actors drain
their writes and passivate) and releases the epochs; on assignment it takes every assigned partition under
a new epoch (``SqlStore.take_partition``, on a worker thread: the event loop never waits for SQL) before
any of its records is fetched. A partition whose take failed (the database away) stays unheld: its worlds'
writes are refused here (safe), and the next rebalance tries again.

Safety never rests on this listener being timely: a paused or cut-off instance still believing it owns a
partition has each write refused by the database, since the new owner's take moved the epoch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("worldservice.ownership")

GiveUp = Callable[[set[int]], Awaitable[None]]


async def _nothing(_: set[int]) -> None:
    return None


class PartitionOwnership:
    """What a ``KafkaConsumerLoop`` of the commands topic tells about its assignment (``ownership=``)."""

    def __init__(self, store: Any, owner: str, partitions: int, give_up: GiveUp = _nothing,
                 on_change: Callable[[set[int]], None] | None = None) -> None:
        self._store = store  # a SqlStore built with owner_epochs
        self.owner = owner  # this instance's advertise URL
        self.partitions = partitions
        self._give_up = give_up
        self._on_change = on_change
        self.owned: set[int] = set()

    async def assigned(self, partitions: set[int]) -> None:
        too_high = sorted(p for p in partitions if p >= self.partitions)
        if too_high:
            log.error("ownership.partition_count_mismatch", partitions=too_high, configured=self.partitions,
                      hint="worldservice.cluster.partitions must equal the commands topic's partition count")
        loop = asyncio.get_running_loop()
        for partition in sorted(set(partitions) - set(too_high)):
            try:
                epoch = await loop.run_in_executor(None, self._store.take_partition, partition, self.owner)
            except Exception as exc:  # noqa: BLE001 - unheld is safe: its writes are refused here
                log.error("ownership.take_failed", partition=partition, error=repr(exc))
                continue
            self.owned.add(partition)
            log.info("ownership.partition_taken", partition=partition, epoch=epoch, owner=self.owner)
        self._changed()

    async def revoked(self, partitions: set[int]) -> None:
        leaving = set(partitions) & self.owned
        if not leaving:
            return
        try:
            await self._give_up(leaving)
        finally:  # whatever the drain did, nothing more of these partitions is written from here
            for partition in sorted(leaving):
                self._store.release_partition(partition)
            self.owned -= leaving
            log.info("ownership.partitions_released", partitions=sorted(leaving))
            self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(set(self.owned))
