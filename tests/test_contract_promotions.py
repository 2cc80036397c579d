"""Live promotions over HTTP (reference §1.10): the reference's routes, status codes and shapes on SQLite and
PostgreSQL; a promotion is a 2-phase apply to live through the default-safe rule, so a world that may not
be live is refused with the reason and nothing live is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors import faults
from tests.conftest import FakeClock, Harness, make_config
from tests.test_apply import FakeGateway

NO_RISK = {"require_risk_snapshot": False}  # the snapshot gate is waived here (tests/test_contract_risk_hub.py has it)
PLAN_KEYS = {"world_id", "strategy_id", "run_id", "plan", "target_active", "current_active", "promotion_mode",
             "override_status", "pending_manual_approval", "eligible", "blocked_reasons", "cooldown_remaining_sec",
             "max_live_slots", "canary_fraction"}
AUTO_KEYS = {"world_id", "applied", "reason", "cooldown_remaining_sec", "source_strategy_id", "source_run_id",
             "apply_run_id", "plan"}
CANDIDATE_KEYS = {"strategy_id", "run_id", "created_at", "updated_at", "status", "override_status",
                  "pending_manual_approval", "eligible", "blocked_reasons", "target_active", "plan"}
LIVE = "/worlds/w1/promotions/live"



@pytest.fixture
def promo_api(harness_factory, tmp_path: Path, sql_dsn: str, projection: dict[str, str], clock: FakeClock) -> Harness:
    """``contract_api`` on a clock the test drives (cooldowns, fresher runs, auto-apply run ids)."""
    return harness_factory(make_config(tmp_path, sql_dsn, **projection), clock=clock)


@pytest.fixture
def sqlite_api(harness_factory, tmp_path: Path, clock: FakeClock) -> Harness:
    return harness_factory(make_config(tmp_path), clock=clock)


def _world(h: Harness, governance: dict[str, Any] | None = None, allow_live: bool = True,
           fingerprint: str | None = "fp-1", decisions: tuple[str, ...] = ("s0",)) -> None:
    c = h.client
    body: dict[str, Any] = {"id": "w1", "allow_live": allow_live, "dataset_fingerprint": fingerprint}
    assert c.post("/worlds", json=body).status_code == 201
    policy: dict[str, Any] = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}}
    if governance is not None:
        policy["governance"] = {"live_promotion": governance}
    assert c.post("/worlds/w1/policies", json={"policy": policy}).status_code == 200
    for sid in decisions:
        assert c.put("/worlds/w1/activation", json={"strategy_id": sid, "side": "long", "active": True}).status_code == 200
    assert c.post("/worlds/w1/decisions", json={"strategies": list(decisions)}).status_code == 200


def _run(h: Harness, run_id: str = "r1", stage: str = "paper", strategy: str = "s1", **sharpe: float) -> Any:
    """An evaluation run of ``strategy``; its active set is every strategy whose sharpe passes 0.5."""
    metrics = {sid: {"sharpe": value} for sid, value in ({strategy: 1.0} | sharpe).items()}
    body = {"strategy_id": strategy, "run_id": run_id, "stage": stage, "metrics": metrics}
    r = h.client.post("/worlds/w1/evaluate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _approve(h: Harness, run_id: str = "r1", actor: str = "risk", **headers: str) -> Any:
    body = {"strategy_id": "s1", "run_id": run_id, "reason": "risk sign-off", "actor": actor}
    return h.client.post(f"{LIVE}/approve", json=body, headers=headers)


def _apply(h: Harness, apply_run_id: str = "a1", run_id: str = "r1", **extra: Any) -> Any:
    return h.client.post(f"{LIVE}/apply", json={"strategy_id": "s1", "run_id": run_id, "apply_run_id": apply_run_id,
                                                **extra})


def _plan(h: Harness, run_id: str = "r1") -> Any:
    return h.client.get(f"{LIVE}/plan", params={"strategy_id": "s1", "run_id": run_id})


def _domain(h: Harness) -> str:
    return h.client.get("/worlds/w1").json()["execution_domain"]


def _live_entries(h: Harness) -> list[str]:
    state = h.client.get("/worlds/w1/activation").json()["state"]
    return sorted(sid for sid, sides in state.items() for e in sides.values() if e["effective_mode"] == "live")


def _failures(h: Harness) -> dict[str, float]:
    found = {}
    for line in h.client.get("/metrics").text.splitlines():
        if line.startswith("promotion_fail_total{"):
            labels, value = line.split("} ")
            reason = labels.split('reason="')[1].split('"')[0]
            found[reason] = float(value)
    return found


def _audit(h: Harness) -> list[dict[str, Any]]:
    return h.client.get("/worlds/w1/audit", params={"limit": 1000}).json()


# --- approve / reject -------------------------------------------------------------------------------------


def test_approve_and_reject_record_an_override_on_the_run(promo_api: Harness) -> None:
    h = promo_api
    _world(h, {"mode": "manual_approval"})
    _run(h)
    approved = _approve(h)
    assert approved.status_code == 200, approved.text
    summary = approved.json()["summary"]
    assert (summary["override_status"], summary["override_reason"], summary["override_actor"],
            summary["override_timestamp"]) == ("approved", "risk sign-off", "risk", "2026-03-02T09:00:00Z")
    h.system.relay_now()
    updated = [e.event["data"] for e in h.bus.of_type("evaluation_run_updated")]
    assert updated[-1]["change_type"] == "override" and updated[-1]["run_id"] == "r1"
    rejected = h.client.post(f"{LIVE}/reject", json={"strategy_id": "s1", "run_id": "r1", "reason": "not yet"})
    assert rejected.status_code == 200 and rejected.json()["summary"]["override_status"] == "rejected"
    history = h.client.get("/worlds/w1/strategies/s1/runs/r1/history").json()
    assert [r["payload"]["summary"]["override_status"] for r in history] == [None, "approved", "rejected"]
    assert _approve(h, run_id="nope").json() == {"detail": "evaluation run not found"}
    assert h.client.post("/worlds/nope/promotions/live/approve", json={
        "strategy_id": "s1", "run_id": "r1", "reason": "x", "actor": "y"}).status_code == 404
    missing = h.client.post(f"{LIVE}/approve", json={"strategy_id": "s1", "run_id": "r1", "actor": "risk"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "reason"]


def test_a_disabled_policy_refuses_approvals_and_promotions(sqlite_api: Harness) -> None:
    h = sqlite_api
    _world(h, {"mode": "disabled"})
    _run(h)
    for answer in (_approve(h), h.client.post(f"{LIVE}/reject", json={"strategy_id": "s1", "run_id": "r1"}),
                   _apply(h)):
        assert (answer.status_code, answer.json()) == (409, {"detail": "live promotion is disabled by policy"})
    assert h.client.get(f"{LIVE}/candidates").json() == {"world_id": "w1", "promotion_mode": "disabled",
                                                         "candidates": []}
    assert _plan(h).json()["blocked_reasons"][0] == "promotion_disabled"


def test_approvers_decide_who_may_approve(sqlite_api: Harness) -> None:
    h = sqlite_api
    _world(h, {"mode": "manual_approval", "approvers": ["risk", "cro"]})
    _run(h)
    anonymous = h.client.post(f"{LIVE}/reject", json={"strategy_id": "s1", "run_id": "r1"})
    assert (anonymous.status_code, anonymous.json()) == (422, {"detail": "actor is required by policy"})
    assert _approve(h, actor="ops").json() == {"detail": "actor is not allowed by policy"}
    assert _approve(h, actor="ops").status_code == 403
    claimed = _approve(h, actor="risk", **{"X-Caller-Sub": "mallory"})  # the caller is not who it names
    assert claimed.status_code == 403
    assert _approve(h, actor="risk", **{"X-Caller-Sub": "risk"}).status_code == 200
    by_caller = h.client.post(f"{LIVE}/reject", json={"strategy_id": "s1", "run_id": "r1"},
                              headers={"X-Caller-Sub": "cro"})
    assert by_caller.status_code == 200 and by_caller.json()["summary"]["override_actor"] == "cro"


# --- plan ------------------------------------------------------------------------------------------------------


def test_the_plan_derives_the_apply_plan_with_the_reference_shape(promo_api: Harness) -> None:
    h = promo_api
    _world(h, {"mode": "manual_approval", "cooldown": "24h", "max_live_slots": 5, "canary_fraction": 0.25, **NO_RISK},
           decisions=("s2", "s3"))
    _run(h, s2=0.9, s3=0.1)
    r = _plan(h)
    assert r.status_code == 200
    body = r.json()
    assert body.keys() == PLAN_KEYS
    assert body["plan"] == {"activate": ["s1"], "deactivate": ["s3"]}
    assert (body["target_active"], body["current_active"]) == (["s1", "s2"], ["s2", "s3"])
    assert (body["promotion_mode"], body["override_status"], body["pending_manual_approval"], body["eligible"]) == (
        "manual_approval", "none", True, True)
    assert body["blocked_reasons"] == ["manual_approval_required"]
    assert (body["cooldown_remaining_sec"], body["max_live_slots"], body["canary_fraction"]) == (0, 5, 0.25)
    assert _plan(h, "nope").status_code == 404 and _plan(h, "nope").json() == {"detail": "evaluation run not found"}
    missing = h.client.get(f"{LIVE}/plan", params={"strategy_id": "s1"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["query", "run_id"]
    assert h.client.get("/worlds/nope/promotions/live/plan", params={"strategy_id": "s1", "run_id": "r1"}
                        ).status_code == 404


# --- apply -------------------------------------------------------------------------------------------------------


def test_an_approved_promotion_is_a_two_phase_apply_that_makes_the_world_live(promo_api: Harness,
                                                                               clock: FakeClock) -> None:
    h = promo_api
    _world(h, {"mode": "manual_approval", "cooldown": "1h", **NO_RISK})
    _run(h, s2=0.9)
    refused = _apply(h)
    assert (refused.status_code, refused.json()) == (
        409, {"detail": "manual approval required before applying live promotion"})
    assert _domain(h) == "backtest" and _live_entries(h) == []
    assert _approve(h).status_code == 200
    applied = _apply(h)
    assert applied.status_code == 200, applied.text
    assert (applied.json()["run_id"], applied.json()["summary"]["override_status"]) == ("r1", "approved")
    assert _domain(h) == "live"
    assert h.client.get("/worlds/w1/decisions").json() == {"strategies": ["s1", "s2"]}
    assert _live_entries(h) == ["s0", "s1", "s2"]  # s0 reopens inactive, in the live domain
    run = h.client.get("/worlds/w1/apply/a1").json()
    assert (run["phase"], run["execution_domain"], run["dataset_fingerprint"]) == ("completed", "live", "fp-1")
    edges = {e["dst_node_id"]: e["active"] for e in h.client.get("/worlds/w1/edges/overrides").json()}
    assert edges["domain:live"] is True
    events = [(a["event"], a["result"].get("stage")) for a in _audit(h)]
    started = events.index(("live_promotion_started", None))
    assert events[started + 1:started + 3] == [("apply_stage", "requested"), ("activation_updated", None)]
    assert ("apply_stage", "completed") in events[started:]
    again = _apply(h)  # the same apply run id: the stored outcome, not a second apply
    assert again.status_code == 200 and again.json()["run_id"] == "r1"
    cooling = _apply(h, "a2")
    assert (cooling.status_code, cooling.json()) == (409, {"detail": "cooldown active"})
    assert 0 < _plan(h).json()["cooldown_remaining_sec"] <= 3600
    clock.advance(hours=1)
    assert _plan(h).json()["cooldown_remaining_sec"] == 0
    assert _failures(h) == {"manual_approval_required": 1.0, "cooldown_active": 1.0}


@pytest.mark.parametrize(("governance", "stage", "sharpes", "detail", "reason"), [
    ({"mode": "auto_apply", **NO_RISK}, "backtest", {}, "promotion requires paper-stage evaluation run",
     "not_paper_stage"),
    ({"mode": "auto_apply", **NO_RISK}, "paper", {"s1": 0.1}, "promotion requires passing validation",
     "validation_failed"),
    ({"mode": "auto_apply"}, "paper", {}, "risk snapshot missing or expired", "risk_snapshot_missing_or_expired"),
    ({"mode": "auto_apply", "max_live_slots": 1, **NO_RISK}, "paper", {"s2": 0.9}, "max live slots exceeded",
     "max_live_slots_exceeded"),
])
def test_each_gate_refuses_the_apply_with_its_409(sqlite_api: Harness, governance: dict[str, Any], stage: str,
                                                   sharpes: dict[str, float], detail: str, reason: str) -> None:
    h = sqlite_api
    _world(h, governance)
    _run(h, stage=stage, **sharpes)
    refused = _apply(h)
    assert (refused.status_code, refused.json()) == (409, {"detail": detail})
    assert _domain(h) == "backtest" and _live_entries(h) == []
    assert h.client.get("/worlds/w1/apply/a1").status_code == 404
    blocked = _audit(h)[-1]
    assert (blocked["event"], blocked["result"]["reason"]) == ("live_promotion_blocked", reason)
    assert _failures(h) == {reason: 1.0}


def test_force_skips_the_approval_and_the_validation_but_not_the_other_gates(sqlite_api: Harness) -> None:
    h = sqlite_api
    _world(h, {"mode": "manual_approval", "max_live_slots": 1, **NO_RISK})
    _run(h, s1=0.1, s2=0.9)  # s1 fails its thresholds; the run's active set is s2
    assert _apply(h, force=True).status_code == 200
    assert _domain(h) == "live" and h.client.get("/worlds/w1/decisions").json()["strategies"] == ["s2"]
    forced = next(a for a in _audit(h) if a["event"] == "live_promotion_started")
    assert forced["result"]["forced_past"] == ["validation_failed", "manual_approval_required"]
    _run(h, "r2", s2=0.9, s3=0.9)
    assert _apply(h, "a2", "r2", force=True).json() == {"detail": "max live slots exceeded"}


def test_a_world_that_may_not_be_live_is_refused_with_the_reason_and_nothing_live_is_written(
        promo_api: Harness) -> None:
    h = promo_api
    _world(h, {"mode": "auto_apply", **NO_RISK}, allow_live=False)
    _run(h, s2=0.9)
    plan = _plan(h).json()
    assert (plan["blocked_reasons"], plan["eligible"]) == (["allow_live_disabled"], False)
    before = (h.client.get("/worlds/w1/activation").json(), h.client.get("/worlds/w1/decisions").json(),
              h.client.get("/worlds/w1/edges/overrides").json())
    refused = _apply(h)
    assert refused.status_code == 409
    assert refused.json() == {"detail": "live promotion refused by the default-safe rule: allow_live_disabled"}
    auto = h.client.post(f"{LIVE}/auto-apply")
    assert auto.status_code == 200
    assert (auto.json()["applied"], auto.json()["reason"], auto.json()["apply_run_id"]) == (
        False, "allow_live_disabled", None)
    assert auto.json()["blocked_reasons"] == ["allow_live_disabled"]
    after = (h.client.get("/worlds/w1/activation").json(), h.client.get("/worlds/w1/decisions").json(),
             h.client.get("/worlds/w1/edges/overrides").json())
    assert after == before and _domain(h) == "backtest" and _live_entries(h) == []
    assert h.client.get("/worlds/w1/apply/a1").status_code == 404
    refusals = [a["result"] for a in _audit(h) if a["event"] == "live_refused"]
    assert [r["refusals"] for r in refusals] == [["allow_live_disabled"]] * 2
    assert all(r["what"] == "live promotion" and r["outcome"] == "rejected" for r in refusals)
    h.system.relay_now()
    assert h.bus.of_type("execution_domain_updated") == []
    assert _failures(h) == {"allow_live_disabled": 2.0}


def test_no_pinned_fingerprint_is_refused_by_the_rule(sqlite_api: Harness) -> None:
    h = sqlite_api
    _world(h, {"mode": "auto_apply", **NO_RISK}, fingerprint=None)
    _run(h)
    assert _apply(h).json() == {"detail": "live promotion refused by the default-safe rule: dataset_fingerprint_missing"}
    assert _domain(h) == "backtest"


def test_a_promotion_whose_apply_fails_rolls_back_and_stays_out_of_live(sqlite_api: Harness) -> None:
    h = sqlite_api
    _world(h, {"mode": "auto_apply", **NO_RISK})
    _run(h)
    faults.fail_at("apply.switching")
    try:
        failed = _apply(h)
    finally:
        faults.fail_at()
    assert failed.status_code == 500 and failed.json()["detail"].startswith("apply failed")
    assert _domain(h) == "backtest" and _live_entries(h) == []
    assert h.client.get("/worlds/w1/apply/a1").json()["phase"] == "rolled_back"
    assert _failures(h) == {"apply_failed": 1.0}
    replay = _apply(h)  # the run id's stored outcome, never a retry
    assert replay.status_code == 200 and (replay.json()["ok"], replay.json()["phase"]) == (False, "rolled_back")


def test_a_promotion_waits_for_the_gateways_acks_like_any_apply(harness_factory, tmp_path: Path,
                                                                 clock: FakeClock) -> None:
    config = make_config(tmp_path)
    config.worldservice.apply.await_acks = True
    h = harness_factory(config, clock=clock)
    gateway = FakeGateway(h)
    _world(h, {"mode": "auto_apply", **NO_RISK})
    _run(h, s2=0.9)
    applied = _apply(h)
    assert applied.status_code == 200 and applied.json()["run_id"] == "r1"  # answered once every ACK arrived
    run = h.client.get("/worlds/w1/apply/a1").json()
    assert run["phase"] == "completed" and all(e["acked"] for e in run["events"])
    assert [e["phase"] for e in gateway.seen] == ["freeze", "unfreeze", "unfreeze", "unfreeze"]


# --- auto-apply ----------------------------------------------------------------------------------------------


def test_auto_apply_promotes_the_freshest_paper_run(promo_api: Harness, clock: FakeClock) -> None:
    h = promo_api
    _world(h, {"mode": "manual_approval", **NO_RISK})
    refused = h.client.post(f"{LIVE}/auto-apply", json={})
    assert (refused.status_code, refused.json()) == (409, {"detail": "live promotion auto-apply is not enabled by policy"})
    assert h.client.post("/worlds/w1/policies", json={"policy": {
        "thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}},
        "governance": {"live_promotion": {"mode": "auto_apply", **NO_RISK}}}}).status_code == 200
    assert h.client.post("/worlds/w1/set-default", json={"version": 2}).status_code == 200

    def auto() -> dict[str, Any]:
        r = h.client.post(f"{LIVE}/auto-apply", json={})
        assert r.status_code == 200, r.text
        assert AUTO_KEYS <= r.json().keys()
        return r.json()

    assert (auto()["applied"], auto()["reason"]) == (False, "no_evaluation_runs")
    _run(h, "bt-1", stage="backtest")
    assert auto()["reason"] == "no_paper_runs"
    clock.advance(minutes=1)
    _run(h, "paper-bad", s1=0.1)
    failing = auto()
    assert (failing["reason"], failing["source_run_id"]) == ("validation_failed", "paper-bad")
    clock.advance(minutes=1)
    _run(h, "paper-1", s2=0.9)
    applied = auto()
    assert (applied["applied"], applied["reason"], applied["source_strategy_id"], applied["source_run_id"]) == (
        True, "applied", "s1", "paper-1")
    assert applied["apply_run_id"] == "auto-live-paper-1-20260302T090200Z"
    assert applied["plan"] == {"activate": ["s1", "s2"], "deactivate": ["s0"]}
    assert h.client.get("/worlds/w1/decisions").json() == {"strategies": ["s1", "s2"]}
    assert _domain(h) == "live"
    assert h.client.get(f"/worlds/w1/apply/{applied['apply_run_id']}").json()["phase"] == "completed"
    idle = auto()  # live with exactly that set: nothing to apply, so the world is not frozen again
    assert (idle["applied"], idle["reason"], idle["plan"]) == (False, "already_live", {"activate": [], "deactivate": []})
    assert _failures(h) == {"validation_failed": 1.0}


@pytest.mark.parametrize(("fraction", "applied"), [(0.0, False), (0.5, False), (0.7, True), (1.0, True)])
def test_the_canary_decides_which_runs_auto_apply(sqlite_api: Harness, fraction: float, applied: bool) -> None:
    h = sqlite_api
    _world(h, {"mode": "auto_apply", "canary_fraction": fraction, **NO_RISK})
    _run(h)  # sha256("w1:s1:r1")[:8] / 2**64 = 0.6788
    body = h.client.post(f"{LIVE}/auto-apply").json()
    assert (body["applied"], body["reason"]) == ((True, "applied") if applied else (False, "canary_skipped"))


def test_auto_apply_names_the_cooldown_left(sqlite_api: Harness, clock: FakeClock) -> None:
    h = sqlite_api
    _world(h, {"mode": "auto_apply", "cooldown": "10m", **NO_RISK})
    _run(h)
    assert h.client.post(f"{LIVE}/auto-apply").json()["applied"] is True
    clock.advance(minutes=4)
    _run(h, "r2", s2=0.9)
    body = h.client.post(f"{LIVE}/auto-apply").json()
    assert (body["applied"], body["reason"], body["cooldown_remaining_sec"]) == (False, "cooldown_active", 360)
    clock.advance(minutes=6)
    assert h.client.post(f"{LIVE}/auto-apply").json()["reason"] == "applied"


# --- candidates --------------------------------------------------------------------------------------------------


def test_candidates_are_the_latest_passing_paper_run_per_strategy(promo_api: Harness, clock: FakeClock) -> None:
    h = promo_api
    _world(h, {"mode": "manual_approval", **NO_RISK}, decisions=("s-old",))
    _run(h, "run-older")
    clock.advance(hours=1)
    _run(h, "run-latest", s2=0.9)
    _run(h, "run-fail", strategy="s2", s2=0.1)
    _run(h, "bt", strategy="s3", stage="backtest")
    r = h.client.get(f"{LIVE}/candidates", params={"limit": 10, "include_plan": "true"})
    assert r.status_code == 200
    body = r.json()
    assert (body["world_id"], body["promotion_mode"]) == ("w1", "manual_approval")
    assert [c["run_id"] for c in body["candidates"]] == ["run-latest"]  # s2's latest failed; s3 is no paper run
    candidate = body["candidates"][0]
    assert candidate.keys() == CANDIDATE_KEYS
    assert (candidate["strategy_id"], candidate["status"], candidate["pending_manual_approval"],
            candidate["eligible"], candidate["blocked_reasons"]) == ("s1", "warn", True, True,
                                                                     ["manual_approval_required"])
    assert candidate["plan"] == {"activate": ["s1", "s2"], "deactivate": ["s-old"]}
    assert candidate["target_active"] == ["s1", "s2"]
    plain = h.client.get(f"{LIVE}/candidates").json()["candidates"]
    assert [c["plan"] for c in plain] == [None]
    # The limit takes the freshest strategies first, then filters: s2's failing run is the freshest.
    assert h.client.get(f"{LIVE}/candidates", params={"limit": 1}).json()["candidates"] == []
    assert h.client.get(f"{LIVE}/candidates", params={"limit": -1}).status_code == 422


def test_with_auth_on_the_approver_is_the_verified_subject(harness_factory, tmp_path: Path) -> None:
    from tests.test_auth import AUDIENCE, ISSUER, SECRET, bearer, token

    auth = {"jwt": {"algorithm": "HS256", "secret": SECRET, "issuer": ISSUER, "audience": AUDIENCE}}
    h = harness_factory(make_config(tmp_path, auth=auth))
    admin = bearer(token({"*": "owner"}, sub="admin"))
    c = h.client
    assert c.post("/worlds", json={"id": "w1", "allow_live": True}, headers=admin).status_code == 201
    policy = {"governance": {"live_promotion": {"mode": "manual_approval", "approvers": ["risk"]}}}
    assert c.post("/worlds/w1/policies", json={"policy": policy}, headers=admin).status_code == 200
    body = {"strategy_id": "s1", "run_id": "r1", "stage": "paper", "metrics": {"s1": {"sharpe": 1.0}}}
    assert c.post("/worlds/w1/evaluate", json=body, headers=admin).status_code == 200
    approval = {"strategy_id": "s1", "run_id": "r1", "reason": "ok", "actor": "risk"}
    mallory = c.post(f"{LIVE}/approve", json=approval, headers=bearer(token({"w1": "owner"}, sub="mallory")))
    assert mallory.status_code == 403  # an owner naming an approver is not one
    operator = c.post(f"{LIVE}/approve", json=approval, headers=bearer(token({"w1": "operator"}, sub="risk")))
    assert operator.status_code == 403  # the role table first: approving is the owners'
    risk = c.post(f"{LIVE}/approve", json=approval, headers=bearer(token({"w1": "owner"}, sub="risk")))
    assert risk.status_code == 200 and risk.json()["summary"]["override_actor"] == "risk"
