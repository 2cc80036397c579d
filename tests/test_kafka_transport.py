"""Contract of the Kafka edge against a real Kafka-protocol broker (tansu): what a Gateway or operator notices.

Each test runs its own event loop in the main thread, as the daemon does, and publishes from worker threads,
as the actors do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from tests.kafka_broker import KafkaBroker, kafka_broker_fixture, kafka_brokers_fixture, unique_topic  # noqa: F401
from transport.kafka import BusUnavailable, ConsumedRecord, KafkaConsumerLoop, KafkaPublisher

# tansu takes about session_timeout_ms / 2 to complete a group join.
GROUP_OPTIONS: dict[str, Any] = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 300}
DEADLINE_S = 30.0


def event(world_id: str, seq: int) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"{world_id}-{seq}", "source": "worldservice", "type": "activation_updated",
            "time": "2025-01-01T00:00:00Z", "datacontenttype": "application/json", "correlation_id": None,
            "data": {"world_id": world_id, "seq": seq, "weight": seq / 100, "version": 1}}


class Collector:
    """A consumer handler that remembers what it got; the test awaits conditions on it, never sleeps."""

    def __init__(self, fail_times: int = 0) -> None:
        self.records: list[ConsumedRecord] = []
        self.deliveries: list[list[ConsumedRecord]] = []
        self._fail_times = fail_times
        self._changed = asyncio.Event()

    async def __call__(self, records: list[ConsumedRecord]) -> None:
        self.deliveries.append(records)
        self._changed.set()
        if len(self.deliveries) <= self._fail_times:
            raise RuntimeError("handler failed on purpose")
        self.records.extend(records)

    async def wait_until(self, done: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    def decoded(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(r.value) for r in self.records]


async def running(component: Any) -> Any:
    await component.start()
    return component


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def consumer_loop(brokers: str, topic: str, group: str, handler: Collector) -> KafkaConsumerLoop:
    return KafkaConsumerLoop([brokers], topic, group, handler, asyncio.get_running_loop(), backoff_s=0.2,
                             **GROUP_OPTIONS)


def test_events_published_from_worker_threads_arrive_in_order_per_world(kafka_brokers: str) -> None:
    topic, group = unique_topic("events"), unique_topic("group")
    worlds = ["world-a", "world-b", "world-c", "world-d"]
    per_world, per_call = 30, 10

    def publish_world(publisher: KafkaPublisher, world_id: str) -> None:
        for start in range(0, per_world, per_call):
            publisher.publish_many([(topic, world_id, event(world_id, seq)) for seq in range(start, start + per_call)])

    async def scenario() -> None:
        publisher = await running(KafkaPublisher([kafka_brokers], asyncio.get_running_loop(), send_timeout_s=10))
        collector = Collector()
        consumer = await running(consumer_loop(kafka_brokers, topic, group, collector))
        try:
            await asyncio.gather(*(asyncio.to_thread(publish_world, publisher, w) for w in worlds))
            await collector.wait_until(lambda: len(collector.records) >= per_world * len(worlds))
        finally:
            await consumer.stop()
            await publisher.stop()
        for world_id in worlds:
            mine = [(r, d) for r, d in zip(collector.records, collector.decoded(), strict=True) if r.key == world_id]
            assert [d for _, d in mine] == [event(world_id, seq) for seq in range(per_world)]
            assert len({r.partition for r, _ in mine}) == 1, "one world's events share one partition"
        assert len(collector.records) == per_world * len(worlds), "nothing delivered twice without a failure"
        assert collector.records[0].headers["content-type"].startswith("application/cloudevents+json")

    run(scenario)


def test_a_failed_batch_is_redelivered_then_committed(kafka_brokers: str) -> None:
    topic, group = unique_topic("commands"), unique_topic("group")
    worlds = ["w1", "w2", "w3"]
    sent = [(topic, w, event(w, seq)) for seq in range(5) for w in worlds]

    async def scenario() -> None:
        publisher = await running(KafkaPublisher([kafka_brokers], asyncio.get_running_loop(), send_timeout_s=10))
        await asyncio.to_thread(publisher.publish_many, sent)
        flaky = Collector(fail_times=1)
        consumer = await running(consumer_loop(kafka_brokers, topic, group, flaky))
        try:
            await flaky.wait_until(lambda: len(flaky.records) >= len(sent))
        finally:
            await consumer.stop()
        failed = {(r.partition, r.offset) for r in flaky.deliveries[0]}
        assert failed <= {(r.partition, r.offset) for r in flaky.records}, "the failed batch came back"
        assert sorted(map(msgspec.json.encode, flaky.decoded())) == sorted(msgspec.json.encode(e) for _, _, e in sent)

        # The same group after the commit resumes past everything: only what is sent now arrives.
        markers = [(topic, w, event(w, 999)) for w in worlds]
        fresh = Collector()
        consumer = await running(consumer_loop(kafka_brokers, topic, group, fresh))
        try:
            await asyncio.to_thread(publisher.publish_many, markers)
            await fresh.wait_until(lambda: len(fresh.records) >= len(markers))
        finally:
            await consumer.stop()
            await publisher.stop()
        assert sorted(d["id"] for d in fresh.decoded()) == sorted(e["id"] for _, _, e in markers)

    run(scenario)


async def read_back(brokers: str, topic: str, count: int) -> list[dict[str, Any]]:
    """Everything on a topic, without a consumer group (no join to wait for)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(DEADLINE_S):
            while len(got) < count:
                batch = await consumer.getmany(timeout_ms=200)
                got.extend(msgspec.json.decode(r.value) for part in batch.values() for r in part)
    finally:
        await consumer.stop()
    return got


def test_publishing_fails_fast_while_the_broker_is_down_and_recovers_when_it_is_back(
        kafka_broker: KafkaBroker) -> None:
    topic = unique_topic("events")
    timeout_s = 1.5

    async def publish_expecting_outage(publisher: KafkaPublisher, seq: int) -> None:
        started = time.monotonic()
        with pytest.raises(BusUnavailable):
            await asyncio.to_thread(publisher.publish_many, [(topic, "w1", event("w1", seq))])
        assert time.monotonic() - started < timeout_s + 3.0, "the caller is not held past its timeout"

    async def scenario() -> None:
        await asyncio.to_thread(kafka_broker.stop)
        # The daemon starts while the broker is down; publishing fails until it is back.
        publisher = await running(KafkaPublisher([kafka_broker.address], asyncio.get_running_loop(),
                                                 send_timeout_s=timeout_s))
        try:
            await publish_expecting_outage(publisher, 0)
            await asyncio.to_thread(kafka_broker.start)
            await asyncio.to_thread(publisher.publish_many, [(topic, "w1", event("w1", 1))])
            await asyncio.to_thread(kafka_broker.stop)
            await publish_expecting_outage(publisher, 2)
            await asyncio.to_thread(kafka_broker.start)
            await asyncio.to_thread(publisher.publish_many, [(topic, "w1", event("w1", 3))])
            await publisher.send_raw(topic, "w1", msgspec.json.encode(event("w1", 4)), {"correlation_id": "c-4"})
        finally:
            await publisher.stop()
        # tansu forgets everything on restart: what the second broker holds was published after it came back.
        assert [e["data"]["seq"] for e in await read_back(kafka_broker.address, topic, 2)] == [3, 4]

    run(scenario)


def test_a_consumer_started_while_the_broker_is_down_consumes_once_it_is_up(kafka_broker: KafkaBroker) -> None:
    topic, group = unique_topic("commands"), unique_topic("group")

    async def scenario() -> None:
        await asyncio.to_thread(kafka_broker.stop)
        collector = Collector()
        consumer = await running(consumer_loop(kafka_broker.address, topic, group, collector))
        try:
            await asyncio.to_thread(kafka_broker.start)
            publisher = await running(KafkaPublisher([kafka_broker.address], asyncio.get_running_loop()))
            await asyncio.to_thread(publisher.publish_many, [(topic, "w1", event("w1", 0))])
            await publisher.stop()
            await collector.wait_until(lambda: len(collector.records) >= 1)
        finally:
            await consumer.stop()
        assert collector.decoded() == [event("w1", 0)]

    run(scenario)


def test_publish_many_refuses_to_block_the_event_loop() -> None:
    async def scenario() -> None:
        publisher = KafkaPublisher(["127.0.0.1:9"], asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match="send_raw"):
            publisher.publish_many([("t", "w1", event("w1", 0))])

    run(scenario)
