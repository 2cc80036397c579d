"""The 2-phase apply over HTTP with the in-memory ControlBus: event stream, idempotency, ACK waits,
timeouts, rollback and evaluate. Kafka end-to-end lives in test_apply_kafka.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from actors import faults
from tests.conftest import Harness, make_config, stop_harness, start_harness


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)


class FakeGateway:
    """Consumes ``activation`` events and acknowledges sequenced ones (ACK topic of the same bus)."""

    def __init__(self, harness: Harness, acking: bool = True) -> None:
        self.bus = harness.bus
        self.acking = acking
        self.seen: list[dict[str, Any]] = []
        self.freeze_seen = threading.Event()
        self.bus.subscribe(self._on_event, topic="activation")

    def _on_event(self, published: Any) -> None:
        data = published.event["data"]
        if not data.get("requires_ack"):
            return
        self.seen.append(data)
        if data["phase"] == "freeze":
            self.freeze_seen.set()
        if self.acking:
            self.ack(data)

    def ack(self, data: dict[str, Any]) -> None:
        self.bus.publish("control.activation.ack", data["world_id"], {
            "specversion": "1.0", "type": "activation_ack", "source": "test.gateway",
            "data": {"type": "ActivationAck", "version": 1, "world_id": data["world_id"], "run_id": data["run_id"],
                     "sequence": data["sequence"], "phase": data["phase"], "etag": data["etag"]}})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def apply_api(tmp_path, clock) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    started: list[Harness] = []

    def factory(**apply: Any) -> Harness:
        config = make_config(tmp_path)
        for key, value in apply.items():
            setattr(config.worldservice.apply, key, value)
        h = start_harness(config, clock=clock)
        started.append(h)
        return h

    yield factory
    faults.fail_at()
    for h in started:
        if h.runtime.system.directory.is_alive():
            stop_harness(h)


def _world(h: Harness, world_id: str = "w1", entries: dict[str, float] | None = None, policy: bool = True,
           allow_live: bool = True) -> None:
    """A world that may go live (the apply protocol is under test here; the default-safe refusals are
    covered in test_default_safe.py)."""
    c = h.client
    assert c.post("/worlds", json={"id": world_id, "allow_live": allow_live}).status_code == 201
    if policy:
        c.post(f"/worlds/{world_id}/policies", json={"preset": "moderate"})
    for sid, weight in (entries or {"s1": 0.5}).items():
        body = {"strategy_id": sid, "side": "long", "active": True, "weight": weight}
        assert c.put(f"/worlds/{world_id}/activation", json=body).status_code == 200


def _stages(h: Harness, world_id: str = "w1") -> list[str]:
    return [a["result"]["stage"] for a in h.client.get(f"/worlds/{world_id}/audit").json()
            if a["event"] == "apply_stage"]


def _sequenced(h: Harness) -> list[dict[str, Any]]:
    h.system.relay_now()  # the reply can overtake the relay: publish everything committed first
    return [e.event["data"] for e in h.bus.of_type("activation_updated") if e.event["data"].get("requires_ack")]


def _tick_after(h: Harness, clock: FakeClock, ms: int, run_id: str = "r1") -> None:
    """Read the run first: the answer comes after its actor registered the open run for timer ticks."""
    h.client.get(f"/worlds/w1/apply/{run_id}")
    clock.advance(ms)
    h.system.tick()


def _wait_for_phase(h: Harness, run_id: str, phase: str, world_id: str = "w1") -> dict[str, Any]:
    """ACKs arrive on the bus's thread: read the run (a mailbox round trip each) until it gets there."""
    deadline = time.monotonic() + 10
    while True:
        run = h.client.get(f"/worlds/{world_id}/apply/{run_id}").json()
        if run["phase"] == phase or time.monotonic() > deadline:
            return run


def _activation(h: Harness, sid: str, world_id: str = "w1") -> dict[str, Any]:
    return h.client.get(f"/worlds/{world_id}/activation", params={"strategy_id": sid, "side": "long"}).json()


def test_explicit_plan_runs_freeze_switch_unfreeze_with_the_reference_event_stream(apply_api) -> None:
    h = apply_api()
    _world(h)
    r = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert r.status_code == 200 and r.json() == {"ok": True, "run_id": "r1", "active": ["s2"], "phase": "completed"}
    events = _sequenced(h)
    assert [(e["strategy_id"], e["phase"], e["sequence"]) for e in events] == [
        ("s1", "freeze", 1), ("s1", "unfreeze", 2), ("s2", "unfreeze", 3)]
    freeze, s1_open, s2_open = events
    assert (freeze["active"], freeze["freeze"], freeze["drain"], freeze["weight"]) == (False, True, True, 0.5)
    assert (s1_open["active"], s1_open["freeze"], s1_open["weight"]) == (False, False, 0.5)
    assert (s2_open["active"], s2_open["side"], s2_open["weight"]) == (True, "long", 1.0)
    assert all(e["version"] == 1 and e["run_id"] == "r1" and e["idempotency_key"] for e in events)
    assert s2_open["state_hash"] == h.client.get("/worlds/w1/activation/state_hash").json()["state_hash"]
    policy = [e.event["data"] for e in h.bus.of_type("policy_updated")][-1]
    assert policy["policy_version"] == 1 and policy["checksum"].startswith("blake3:") and policy["version"] == 1
    assert _stages(h) == ["requested", "freeze", "switch", "unfreeze", "completed"]
    assert h.client.get("/worlds/w1/decisions").json() == {"strategies": ["s2"]}
    metrics = h.client.get("/metrics").text
    assert 'world_apply_run_total{status="started"} 1.0' in metrics
    assert 'world_apply_run_total{status="success"} 1.0' in metrics
    assert 'world_apply_duration_ms_count{outcome="completed"} 1.0' in metrics
    h.client.get("/worlds/w1/decide")
    assert "world_decide_latency_ms_count 1.0" in h.client.get("/metrics").text


def test_run_id_is_idempotent_forever_and_a_new_plan_under_it_conflicts(apply_api, tmp_path, clock) -> None:
    h = apply_api()
    _world(h)
    first = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}}).json()
    h.client.post("/worlds/w1/apply", json={"run_id": "r2", "plan": {"activate": ["s3"]}})
    h.system.relay_now()  # everything committed so far is on the bus
    published = len(h.bus.events)
    again = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert again.status_code == 200 and again.json() == first
    h.system.relay_now()
    assert len(h.bus.events) == published  # replayed from the record, not re-executed
    other = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s9"]}})
    assert other.status_code == 409 and "different plan" in other.json()["detail"]
    stop_harness(h)
    restarted = apply_api()
    replay = restarted.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert replay.status_code == 200 and replay.json() == first
    assert restarted.client.get("/worlds/w1/decisions").json() == {"strategies": ["s2", "s3"]}


def _apply_in_background(h: Harness, body: dict[str, Any]) -> Future:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(h.client.post, "/worlds/w1/apply", json=body)
    pool.shutdown(wait=False)
    return future


def test_switch_waits_for_every_freeze_ack_and_completion_for_every_unfreeze_ack(apply_api) -> None:
    h = apply_api(await_acks=True)
    gateway = FakeGateway(h)
    _world(h, entries={"s1": 0.5, "s2": 0.25})
    r = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s3"], "deactivate": ["s1"]}})
    assert r.status_code == 200 and r.json()["phase"] == "completed"
    run = h.client.get("/worlds/w1/apply/r1").json()
    assert run["phase"] == "completed" and all(e["acked"] for e in run["events"])
    assert [e["sequence"] for e in gateway.seen] == [1, 2, 3, 4, 5]
    switch_at = _stages(h).index("switch")
    assert switch_at == 2  # after requested and freeze: the freeze ACKs came first
    metrics = h.client.get("/metrics").text
    assert "world_activation_acks_total 5.0" in metrics and "world_activation_ack_wait_seconds_count 5.0" in metrics
    assert 'worldservice_actor_mailbox_depth{actor="writer"}' in metrics


def test_withheld_acks_hold_the_world_frozen_and_late_acks_complete_the_run(apply_api, clock) -> None:
    h = apply_api(await_acks=True, activation_gap_timeout_ms=3000, deadline_ms=60_000)
    gateway = FakeGateway(h, acking=False)
    _world(h)
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert gateway.freeze_seen.wait(10)
    conflict = h.client.post("/worlds/w1/apply", json={"run_id": "r2", "plan": {"activate": ["s3"]}})
    assert conflict.status_code == 409 and "apply in progress" in conflict.json()["detail"]
    manual = h.client.put("/worlds/w1/activation", json={"strategy_id": "s1", "side": "long", "active": True})
    assert manual.status_code == 409
    _tick_after(h, clock, 3001)
    held = pending.result(timeout=10)
    assert held.status_code == 202 and held.json()["phase"] == "awaiting_ack"
    run = h.client.get("/worlds/w1/apply/r1").json()
    assert (run["phase"], run["state"], run["awaiting"]) == ("awaiting_ack", "freezing", "freeze")
    assert _activation(h, "s1")["freeze"] is True
    freeze_event = gateway.seen[0]
    assert sum(1 for e in gateway.seen if e["idempotency_key"] == freeze_event["idempotency_key"]) >= 2  # re-sent
    gateway.acking = True
    gateway.ack(freeze_event)
    final = _wait_for_phase(h, "r1", "completed")
    assert final["phase"] == "completed" and _activation(h, "s2")["active"] is True
    assert "awaiting_ack" in _stages(h)


def _assert_rolled_back_frozen(h: Harness, before_etag: str) -> None:
    restored = _activation(h, "s1")
    assert (restored["active"], restored["freeze"], restored["drain"], restored["weight"]) == (False, True, True, 0.5)
    counter = int(restored["etag"].rsplit(":", 1)[1])
    assert counter > int(before_etag.rsplit(":", 1)[1])  # a new etag, never a reused one
    assert h.client.get("/worlds/w1/decisions").json() == {"strategies": []}
    assert h.client.get("/worlds/w1/activation", params={"strategy_id": "s2", "side": "long"}).status_code == 404


def test_ack_timeout_with_rollback_policy_restores_the_previous_set_frozen(apply_api, clock) -> None:
    h = apply_api(await_acks=True, timeout_policy="rollback")
    gateway = FakeGateway(h, acking=False)
    _world(h)
    before = _activation(h, "s1")["etag"]
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert gateway.freeze_seen.wait(10)
    _tick_after(h, clock, 3001)
    failed = pending.result(timeout=10)
    assert failed.status_code == 500 and "apply failed" in failed.json()["detail"]
    _assert_rolled_back_frozen(h, before)
    assert _stages(h) == ["requested", "freeze", "rolled_back"]
    metrics = h.client.get("/metrics").text
    assert 'world_apply_failure_total{stage="freezing"} 1.0' in metrics
    assert "world_activation_ack_gap_timeouts_total 0.0" in metrics  # rolled back at the timeout, not held
    replay = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert replay.status_code == 200 and replay.json()["ok"] is False and replay.json()["phase"] == "rolled_back"
    gateway.acking = True  # the operator clears the hold with a new apply once Gateways answer again
    rerun = h.client.post("/worlds/w1/apply", json={"run_id": "r2", "plan": {"activate": ["s2"]}})
    assert rerun.json()["phase"] == "completed" and _activation(h, "s2")["active"] is True


def test_failure_at_switch_rolls_back_with_new_etags_and_the_world_stays_frozen(apply_api) -> None:
    h = apply_api()
    _world(h)
    before = _activation(h, "s1")["etag"]
    faults.fail_at("apply.switching")
    r = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert r.status_code == 500
    _assert_rolled_back_frozen(h, before)
    rollback_events = [e for e in _sequenced(h) if e["sequence"] == 2]
    assert rollback_events and rollback_events[0]["phase"] == "freeze"  # the run's sequence continues
    faults.fail_at()
    cleared = h.client.post("/worlds/w1/apply", json={"run_id": "r2", "plan": {"activate": ["s1"]}})
    assert cleared.json()["phase"] == "completed" and _activation(h, "s1")["freeze"] is False


def test_a_held_run_rolls_back_at_its_deadline(apply_api, clock) -> None:
    h = apply_api(await_acks=True, deadline_ms=10_000)
    gateway = FakeGateway(h, acking=False)
    _world(h)
    before = _activation(h, "s1")["etag"]
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert gateway.freeze_seen.wait(10)
    _tick_after(h, clock, 3001)
    assert pending.result(timeout=10).status_code == 202
    _tick_after(h, clock, 7000)
    # The tick is told, not asked: the rollback it starts commits on its own, so wait for the phase.
    run = _wait_for_phase(h, "r1", "rolled_back")
    assert run["phase"] == "rolled_back" and "deadline" in run["error"]
    _assert_rolled_back_frozen(h, before)


def test_gating_policy_is_validated_and_switch_pins_fingerprint_and_edges(apply_api) -> None:
    h = apply_api()
    _world(h, allow_live=False)
    gating = {"dataset_fingerprint": "fp-1", "share_policy": "feature-artifacts-only",
              "snapshot": {"strategy_plane": "cow", "feature_plane": "readonly"},
              "edges": {"pre_promotion": {"disable_edges_to": "live"},
                        "post_promotion": {"enable_edges_to": ["live"]}},
              "observability": {"slo": {"cross_context_cache_hit": 0}}}
    bad = h.client.post("/worlds/w1/apply", json={"run_id": "r0", "plan": {"activate": ["s2"]},
                                                   "gating_policy": {**gating, "share_policy": "all"}})
    assert bad.status_code == 422 and "share_policy" in bad.json()["detail"]
    unknown = {**gating, "edges": {"pre_promotion": {"disable_edges_to": "mars"}, "post_promotion": {}}}
    assert h.client.post("/worlds/w1/apply", json={"run_id": "r0", "gating_policy": unknown,
                                                   "plan": {"activate": ["s2"]}}).status_code == 422
    refused = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]},
                                                       "gating_policy": {"gating_policy": gating}})
    assert refused.status_code == 409 and "allow_live_disabled" in refused.json()["detail"]
    assert h.client.put("/worlds/w1", json={"allow_live": True}).status_code == 200
    ok = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]},
                                                  "gating_policy": {"gating_policy": gating}})
    assert ok.status_code == 200
    run = h.client.get("/worlds/w1/apply/r1").json()
    assert run["dataset_fingerprint"] == "fp-1" and run["execution_domain"] == "live"
    world = h.client.get("/worlds/w1").json()
    assert world["execution_domain"] == "live" and world["dataset_fingerprint"] == "fp-1"


def test_evaluate_selects_by_policy_and_accepts_correlations_over_http(apply_api) -> None:
    h = apply_api()
    _world(h, policy=False)
    policy = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}, "top_k": {"metric": "sharpe", "k": 2},
              "correlation": {"max": 0.8}}
    h.client.post("/worlds/w1/policies", json={"policy": policy})
    metrics = {"a": {"sharpe": 2.0}, "b": {"sharpe": 1.5}, "c": {"sharpe": 1.0}, "d": {"sharpe": 0.1}}
    plain = h.client.post("/worlds/w1/evaluate", json={"metrics": metrics})
    assert plain.status_code == 200 and plain.json()["active"] == ["a", "b"]
    correlated = h.client.post("/worlds/w1/evaluate", json={"metrics": metrics, "correlations": {"a": {"b": 0.95}}})
    assert correlated.json()["active"] == ["a"]
    applied = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "metrics": metrics})
    assert applied.json()["active"] == ["a", "b"]
    assert h.client.get("/worlds/w1/decisions").json() == {"strategies": ["a", "b"]}


def test_a_threshold_on_series_metrics_selects_by_the_series(apply_api) -> None:
    h = apply_api()
    _world(h, policy=False)
    policy = {"thresholds": {"linear": {"metric": "el_v2_score", "min": 0.9},
                             "gains": {"metric": "alpha_performance.win_ratio", "min": 0.5}}}
    h.client.post("/worlds/w1/policies", json={"policy": policy})
    steady = {"equity": [100.0 + n for n in range(12)]}
    choppy = {"equity": [100.0, 90.0, 105.0, 95.0, 110.0, 100.0, 104.0]}
    metrics = {"steady": {"sharpe": 1.0}, "choppy": {"sharpe": 1.0}}
    alone = h.client.post("/worlds/w1/evaluate", json={"metrics": metrics, "series": {"steady": steady}})
    assert alone.status_code == 200, alone.text
    assert alone.json()["active"] == ["steady"]
    assert "choppy: el_v2_score missing" in alone.json()["notes"]
    both = h.client.post("/worlds/w1/evaluate", json={"metrics": metrics,
                                                       "series": {"steady": steady, "choppy": choppy}})
    assert both.json()["active"] == ["steady"]
    assert any(n.startswith("choppy: el_v2_score 0.") and n.endswith("< min 0.9") for n in both.json()["notes"])
    returns = h.client.post("/worlds/w1/evaluate", json={"series": {"r": {"returns": [0.01, 0.02, 0.01, 0.03]}}})
    assert returns.json()["active"] == ["r"]  # a strategy with only a series is a candidate
    applied = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "metrics": metrics,
                                                        "series": {"steady": steady, "choppy": choppy}})
    assert applied.status_code == 200 and applied.json()["active"] == ["steady"]
    assert h.client.get("/worlds/w1/decisions").json() == {"strategies": ["steady"]}
    bad = h.client.post("/worlds/w1/evaluate", json={"series": {"steady": {"equty": [1.0, 2.0]}}})
    assert bad.status_code == 422 and "equty" in bad.text


def test_apply_on_unknown_world_or_without_policy_is_refused_clearly(apply_api) -> None:
    h = apply_api()
    assert h.client.post("/worlds/nope/apply", json={"run_id": "r1", "plan": {}}).status_code == 404
    _world(h, policy=False)
    r = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "metrics": {"a": {"sharpe": 1}}})
    assert r.status_code == 422 and "policy" in r.json()["detail"]
    missing = h.client.post("/worlds/w1/apply", json={"plan": {"activate": ["s2"]}})
    assert missing.status_code == 422
    assert h.client.get("/worlds/w1/apply/none").status_code == 404


def test_bus_down_commands_still_succeed_and_events_follow_in_order_when_it_returns(apply_api) -> None:
    """The in-memory bus keeps the Kafka publisher's contract (see test_apply_kafka.py for the broker)."""
    h = apply_api()
    assert h.client.post("/worlds", json={"id": "w1"}).status_code == 201
    h.system.relay_now()
    h.bus.available = False
    for n in range(5):
        body = {"strategy_id": f"s{n}", "side": "long", "active": True}
        assert h.client.put("/worlds/w1/activation", json=body).status_code == 200
    h.system.relay_now()
    assert h.system.relay_failing() and h.system.outbox_pending() == 5
    h.bus.available = True
    h.system.relay_now()
    delivered = [e.event["data"]["strategy_id"] for e in h.bus.of_type("activation_updated")]
    assert delivered == [f"s{n}" for n in range(5)] and h.system.outbox_pending() == 0


def test_recorded_acks_survive_a_restart_and_the_run_resumes_waiting_for_the_rest(apply_api, clock) -> None:
    h = apply_api(await_acks=True)
    gateway = FakeGateway(h, acking=False)
    _world(h, entries={"s1": 0.5, "s2": 0.5})
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s3"]}})
    assert gateway.freeze_seen.wait(10)
    h.system.relay_now()
    first, second = [e for e in gateway.seen if e["phase"] == "freeze"][:2]
    gateway.ack(first)
    _tick_after(h, clock, 3001)
    assert pending.result(timeout=10).status_code == 202
    stop_harness(h)
    restarted = apply_api(await_acks=True)
    run = restarted.client.get("/worlds/w1/apply/r1").json()
    assert [e["acked"] for e in run["events"]] == [True, False] and run["awaiting"] == "freeze"
    FakeGateway(restarted).ack(second)  # this gateway acknowledges the unfreeze events too
    assert _wait_for_phase(restarted, "r1", "completed")["phase"] == "completed"


def test_apply_and_rollback_on_every_store_keep_projection_and_sql_equal(contract_api) -> None:
    """SQLite and PostgreSQL, in-memory and Redis projections: the same runs, the same resulting state."""
    h = contract_api
    _world(h, entries={"s1": 0.5, "s2": 0.25})
    done = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s3"], "deactivate": ["s1"]}})
    assert done.status_code == 200 and done.json()["active"] == ["s3"]
    faults.fail_at("apply.completed")  # after unfreeze created s4: the rollback must remove it again
    try:
        failed = h.client.post("/worlds/w1/apply", json={"run_id": "r2", "plan": {"activate": ["s4"]}})
    finally:
        faults.fail_at()
    assert failed.status_code == 500
    assert h.client.get("/worlds/w1/activation", params={"strategy_id": "s4", "side": "long"}).status_code == 404
    assert _activation(h, "s3")["freeze"] is True and h.client.get("/worlds/w1/decisions").json()["strategies"] == ["s3"]
    assert h.system.verify_projection() == []  # nothing to repair: the projection followed every write
    etags = [a["result"]["etag"] for a in h.client.get("/worlds/w1/audit", params={"limit": 1000}).json()
             if a["event"] == "activation_updated"]
    assert len(etags) == len(set(etags))
