"""End to end over a real Kafka-protocol broker: a daemon process, a simulated Gateway, Kafka commands.

* apply completes only after the Gateway acknowledged every freeze and unfreeze event, which it saw in
  sequence order; with ACKs withheld the run is held frozen after the gap timeout, and re-sent events let a
  Gateway that comes back acknowledge and complete it;
* with the broker down commands still succeed, and every event is delivered once it returns;
* commands on ``worldservice.commands`` are answered on ``reply_to``, applied once when redelivered, and
  invalid ones go to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.daemon_process import DaemonProcess
from tests.kafka_broker import KafkaBroker, unique_topic
from tests.kafka_gateway import SimulatedGateway, daemon_kafka_env

pytestmark = [pytest.mark.timeout(180)]


def _topics() -> dict[str, str]:
    return {name: unique_topic(name) for name in ("activation", "policy", "ack", "commands", "dlq", "group")}


def _daemon_env(brokers: str, topics: dict[str, str], **apply: Any) -> dict[str, str]:
    """Brisk apply timers on top of the shared broker settings, so waits and re-sends happen quickly."""
    env = {**daemon_kafka_env(brokers, topics), "WORLDSERVICE__APPLY__ACTIVATION_GAP_TIMEOUT_MS": "1500",
           "WORLDSERVICE__APPLY__RESEND_INITIAL_MS": "300", "WORLDSERVICE__APPLY__TICK_INTERVAL_MS": "100"}
    env.update({f"WORLDSERVICE__APPLY__{k.upper()}": str(v) for k, v in apply.items()})
    return env


def _seed(client: httpx.Client, world_id: str = "w") -> None:
    assert client.post("/worlds", json={"id": world_id}).status_code == 201
    for sid in ("a", "b", "c"):
        body = {"strategy_id": sid, "side": "long", "active": True, "weight": 0.5}
        assert client.put(f"/worlds/{world_id}/activation", json=body).status_code == 200


def _wait_phase(client: httpx.Client, run_id: str, phase: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.get(f"/worlds/w/apply/{run_id}").json()
        if run["phase"] == phase or time.monotonic() > deadline:
            return run


def test_apply_completes_only_after_gateway_acks_in_sequence(tmp_path: Path, kafka_brokers: str) -> None:
    topics = _topics()
    gateway = SimulatedGateway(kafka_brokers, topics["activation"], topics["ack"]).start()
    env = _daemon_env(kafka_brokers, topics, activation_gap_timeout_ms=15_000)  # room for a slow group join
    try:
        with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=env) as daemon:
            daemon.start()
            with httpx.Client(base_url=daemon.url, timeout=60) as client:
                _seed(client)
                r = client.post("/worlds/w/apply", json={"run_id": "r1", "plan": {"activate": ["d"], "deactivate": ["a"]}})
                assert r.status_code == 200 and r.json()["phase"] == "completed", daemon.log_tail()
                run = client.get("/worlds/w/apply/r1").json()
                assert all(e["acked"] for e in run["events"]) and len(run["events"]) == 7
        # Delivery is at-least-once: a slow ACK (a busy machine) earns a re-sent copy after 300 ms. What
        # must hold is the order in which each event first arrived, with no gap.
        first_seen = list(dict.fromkeys((e["sequence"], e["phase"]) for e in gateway.sequenced("r1")))
        assert first_seen == [(n, "freeze" if n <= 3 else "unfreeze") for n in range(1, 8)]
        assert not gateway.order_violations
        assert all(e["version"] == 1 and e["idempotency_key"] for e in gateway.events)
    finally:
        gateway.stop()


def test_withheld_acks_hold_the_run_frozen_until_a_returning_gateway_acks_resends(tmp_path: Path,
                                                                                  kafka_brokers: str) -> None:
    topics = _topics()
    gateway = SimulatedGateway(kafka_brokers, topics["activation"], topics["ack"], acking=False).start()
    try:
        with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=_daemon_env(kafka_brokers, topics)) as daemon:
            daemon.start()
            with httpx.Client(base_url=daemon.url, timeout=60) as client:
                _seed(client)
                held = client.post("/worlds/w/apply", json={"run_id": "r1", "plan": {"activate": ["d"]}})
                assert held.status_code == 202 and held.json()["phase"] == "awaiting_ack"
                entry = client.get("/worlds/w/activation", params={"strategy_id": "a", "side": "long"}).json()
                assert entry["freeze"] and entry["drain"] and not entry["active"]
                assert client.get("/worlds/w/apply/r1").json()["awaiting"] == "freeze"
                gateway.acking = True  # it comes back: only re-sent events can reach it now
                assert gateway.wait_for(lambda g: len(g.acked) >= 3)
                run = _wait_phase(client, "r1", "completed")
                assert run["phase"] == "completed" and run["resends"] >= 1
    finally:
        gateway.stop()


async def _consume_all(brokers: str, topic: str, count: int, timeout_s: float = 40) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, group_id=unique_topic("reader"),
                                auto_offset_reset="earliest", session_timeout_ms=3000, heartbeat_interval_ms=300)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found += [msgspec.json.decode(r.value) | {"_key": r.key, "_headers": dict(r.headers)}
                              for r in records]
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found


def test_broker_down_commands_succeed_and_every_event_arrives_after(tmp_path: Path, kafka_broker: KafkaBroker) -> None:
    topics = _topics()
    env = _daemon_env(kafka_broker.address, topics)
    with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=env) as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            assert client.post("/worlds", json={"id": "w"}).status_code == 201
            kafka_broker.stop()
            for n in range(5):
                body = {"strategy_id": f"s{n}", "side": "long", "active": True}
                assert client.put("/worlds/w/activation", json=body).status_code == 200
            kafka_broker.start()
            events = asyncio.run(_consume_all(kafka_broker.address, topics["activation"], 5))
            # tansu forgets topics on restart; the relay re-sends, so all five written while down arrive
            assert {e["data"]["strategy_id"] for e in events} >= {f"s{n}" for n in range(5)}, daemon.log_tail()
            assert all(e["_key"] == b"w" for e in events)


async def _send_commands(brokers: str, topic: str, messages: list[tuple[bytes, bytes, dict[str, str]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all")
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
    finally:
        await producer.stop()


def test_kafka_commands_reply_apply_once_and_dead_letter_invalid_ones(tmp_path: Path, kafka_brokers: str) -> None:
    topics = _topics()
    replies = unique_topic("replies")
    with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=_daemon_env(kafka_brokers, topics)) as daemon:
        daemon.start()
        put = {"kind": "put_activation", "world_id": "kw", "command_id": "c2",
               "body": {"strategy_id": "s1", "side": "long", "active": True, "weight": 0.3}}
        headers = {"reply_to": replies, "correlation_id": "corr-1"}
        messages = [
            (b"kw", msgspec.json.encode({"kind": "create_world", "world_id": "kw", "command_id": "c1",
                                         "body": {"id": "kw"}}), headers),
            (b"kw", msgspec.json.encode(put), headers),
            (b"kw", b"{not json", headers),
            (b"kw", msgspec.json.encode({"kind": "put_activation", "world_id": "kw", "body": {"side": "up"}}), headers),
            (b"kw", msgspec.json.encode(put), headers),  # redelivered: same command_id
        ]
        asyncio.run(_send_commands(kafka_brokers, topics["commands"], messages))
        answered = asyncio.run(_consume_all(kafka_brokers, replies, 3))
        assert [r["status"] for r in answered] == [201, 200, 200], daemon.log_tail()
        assert answered[1]["body"] == answered[2]["body"]  # the stored outcome, not a second write
        assert all(r["correlation_id"] == "corr-1" and r["_key"] == b"kw" for r in answered)
        dead = asyncio.run(_consume_all(kafka_brokers, topics["dlq"], 2))
        assert len(dead) == 2 and all("invalid command" in d["error"] for d in dead)
        with httpx.Client(base_url=daemon.url, timeout=30) as client:
            audit = client.get("/worlds/kw/audit").json()
            assert [a["event"] for a in audit].count("activation_updated") == 1
