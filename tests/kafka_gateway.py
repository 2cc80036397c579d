"""A simulated Gateway on a real Kafka-protocol broker, in a thread of its own with its own event loop.

It consumes the ``activation`` topic, checks that each (world, run) stream arrives in sequence order
(re-sent duplicates allowed), and publishes reference-format ``activation_ack`` CloudEvents to the ACK
topic, keyed by world id. Tests wait on its condition variable; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.kafka_broker import unique_topic


def daemon_kafka_env(brokers: str, topics: dict[str, str]) -> dict[str, str]:
    """Environment for a daemon process on a test broker: unique topics (a shared broker stays clean) and
    small group timeouts (tansu takes about half the session timeout to join a group)."""
    return {
        "WORLDSERVICE__SERVER__CONTROLBUS_BROKERS": f'["{brokers}"]',
        "WORLDSERVICE__CONTROLBUS__TOPICS__ACTIVATION": topics["activation"],
        "WORLDSERVICE__CONTROLBUS__TOPICS__POLICY": topics["policy"],
        "WORLDSERVICE__CONTROLBUS__ACK_TOPIC": topics["ack"],
        "WORLDSERVICE__CONTROLBUS__COMMANDS_TOPIC": topics["commands"],
        "WORLDSERVICE__CONTROLBUS__COMMANDS_DLQ_TOPIC": topics["dlq"],
        "WORLDSERVICE__CONTROLBUS__GROUP_ID": topics["group"],
        "WORLDSERVICE__CONTROLBUS__SESSION_TIMEOUT_MS": "3000",
        "WORLDSERVICE__CONTROLBUS__HEARTBEAT_INTERVAL_MS": "300",
        "WORLDSERVICE__CONTROLBUS__RELAY_RETRY_MS": "200",
        "WORLDSERVICE__CONTROLBUS__SEND_TIMEOUT_S": "2",
    }


class SimulatedGateway:
    def __init__(self, brokers: str, activation_topic: str, ack_topic: str, acking: bool = True) -> None:
        self.brokers = brokers
        self.activation_topic = activation_topic
        self.ack_topic = ack_topic
        self.acking = acking
        self.events: list[dict[str, Any]] = []  # every activation event's data, in arrival order
        self.acked: list[tuple[str, str, int, str]] = []
        self.order_violations: list[str] = []
        self._next: dict[tuple[str, str], int] = {}
        self._changed = threading.Condition()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="simulated-gateway")
        self._ready = threading.Event()

    def start(self) -> SimulatedGateway:
        self._thread.start()
        assert self._ready.wait(30), "simulated gateway did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def wait_for(self, condition: Callable[[SimulatedGateway], bool], timeout_s: float = 30.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: condition(self), timeout_s)

    def sequenced(self, run_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("requires_ack") and e.get("run_id") == run_id]

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        consumer = AIOKafkaConsumer(self.activation_topic, bootstrap_servers=self.brokers,
                                    group_id=unique_topic("gateway"), auto_offset_reset="earliest",
                                    session_timeout_ms=3000, heartbeat_interval_ms=300, fetch_max_wait_ms=20)
        producer = AIOKafkaProducer(bootstrap_servers=self.brokers, acks="all")
        await consumer.start()
        await producer.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for record in records:
                        await self._handle(producer, msgspec.json.decode(record.value))
        finally:
            await consumer.stop()
            await producer.stop()

    async def _handle(self, producer: AIOKafkaProducer, event: dict[str, Any]) -> None:
        data = event.get("data", {})
        with self._changed:
            self.events.append(data)
            if data.get("requires_ack"):
                self._check_order(data)
            self._changed.notify_all()
        if data.get("requires_ack") and self.acking:
            await self._ack(producer, data)

    def _check_order(self, data: dict[str, Any]) -> None:
        stream = (data["world_id"], data["run_id"])
        expected = self._next.get(stream, 1)
        if data["sequence"] > expected:
            self.order_violations.append(f"{stream}: got {data['sequence']}, expected {expected}")
        self._next[stream] = max(expected, data["sequence"] + 1)

    async def _ack(self, producer: AIOKafkaProducer, data: dict[str, Any]) -> None:
        world, run, seq, phase = data["world_id"], data["run_id"], data["sequence"], data["phase"]
        ack = {"specversion": "1.0", "id": f"{world}:{run}:{seq}:{phase}", "source": "qmtl.services.gateway",
               "type": "activation_ack", "datacontenttype": "application/json",
               "correlation_id": f"activation:{world}:{run}",
               "data": {"type": "ActivationAck", "version": 1, "world_id": world, "run_id": run, "sequence": seq,
                        "phase": phase, "etag": data["etag"], "ts": data["ts"], "ack_ts": data["ts"],
                        "idempotency_key": f"activation_ack:{world}:{run}:{seq}:{phase}:1"}}
        await producer.send_and_wait(self.ack_topic, msgspec.json.encode(ack), key=world.encode())
        with self._changed:
            self.acked.append((world, run, seq, phase))
            self._changed.notify_all()
