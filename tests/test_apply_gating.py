"""The gating policy end to end (HTTP, world actor, SQL, in-memory bus): a rejected policy writes nothing, a
downgraded apply completes compute-only and says why, a pre-promotion failure rolls back and stays frozen, and
``apply.freeze_timeout_ms`` bounds the freeze. The rule tables live in test_domain_gating.py."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec

from domain import apply
from domain.apply import ApplySettings
from domain.state import WorldState
from messages.activation import ActivationEntry
from messages.apply import ApplyRequest
from messages.commands import StartApply
from messages.worlds import WorldRecord
from tests.test_apply import (  # noqa: F401 (fixtures)
    FakeGateway, _activation, _apply_in_background, _stages, _tick_after, _world, apply_api, clock,
)
from tests.test_domain_gating import COMPUTE, DROP, SEED, _with


def _everything(h: Any) -> tuple[Any, ...]:
    """What a refused apply must leave untouched: audit, activation, decisions, the bus."""
    h.system.relay_now()
    c = h.client
    return (c.get("/worlds/w1/audit").json(), _activation(h, "s1"), c.get("/worlds/w1/decisions").json(),
            len(h.bus.events))


def test_a_rejected_policy_writes_nothing(apply_api) -> None:  # noqa: F811 (imported fixture)
    h = apply_api()
    _world(h)
    before = _everything(h)
    for policy, reason in [
        (_with(SEED, risk_limits__max_pos_usd_long=-1), "$.risk_limits.max_pos_usd_long"),
        (_with(SEED, dataset_fingerprint=DROP), "promoting to 'live' requires dataset_fingerprint"),
        (_with(SEED, observability__slo__cross_context_cache_hit=1), "cross_context_cache_hit must be 0"),
        (_with(SEED, snapshot__strategy_plane="shared"), "snapshot.strategy_plane must be 'cow'"),
        (_with(SEED, typo=1), "unknown field `typo`"),
    ]:
        r = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]},
                                                    "gating_policy": policy})
        assert r.status_code == 422 and reason in r.json()["detail"], r.json()
    bad_evidence = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]},
                                                           "metrics": {"s2": {"slippage_bp": "low"}},
                                                           "gating_policy": SEED})
    assert bad_evidence.status_code == 422 and "s2.slippage_bp must be a number" in bad_evidence.json()["detail"]
    assert h.client.get("/worlds/w1/apply/r1").status_code == 404  # no run record
    assert _everything(h) == before


def test_a_downgraded_apply_completes_compute_only_and_says_why(apply_api) -> None:  # noqa: F811 (imported fixture)
    h = apply_api()
    _world(h)
    policy = _with(COMPUTE, dataset_fingerprint=DROP)
    r = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}, "gating_policy": policy})
    reason = "compute-only: gating_policy lacks dataset_fingerprint"
    assert r.status_code == 200 and r.json() == {"ok": True, "run_id": "r1", "active": ["s2"],
                                                 "phase": "completed", "downgraded": reason}
    for sid, active in (("s1", False), ("s2", True)):
        entry = _activation(h, sid)
        assert (entry["active"], entry["freeze"], entry["effective_mode"]) == (active, False, "compute-only")
    run = h.client.get("/worlds/w1/apply/r1").json()
    assert (run["execution_domain"], run["dataset_fingerprint"], run["downgraded"]) == ("backtest", None, reason)
    stages = [a["result"] for a in h.client.get("/worlds/w1/audit").json() if a["event"] == "apply_stage"]
    assert [s["stage"] for s in stages] == ["requested", "freeze", "switch", "unfreeze", "completed"]
    assert stages[0]["downgraded"] == reason and stages[2]["downgraded"] == reason
    again = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]},
                                                    "gating_policy": policy})
    assert again.json()["downgraded"] == reason  # the stored outcome says it too


def test_a_complete_policy_promotes_without_a_downgrade_note(apply_api) -> None:  # noqa: F811 (imported fixture)
    h = apply_api()
    _world(h)
    r = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}, "gating_policy": SEED,
                                                "metrics": {"s2": {"max_position_usd_long": 400000}}})
    assert r.status_code == 200 and "downgraded" not in r.json()
    run = h.client.get("/worlds/w1/apply/r1").json()
    assert (run["execution_domain"], run["downgraded"]) == ("live", None)
    assert _activation(h, "s2")["effective_mode"] == "live"  # what a Gateway maps back onto the live domain


def test_a_pre_promotion_risk_failure_rolls_back_and_leaves_the_world_frozen(apply_api) -> None:  # noqa: F811 (imported fixture)
    h = apply_api()
    _world(h)
    before = _activation(h, "s1")
    r = h.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s2"]}, "gating_policy": SEED,
                                                "metrics": {"s2": {"max_position_usd_long": 600000}}})
    assert r.status_code == 500
    detail = r.json()["detail"]
    assert detail.startswith("apply failed: pre-promotion validation failed: ")
    assert "s2: max_position_usd_long 600000 exceeds risk_limits.max_pos_usd_long 500000" in detail
    frozen = _activation(h, "s1")
    assert (frozen["active"], frozen["freeze"], frozen["drain"], frozen["weight"]) == (False, True, True, 0.5)
    assert frozen["etag"] != before["etag"]
    assert h.client.get("/worlds/w1/activation", params={"strategy_id": "s2", "side": "long"}).status_code == 404
    assert h.client.get("/worlds/w1/decisions").json() == {"strategies": []}
    assert _stages(h) == ["requested", "freeze", "rolled_back"]
    run = h.client.get("/worlds/w1/apply/r1").json()
    assert run["phase"] == "rolled_back" and "max_pos_usd_long" in run["error"]


def test_freeze_timeout_ms_rolls_back_a_run_stuck_in_freezing(apply_api, clock) -> None:  # noqa: F811 (imported fixture)
    h = apply_api(await_acks=True, activation_gap_timeout_ms=3000, deadline_ms=60_000)
    gateway = FakeGateway(h, acking=False)
    _world(h)
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s2"]},
                                       "gating_policy": _with(SEED, apply__freeze_timeout_ms=1000)})
    assert gateway.freeze_seen.wait(10)
    _tick_after(h, clock, 1001)
    failed = pending.result(timeout=10)
    assert failed.status_code == 500 and "apply.freeze_timeout_ms (1000 ms)" in failed.json()["detail"]
    assert _activation(h, "s1")["freeze"] is True
    assert _stages(h) == ["requested", "freeze", "rolled_back"]


# --- edges, without the HTTP edge: what Switch toggles for each verdict ------------------------------------

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def _run_to_the_end(policy: dict[str, Any], metrics: dict[str, Any] | None = None) -> WorldState:
    record = msgspec.convert({"id": "w", "created_at": "t", "updated_at": "t", "allow_live": True}, WorldRecord)
    state = WorldState(world_id="w", world=record, activation_counter=1,
                       activation={"s1": {"long": ActivationEntry(active=True, ts="t", etag="act:w:s1:long:1")}})
    body = msgspec.convert({"run_id": "r1", "plan": {"activate": ["s2"]}, "gating_policy": policy,
                            "metrics": metrics or {}}, ApplyRequest)
    state = apply.begin(state, StartApply(world_id="w", body=body), NOW, ApplySettings()).state
    while (outcome := apply.advance(state, "r1", NOW, ApplySettings())) is not None:
        state = outcome.state
    return state


def _edge_states(state: WorldState) -> dict[str, bool]:
    return {edge.dst: edge.active for edge in state.edges.values()}


def test_switch_toggles_edges_per_verdict() -> None:
    promoted = _run_to_the_end(SEED)
    assert promoted.runs["r1"].phase == "completed" and _edge_states(promoted) == {"domain:live": True}
    downgraded = _run_to_the_end(_with(COMPUTE, edges=DROP))
    assert downgraded.runs["r1"].phase == "completed"
    assert _edge_states(downgraded) == {"domain:dryrun": False, "domain:live": False, "domain:shadow": False}
    assert {e.effective_mode for sides in downgraded.activation.values() for e in sides.values()} == {"compute-only"}
    failed = _run_to_the_end(SEED, {"s2": {"slippage_bp_short": 13}})
    assert failed.runs["r1"].phase == "rolled_back" and failed.edges == {}
    assert failed.activation["s1"]["long"].freeze is True and failed.decisions == []
