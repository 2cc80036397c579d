"""Cluster mode's ownership engine is Kafka group membership: this checks the test broker (tansu) really gives
a group of several members disjoint, complete partition assignments and moves them when a member leaves
(cleanly, or by dying and letting its session expire) or joins. If this ever fails, ownership cannot ride
on the consumer group in tests and PostgreSQL leases would have to stand in."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition

from tests.kafka_broker import unique_topic

_SESSION_MS = 6000
_DEADLINE_S = 40.0


class _Recorder(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.revocations = 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revocations += 1
        self.owned -= {tp.partition for tp in revoked}

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owned |= {tp.partition for tp in assigned}


class _Member:
    def __init__(self, brokers: str, topic: str, group: str) -> None:
        self.recorder = _Recorder()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=brokers, group_id=group, session_timeout_ms=_SESSION_MS,
                                         heartbeat_interval_ms=500, rebalance_timeout_ms=_SESSION_MS,
                                         auto_offset_reset="earliest", enable_auto_commit=False)
        self.topic = topic
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=self.recorder)
        self.task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await self.consumer.getmany(timeout_ms=100)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()

    async def crash(self) -> None:
        """Stop heartbeating without a LeaveGroup: the broker must notice the session expire."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        coordinator = self.consumer._coordinator  # noqa: SLF001 - simulating a kill -9 of the member
        if coordinator is not None:
            coordinator.member_id = ""  # forget the membership, so close() sends no LeaveGroup
            coordinator.generation = -1
        await self.consumer.stop()


async def _wait_split(members: list[_Member], partitions: set[int]) -> None:
    """Until every member holds a share and the shares are disjoint and cover every partition."""
    deadline = time.monotonic() + _DEADLINE_S
    while time.monotonic() < deadline:
        shares = [m.recorder.owned for m in members]
        union = set().union(*shares)
        if union == partitions and sum(map(len, shares)) == len(partitions) and all(shares):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no disjoint complete split: {[sorted(m.recorder.owned) for m in members]}")


async def _topic_partitions(brokers: str, topic: str) -> set[int]:
    producer = AIOKafkaProducer(bootstrap_servers=brokers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"x", key=b"k")
        return set(await producer.partitions_for(topic))
    finally:
        await producer.stop()


async def _scenario(brokers: str) -> None:
    topic, group = unique_topic("rebalance"), unique_topic("group")
    partitions = await _topic_partitions(brokers, topic)
    assert len(partitions) >= 3
    members = [_Member(brokers, topic, group) for _ in range(3)]
    try:
        for member in members:
            await member.start()
        await _wait_split(members, partitions)
        # a clean leave: the other two take everything
        leaver = members.pop(0)
        await leaver.stop()
        await _wait_split(members, partitions)
        # a join: three again
        joiner = _Member(brokers, topic, group)
        await joiner.start()
        members.append(joiner)
        await _wait_split(members, partitions)
        # a crash (no LeaveGroup): the session expires and the survivors take over its partitions
        dead = members.pop(1)
        await dead.crash()
        await _wait_split(members, partitions)
    finally:
        for member in members:
            await member.stop()


def test_group_members_split_partitions_and_rebalance(kafka_brokers: str) -> None:
    asyncio.run(asyncio.wait_for(_scenario(kafka_brokers), timeout=110))
