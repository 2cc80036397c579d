"""The event-driven path in process: a ``risk_snapshot_updated`` event -> the hub's consumer -> the world's
actor (store, a duplicate of what it holds) -> the extended-validation worker -> the world's evaluation runs.
Duplicates, poison events, unknown worlds and a replay after a restart (the dedupe memory gone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pykka
import pytest

from actors import faults
from actors.risk_consumer import DeadLetterNote, RiskEventReceived
from config import load_config
from tests.conftest import FakeClock, Harness

WHO = {"X-Actor": "gateway", "X-Stage": "paper"}
COV = {"s1,s1": 0.04, "s1,s2": 0.01, "s2,s2": 0.09, "s3,s3": 0.0225, "s2,s3": 0.006}


def _config(tmp_path: Path, dsn: str) -> Any:
    ws = {"data_dir": str(tmp_path), "server": {"dsn": dsn}, "actors": {"sweep_interval_s": 3600},
          "risk_hub": {"consumer_enabled": False, "retry_backoff_ms": 0}}  # this test feeds the consumer
    return load_config(environ={}, overrides={"worldservice": ws})


@pytest.fixture
def world(harness_factory, tmp_path: Path, sql_dsn: str, clock: FakeClock) -> Harness:
    h = harness_factory(_config(tmp_path, sql_dsn), clock=clock)
    c = h.client
    assert c.post("/worlds", json={"id": "w1"}).status_code == 201
    assert c.post("/worlds/w1/policies", json={"policy": {"thresholds": {}}}).status_code == 200
    for sid in ("s1", "s3"):
        r = c.post("/worlds/w1/evaluate", json={"strategy_id": sid, "run_id": f"r-{sid}", "stage": "paper",
                                                 "metrics": {sid: {"sharpe": 1.0}}})
        assert r.status_code == 200, r.text
    return h


def _pushed_event(h: Harness, version: str = "v1") -> bytes:
    body = {"as_of": "2026-03-02T09:00:00Z", "version": version, "weights": {"s1": 0.6, "s2": 0.4},
            "covariance": COV, "stress": {"crash": {"s1": -0.2, "s2": -0.1}}}
    assert h.client.post("/risk-hub/worlds/w1/snapshots", json=body, headers=WHO).status_code == 200
    h.system.relay_now()
    return msgspec.json.encode(h.bus.of_type("risk_snapshot_updated")[-1].event)


def _consume(h: Harness, raw: bytes) -> Any:
    answer: pykka.ThreadingFuture = pykka.ThreadingFuture()
    h.system.receive_risk_event(RiskEventReceived(raw=raw, reply=answer.set))
    return answer.get(timeout=30)


def _run(h: Harness, sid: str) -> dict[str, Any]:
    return h.client.get(f"/worlds/w1/strategies/{sid}/runs/r-{sid}").json()


def _metric(h: Harness, name: str) -> float:
    lines = [line for line in h.client.get("/metrics").text.splitlines() if line.startswith(name + "{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_an_event_writes_the_extended_validation_into_the_worlds_runs(world: Harness) -> None:
    raw = _pushed_event(world)
    assert _consume(world, raw).status == 200
    candidate = _run(world, "s3")["validation"]
    assert candidate["extended_revision"] == 1
    block = candidate["extended_history"][-1]["block"]
    assert block["snapshot_version"] == "v1"
    assert block["incremental"]["incremental_var_99"] == pytest.approx((0.136015 - 0.183303) * 2.326348, abs=1e-5)
    assert block["stress"] == [{"scenario": "crash", "pnl": pytest.approx(-0.16), "loss": pytest.approx(0.16)}]
    assert candidate["results"]["portfolio"]["details"]["baseline"]["var_99"] == pytest.approx(0.426427, abs=1e-6)
    held = _run(world, "s1")["validation"]
    assert "incremental" not in held["results"]["portfolio"]["details"] and held["extended_revision"] == 1
    world.system.relay_now()
    updated = [e.event["data"] for e in world.bus.of_type("evaluation_run_updated")]
    assert {(d["strategy_id"], d["change_type"]) for d in updated} == {("s1", "extended_validation"),
                                                                       ("s3", "extended_validation")}
    assert _metric(world, "extended_validation_run_total") >= 2  # scheduled + success
    assert _metric(world, "risk_hub_snapshot_processed_total") == 2  # the push and the event
    assert _metric(world, "validation_event_processed_total") == 1
    page = world.client.get("/metrics").text
    for name in ("risk_hub_snapshot_processing_latency_seconds", "extended_validation_run_latency_seconds",
                 "validation_event_processing_latency_seconds", "risk_hub_snapshot_lag_seconds",
                 "risk_hub_snapshot_missing_total", "risk_hub_snapshot_retry_total"):
        assert name in page
    assert "world_id=" not in "".join(line for line in page.splitlines() if line.startswith("risk_hub_"))


def test_a_duplicate_is_dropped_and_a_replay_after_a_restart_changes_nothing(world: Harness, harness_factory,
                                                                              clock: FakeClock) -> None:
    raw = _pushed_event(world)
    assert _consume(world, raw).status == 200
    revision = _run(world, "s3")["revision"]
    assert _consume(world, raw).status == 204
    assert _metric(world, "risk_hub_snapshot_dedupe_total") == 1
    world.runtime.close()
    again = harness_factory(world.config, clock=clock)
    assert _consume(again, raw).status == 200  # a fresh consumer remembers nothing; the world does
    assert _run(again, "s3")["revision"] == revision
    assert _run(again, "s3")["validation"]["extended_revision"] == 1


def test_poison_and_unknown_worlds_are_dead_lettered_and_the_consumer_goes_on(world: Harness) -> None:
    garbage = _consume(world, b"{not json")
    assert garbage.status == 202 and isinstance(garbage.body, DeadLetterNote) and garbage.body.attempts == 1
    invalid = _consume(world, msgspec.json.encode({"type": "risk_snapshot_updated", "data": {"world_id": "w1"}}))
    assert isinstance(invalid.body, DeadLetterNote) and "invalid snapshot" in invalid.body.error
    raw = _pushed_event(world)
    foreign = msgspec.json.decode(raw)
    foreign["data"]["world_id"] = "nope"
    lost = _consume(world, msgspec.json.encode(foreign))
    assert isinstance(lost.body, DeadLetterNote) and lost.body.world_id == "nope" and lost.body.error == "world not found"
    assert _consume(world, msgspec.json.encode({"type": "policy_updated", "data": {}})).status == 204
    assert _consume(world, raw).status == 200
    assert _run(world, "s3")["validation"]["extended_revision"] == 1
    assert _metric(world, "risk_hub_snapshot_dlq_total") == 3


def test_an_expired_event_is_dropped(world: Harness, clock: FakeClock) -> None:
    raw = _pushed_event(world)
    clock.advance(seconds=901)
    assert _consume(world, raw).status == 204
    assert _metric(world, "risk_hub_snapshot_expired_total") == 1
    assert _run(world, "s3")["validation"].get("extended_revision") is None


def test_a_failing_run_is_retried_then_dead_lettered_and_the_next_delivery_succeeds(world: Harness) -> None:
    raw = _pushed_event(world)
    faults.fail_at("extended_validation.compute")
    try:
        failed = _consume(world, raw)
    finally:
        faults.fail_at()
    assert isinstance(failed.body, DeadLetterNote) and failed.body.attempts == 3, failed
    assert "injected fault" in failed.body.error and failed.body.world_id == "w1"
    assert _metric(world, "risk_hub_snapshot_retry_total") == 2
    failures = [line for line in world.client.get("/metrics").text.splitlines()
                if line.startswith('extended_validation_run_total{stage="paper",status="failure"}')]
    assert failures == ['extended_validation_run_total{stage="paper",status="failure"} 3.0']
    assert _consume(world, raw).status == 200  # not remembered as done: a later delivery is processed
    assert _run(world, "s3")["validation"]["extended_revision"] == 1


def test_a_run_created_after_the_snapshot_is_validated_against_it(world: Harness) -> None:
    assert _consume(world, _pushed_event(world)).status == 200
    r = world.client.post("/worlds/w1/evaluate", json={"strategy_id": "s3", "run_id": "r-new", "stage": "paper",
                                                       "metrics": {"s3": {"sharpe": 1.2}}})
    assert r.status_code == 200, r.text
    world.system.relay_now()
    [created] = [e.event for e in world.bus.of_type("evaluation_run_created") if e.event["data"]["run_id"] == "r-new"]
    assert _consume(world, msgspec.json.encode(created)).status == 200
    fresh = world.client.get("/worlds/w1/strategies/s3/runs/r-new").json()["validation"]
    assert fresh["extended_revision"] == 1 and fresh["extended_history"][0]["block"]["snapshot_version"] == "v1"
    assert _consume(world, msgspec.json.encode(created)).status == 204  # done already
    assert _metric(world, "validation_event_processed_total") == 2
    # A world without a fresh snapshot: nothing to validate against.
    assert world.client.post("/worlds", json={"id": "w2"}).status_code == 201
    lonely = {**created, "data": {**created["data"], "world_id": "w2", "idempotency_key": "k2"}}
    assert _consume(world, msgspec.json.encode(lonely)).status == 204
    assert world.client.get("/metrics").text.count("risk_hub_snapshot_missing_total 1.0") == 1


def _foreign_event(version: str, **data: Any) -> bytes:
    """A ``risk_snapshot_updated`` another producer (a risk engine) put on the ControlBus, parts inline."""
    snapshot = {"world_id": "w1", "as_of": "2026-03-02T08:59:00Z", "version": version, "created_at": "2026-03-02T09:00:00Z",
                "hash": "sha256:theirs", "ttl_sec": 900, "provenance": {"actor": "risk-engine", "stage": "live"}, **data}
    return msgspec.json.encode({"type": "risk_snapshot_updated", "data": {**snapshot, "event_version": 1}})


def test_another_producers_large_inline_parts_are_stored_by_reference_as_a_push_would(world: Harness) -> None:
    assets = [f"a{i}" for i in range(11)]
    weights = {a: 1 / 11 for a in assets}
    cov = {f"{a},{b}": (0.04 if a == b else 0.01) for a in assets for b in assets}  # 121 > inline_cov_threshold
    assert _consume(world, _foreign_event("big", weights=weights, covariance=cov)).status == 200
    hub = "/risk-hub/worlds/w1/snapshots"
    stored = world.client.get(f"{hub}/latest").json()
    assert "covariance" not in stored and stored["covariance_ref"].startswith("blob:sha256:")
    assert world.client.get(f"{hub}/latest", params={"expand": "true"}).json()["covariance"] == cov
    # The same content pushed through the route is the snapshot already stored (one hash, one ref), not a conflict.
    body = {k: stored[k] for k in ("as_of", "version", "weights", "provenance", "created_at", "ttl_sec")}
    again = world.client.post(hub, json={**body, "covariance": cov}, headers={"X-Actor": "risk-engine", "X-Stage": "live"})
    assert again.status_code == 200, again.text
    assert again.json() == stored


def test_an_event_that_breaks_the_push_rules_is_dead_lettered(world: Harness) -> None:
    lopsided = _consume(world, _foreign_event("bad", weights={"s1": 0.7, "s2": 0.7}))
    assert isinstance(lopsided.body, DeadLetterNote) and lopsided.body.attempts == 1
    assert lopsided.body.error.startswith("invalid snapshot payload: weights must sum to 1")
    assert world.client.get("/risk-hub/worlds/w1/snapshots").json() == {"snapshots": []}


LIMITS = {"thresholds": {}, "live_monitoring": {"sharpe_min": 0.0},
          "portfolio": {"max_incremental_var_99": 0.01, "max_incremental_es_99": 1.0},
          "stress": {"scenarios": {"crash": {"dd_max": 0.1}, "rates": {"dd_max": 0.5}}}}


def test_live_monitoring_judges_the_extended_validation_against_the_policys_limits(harness_factory, tmp_path: Path,
                                                                                  sql_dsn: str, clock: FakeClock) -> None:
    h = harness_factory(_config(tmp_path, sql_dsn), clock=clock)
    c = h.client
    assert c.post("/worlds", json={"id": "w1"}).status_code == 201
    assert c.post("/worlds/w1/policies", json={"policy": LIMITS}).status_code == 200
    for sid in ("s1", "s3"):  # s1 is held by the snapshot's weights, s3 is a candidate it names
        r = c.post("/worlds/w1/evaluate", json={"strategy_id": sid, "run_id": f"r-{sid}", "stage": "live",
                                                 "metrics": {sid: {"live_returns": [0.01, 0.02, 0.015]}}})
        assert r.status_code == 200, r.text

    def verdicts() -> dict[str, tuple[str, str, str]]:
        assert c.post("/worlds/w1/live-monitoring/run").status_code == 200
        report = c.get("/worlds/w1/live-monitoring/report").json()
        return {s["strategy_id"]: (s["live_monitoring"]["status"], s["live_monitoring"]["reason_code"],
                                   s["live_monitoring"]["reason"]) for s in report["strategies"]}

    assert verdicts() == {sid: ("warn", "extended_validation_missing", "extended_validation_missing")
                          for sid in ("s1", "s3")}
    body = {"as_of": "2026-03-02T09:00:00Z", "version": "v1", "weights": {"s1": 0.6, "s2": 0.4},
            "covariance": {**COV, "s3,s3": 0.25, "s2,s3": 0.05}, "stress": {"crash": {"s1": -0.2, "s2": -0.1}}}
    assert c.post("/risk-hub/worlds/w1/snapshots", json=body, headers=WHO).status_code == 200
    h.system.relay_now()
    assert _consume(h, msgspec.json.encode(h.bus.of_type("risk_snapshot_updated")[-1].event)).status == 200
    clock.advance(minutes=5)
    assert verdicts() == {
        "s1": ("fail", "stress_dd_exceeds_max", "stress_dd_exceeds_max, stress_scenario_missing"),
        "s3": ("fail", "incremental_var_exceeds_max",
               "incremental_var_exceeds_max, stress_dd_exceeds_max, stress_scenario_missing")}
    run = c.get("/worlds/w1/strategies/s3/runs/r-s3").json()
    block = next(e["block"] for e in reversed(run["validation"]["extended_history"]) if "block" in e)
    details = run["validation"]["results"]["live_monitoring"]["details"]
    assert details["incremental_var_99"] == block["incremental"]["incremental_var_99"] > 0.01
    assert details["stress_breaches"] == {"crash": {"loss": pytest.approx(0.16), "dd_max": 0.1}}
    assert details["extended_snapshot_version"] == "v1"
    assert c.post("/worlds/w1/live-monitoring/run").json()["updated"] == 0  # nothing new: nothing rewritten
