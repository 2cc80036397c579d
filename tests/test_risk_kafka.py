"""The Risk Hub's event-driven path over a real Kafka-protocol broker, in a daemon process: a pushed snapshot
-> ``risk_snapshot_updated`` -> the hub's consumer -> extended validation in the world's evaluation runs; a
duplicate event is dropped, a poison event lands in ``<topic>.dlq`` and the consumer keeps going, and a
restarted daemon resumes without reprocessing what was done."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.daemon_process import DaemonProcess
from tests.kafka_broker import unique_topic
from tests.kafka_gateway import daemon_kafka_env
from tests.test_apply_kafka import _consume_all, _send_commands

pytestmark = [pytest.mark.timeout(240)]
WHO = {"X-Actor": "gateway", "X-Stage": "paper"}
COV = {"s1,s1": 0.04, "s1,s2": 0.01, "s2,s2": 0.09, "s3,s3": 0.0225, "s2,s3": 0.006}


def _env(brokers: str) -> tuple[dict[str, str], str]:
    topics = {name: unique_topic(name) for name in ("activation", "policy", "ack", "commands", "dlq", "group")}
    risk = unique_topic("risk")
    env = {**daemon_kafka_env(brokers, topics), "WORLDSERVICE__CONTROLBUS__TOPICS__RISK_SNAPSHOT": risk,
           "WORLDSERVICE__RISK_HUB__CONSUMER_GROUP": unique_topic("risk-group"),
           "WORLDSERVICE__RISK_HUB__RETRY_BACKOFF_MS": "0"}
    return env, risk


def _push(client: httpx.Client, version: str, as_of: str) -> None:
    body = {"as_of": as_of, "version": version, "weights": {"s1": 0.6, "s2": 0.4}, "covariance": COV}
    r = client.post("/risk-hub/worlds/w/snapshots", json=body, headers=WHO)
    assert r.status_code == 200, r.text


def _versions_validated(client: httpx.Client, want: int, timeout_s: float = 60) -> list[str]:
    """The snapshot versions in run s3's extended history, once it has ``want`` of them (or the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        validation = client.get("/worlds/w/strategies/s3/runs/r3").json().get("validation") or {}
        versions = [e["block"]["snapshot_version"] for e in validation.get("extended_history") or []]
        if len(versions) >= want or time.monotonic() > deadline:
            return versions


def _seed(client: httpx.Client) -> None:
    assert client.post("/worlds", json={"id": "w"}).status_code == 201
    assert client.post("/worlds/w/policies", json={"policy": {"thresholds": {}}}).status_code == 200
    r = client.post("/worlds/w/evaluate", json={"strategy_id": "s3", "run_id": "r3", "stage": "paper",
                                               "metrics": {"s3": {"sharpe": 1.0}}})
    assert r.status_code == 200, r.text


def _metric(client: httpx.Client, name: str) -> float:
    lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(name + "{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_snapshots_flow_through_the_broker_into_extended_validation(tmp_path: Path, kafka_brokers: str) -> None:
    env, risk = _env(kafka_brokers)
    with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=env) as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            _seed(client)
            _push(client, "v1", "2026-01-01T00:00:00Z")
            assert _versions_validated(client, 1) == ["v1"], daemon.log_tail()
            [event] = asyncio.run(_consume_all(kafka_brokers, risk, 1))
            assert event["type"] == "risk_snapshot_updated" and event["_key"] == b"w"
            duplicate = {k: v for k, v in event.items() if not k.startswith("_")}
            asyncio.run(_send_commands(kafka_brokers, risk, [(b"w", b"{not json", {}),
                                                            (b"w", msgspec.json.encode(duplicate), {})]))
            _push(client, "v2", "2026-01-01T00:01:00Z")
            assert _versions_validated(client, 2) == ["v1", "v2"], daemon.log_tail()
            [dead] = asyncio.run(_consume_all(kafka_brokers, f"{risk}.dlq", 1))
            assert dead["attempts"] == 1 and "undecodable event" in dead["error"]
            assert _metric(client, "risk_hub_snapshot_dedupe_total") >= 1
        daemon.stop()
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=60) as client:
            _push(client, "v3", "2026-01-01T00:02:00Z")
            assert _versions_validated(client, 3) == ["v1", "v2", "v3"], daemon.log_tail()
            assert _metric(client, "risk_hub_snapshot_dlq_total") == 0  # the poison was not consumed again
            assert _metric(client, "risk_hub_snapshot_processed_total") == 2  # the push and its own event
