"""Cluster mode's ownership engine on the test broker: members of the commands topic's consumer group take
the partitions they are assigned under new owner epochs in PostgreSQL, and a member that leaves releases
them before the others take them over. The epoch rows always name the member the group assigned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from domain.effects import AuditRecord
from storage import migrate
from storage import schema as t
from storage.engine import create_engine
from storage.epochs import OwnerEpochs, epoch_history, partition_owners
from storage.sql import SqlStore, StaleOwner, WriteItem
from tests.kafka_broker import unique_topic
from transport.kafka import ConsumedRecord, KafkaConsumerLoop
from transport.ownership import PartitionOwnership

A, B = "http://127.0.0.1:8081", "http://127.0.0.1:8082"
_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "rebalance_timeout_ms": 6000}
_DEADLINE_S = 40.0


@pytest.fixture
def engine(postgres_dsn: str) -> Iterator[sa.Engine]:
    engine = create_engine(postgres_dsn)
    migrate.upgrade(engine)
    with engine.begin() as conn:  # the session's database: start from no epochs at all
        conn.execute(t.partition_epoch_history.delete())
        conn.execute(t.partition_epochs.delete())
    yield engine
    engine.dispose()


async def _ignore(_: list[ConsumedRecord]) -> None:
    return None


class _Instance:
    def __init__(self, engine: sa.Engine, brokers: str, topic: str, group: str, url: str,
                 partitions: int) -> None:
        self.store = SqlStore(engine, OwnerEpochs(partitions))
        self.ownership = PartitionOwnership(self.store, url, partitions)
        self.consumer = KafkaConsumerLoop([brokers], topic, group, _ignore, ownership=self.ownership,
                                          **_GROUP)

    def write(self, world_id: str, expected: int) -> Exception | None:
        item = WriteItem(world_id=world_id, expected_version=expected, activation_counter=0,
                         effects=[AuditRecord(event="probe", request=None, result={"n": expected})])
        return self.store.apply_batch([item])[0]


async def _until(done, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + _DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _partitions_of(brokers: str, topic: str) -> set[int]:
    producer = AIOKafkaProducer(bootstrap_servers=brokers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"x", key=b"k")  # tansu creates the topic (4 partitions)
        return set(await producer.partitions_for(topic))
    finally:
        await producer.stop()


async def _scenario(engine: sa.Engine, brokers: str) -> None:
    topic, group = unique_topic("commands"), unique_topic("ws")
    every = await _partitions_of(brokers, topic)
    a = _Instance(engine, brokers, topic, group, A, len(every))
    b = _Instance(engine, brokers, topic, group, B, len(every))
    await a.consumer.start()
    try:
        await _until(lambda: a.ownership.owned == every, "the first member takes every partition")
        assert {p: o for p, (_, o) in partition_owners(engine).items()} == dict.fromkeys(every, A)
        await b.consumer.start()
        try:
            await _until(lambda: a.ownership.owned | b.ownership.owned == every and b.ownership.owned
                         and not a.ownership.owned & b.ownership.owned, "a disjoint split")
            owners = partition_owners(engine)
            assert {p: o for p, (_, o) in owners.items()} == {
                **dict.fromkeys(a.ownership.owned, A), **dict.fromkeys(b.ownership.owned, B)}
            assert a.store.owner_epochs.held() == {p: owners[p][0] for p in a.ownership.owned}
            world = next(f"w{i}" for i in range(1000)
                         if b.store.owner_epochs.partition_of(f"w{i}") in b.ownership.owned)
            assert isinstance(await asyncio.to_thread(a.write, world, 0), StaleOwner)
            assert await asyncio.to_thread(b.write, world, 0) is None
        finally:
            await b.consumer.stop()
        await _until(lambda: a.ownership.owned == every, "the remaining member takes everything back")
        assert b.ownership.owned == set() and b.store.owner_epochs.held() == {}
        assert isinstance(await asyncio.to_thread(b.write, world, 1), StaleOwner)
        assert await asyncio.to_thread(a.write, world, 1) is None
    finally:
        await a.consumer.stop()
    history = epoch_history(engine)
    for partition in every:  # epochs count up by one; the last taker is the one the group left it with
        taken = [h for h in history if h["partition"] == partition]
        assert [h["epoch"] for h in taken] == list(range(1, len(taken) + 1))
        assert taken[-1]["owner"] == A and partition_owners(engine)[partition][1] == A
    assert a.store.owner_epochs.held() == {}  # stopping released everything


def test_group_members_own_their_assigned_partitions_under_epochs(engine: sa.Engine,
                                                                  kafka_brokers: str) -> None:
    asyncio.run(asyncio.wait_for(_scenario(engine, kafka_brokers), timeout=110))
