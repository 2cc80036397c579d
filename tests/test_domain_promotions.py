"""Live-promotion rules as pure functions: the governance block, cooldown, live slots, the canary, the risk
snapshot gate, the order of the blocked reasons, the approvers and the apply run ids."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from domain.apply import ApplySettings
from domain.governance import (
    RiskSnapshotStamp, canary_allows, canary_score, cooldown_remaining, duration_seconds, parse_governance,
    risk_snapshot_blocks, risk_snapshot_fresh, slots_exceeded,
)
from domain.handle import answer, handle
from domain.promotions import check_approver, last_completed_apply
from domain.promotions_apply import apply_promotion, auto_apply, auto_run_id
from domain.state import WorldState
from messages.commands import external_command_decoder
from messages.errors import CommandRejected, Refusal
from messages.promotions import LivePromotionGovernance

NOW = datetime(2026, 1, 1, 9, 30, 0, tzinfo=timezone.utc)
NO_RISK = {"require_risk_snapshot": False}


def _cmd(kind: str, **fields: Any) -> Any:
    return external_command_decoder.decode(msgspec.json.encode({"kind": kind, "world_id": "w", **fields}))


def _world(governance: dict[str, Any] | None = None, allow_live: bool = True, decisions: list[str] = ()) -> WorldState:
    body = {"id": "w", "allow_live": allow_live, "dataset_fingerprint": "fp-1"}
    state = handle(WorldState(world_id="w"), _cmd("create_world", body=body), NOW).state
    policy: dict[str, Any] = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}}
    if governance is not None:
        policy["governance"] = {"live_promotion": governance}
    state = handle(state, _cmd("add_policy", body={"policy": policy}), NOW).state
    if decisions:
        state = handle(state, _cmd("set_decisions", body={"strategies": list(decisions)}), NOW).state
    return state


def _evaluate(state: WorldState, run_id: str = "r1", stage: str = "paper", sharpe: float = 1.0,
              at: datetime = NOW, **others: float) -> WorldState:
    metrics = {"s1": {"sharpe": sharpe}, **{sid: {"sharpe": v} for sid, v in others.items()}}
    body = {"strategy_id": "s1", "run_id": run_id, "stage": stage, "metrics": metrics}
    return handle(state, _cmd("evaluate", body=body), at).state


def _plan(state: WorldState, run_id: str = "r1", at: datetime = NOW) -> Any:
    return answer(state, _cmd("get_live_promotion_plan", strategy_id="s1", run_id=run_id), at).reply


# --- the governance block ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    (None, None), ("", None), ("   ", None), ("0s", 0), ("1s", 1), ("90s", 90), ("15m", 900), ("24h", 86400),
    ("1.5d", 129600), ("0.5s", 0), ("1.9s", 1), (" 2 H ", 7200), ("3D", 259200),
])
def test_durations_are_whole_seconds(text: str | None, seconds: int | None) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["24", "h", "-1h", "1w", "1h30m", "1e3s", "one hour"])
def test_a_malformed_duration_is_422(text: str) -> None:
    with pytest.raises(CommandRejected) as refused:
        duration_seconds(text)
    assert refused.value.refusal == Refusal.UNPROCESSABLE and "invalid duration" in refused.value.detail


def test_absent_governance_means_manual_approval_and_a_required_risk_snapshot() -> None:
    for governance in (None, {}, {"other_block": {"x": 1}}):
        block = parse_governance(governance)
        assert (block.mode, block.cooldown, block.max_live_slots, block.canary_fraction, block.approvers,
                block.require_risk_snapshot) == ("manual_approval", None, None, None, None, True)


@pytest.mark.parametrize(("block", "fragment"), [
    ({"mode": "yolo"}, "mode"), ({"max_live_slots": -1}, "max_live_slots"), ({"max_live_slots": 1.5}, "max_live_slots"),
    ({"canary_fraction": 1.01}, "canary_fraction"), ({"canary_fraction": -0.1}, "canary_fraction"),
    ({"cooldown": "soon"}, "invalid duration"), ({"approvers": ["ok", ""]}, "approvers"),
    ({"max_live_slot": 3}, "max_live_slot"), ({"require_risk_snapshot": "no"}, "require_risk_snapshot"),
])
def test_a_bad_governance_block_is_refused_when_the_policy_is_uploaded(block: dict[str, Any], fragment: str) -> None:
    state = handle(WorldState(world_id="w"), _cmd("create_world", body={"id": "w"}), NOW).state
    with pytest.raises(CommandRejected) as refused:
        handle(state, _cmd("add_policy", body={"policy": {"governance": {"live_promotion": block}}}), NOW)
    assert refused.value.refusal == Refusal.UNPROCESSABLE and fragment in refused.value.detail
    assert refused.value.detail.startswith("invalid policy")


# --- cooldown ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cooldown_s", "elapsed", "remaining"), [
    (None, 10.0, None),  # no cooldown configured
    (None, None, None),
    (3600, None, 0),  # no apply ever completed
    (3600, 0.0, 3600),
    (3600, 0.9, 3600),  # elapsed counts whole seconds
    (3600, 1.0, 3599),
    (3600, 3599.0, 1),
    (3600, 3599.999, 1),
    (3600, 3600.0, 0),  # exactly at the boundary: over
    (3600, 7200.0, 0),
    (0, 0.0, 0),
    (3600, -5.0, 3600),  # a completion stamped after now (clock step) does not extend the cooldown
])
def test_cooldown_remaining(cooldown_s: int | None, elapsed: float | None, remaining: int | None) -> None:
    last = None if elapsed is None else NOW - timedelta(seconds=elapsed)
    assert cooldown_remaining(cooldown_s, last, NOW) == remaining


def test_cooldown_runs_from_the_last_completed_apply_to_the_second() -> None:
    state = _world({"mode": "auto_apply", "cooldown": "1h", **NO_RISK})
    assert last_completed_apply(state) is None
    start = NOW + timedelta(microseconds=700_000)
    state = _completed_apply(state, "a1", start)
    assert last_completed_apply(state) == NOW  # the audit entry's stamp: seconds, truncated
    state = _evaluate(state, "r2", at=start)
    assert _plan(state, "r2", NOW + timedelta(seconds=3599, microseconds=999_999)).cooldown_remaining_sec == 1
    plan = _plan(state, "r2", NOW + timedelta(hours=1))
    assert plan.cooldown_remaining_sec == 0 and "cooldown_active" not in plan.blocked_reasons


def _completed_apply(state: WorldState, run_id: str, at: datetime) -> WorldState:
    from domain import apply

    outcome = apply.begin(state, _cmd("apply", body={"run_id": run_id, "plan": {"activate": ["s9"]}}), at,
                          ApplySettings())
    return _finished(outcome.state, run_id, at)


def _finished(state: WorldState, run_id: str, at: datetime) -> WorldState:
    from domain import apply

    while (step := apply.advance(state, run_id, at, ApplySettings())) is not None:
        state = step.state
    assert state.runs[run_id].phase == "completed"
    return state


# --- live slots ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_slots", "size", "exceeded"), [
    (None, 0, False), (None, 50, False), (0, 0, False), (0, 1, True), (1, 1, False), (1, 2, True),
    (3, 2, False), (3, 3, False), (3, 4, True),
])
def test_max_live_slots_bounds_the_promoted_set(max_slots: int | None, size: int, exceeded: bool) -> None:
    assert slots_exceeded(max_slots, [f"s{i}" for i in range(size)]) is exceeded


def test_slots_count_the_target_set_not_the_strategies_added() -> None:
    state = _evaluate(_world({"mode": "auto_apply", "max_live_slots": 2, **NO_RISK}, decisions=["s1", "s2"]),
                      s2=0.9, s3=0.8)
    plan = _plan(state)
    assert plan.plan.activate == ["s3"] and plan.target_active == ["s1", "s2", "s3"]
    assert plan.blocked_reasons == ["max_live_slots_exceeded"]


# --- the canary ----------------------------------------------------------------------------------------------

W1_S1_R1 = 0xADC56F31A9D56EF8 / 2**64  # sha256("w1:s1:r1")[:8], big-endian, over 2**64


def test_canary_score_is_the_first_eight_bytes_of_sha256_over_two_to_the_64() -> None:
    assert canary_score("w1", "s1", "r1") == W1_S1_R1
    assert canary_score("w1", "s1", "r2") == 0x1F5CAEE1EB90D091 / 2**64
    assert 0.0 <= canary_score("", "", "") < 1.0


@pytest.mark.parametrize(("fraction", "allowed"), [
    (None, True), (0.0, False), (-0.5, False), (1.0, True), (2.0, True),
    (W1_S1_R1, False),  # strictly below
    (math.nextafter(W1_S1_R1, 1.0), True),
    (math.nextafter(W1_S1_R1, 0.0), False),
    (0.5, False), (0.7, True), (1e-12, False), (math.nextafter(1.0, 0.0), True),
])
def test_canary_allows_below_the_fraction(fraction: float | None, allowed: bool) -> None:
    assert canary_allows(fraction, "w1", "s1", "r1") is allowed


def test_the_canary_is_stable_per_world_strategy_and_run() -> None:
    assert canary_allows(0.5, "w1", "s1", "r2") and not canary_allows(0.5, "w1", "s1", "r1")
    assert all(canary_allows(0.5, "w1", "s1", "r2") for _ in range(5))


# --- the risk snapshot --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("age_s", "fresh"), [(0, True), (899, True), (900, True), (900.001, False), (5000, False)])
def test_a_snapshot_is_fresh_until_its_ttl_has_passed(age_s: float, fresh: bool) -> None:
    snapshot = RiskSnapshotStamp(version="v1", created_at="2026-01-01T09:30:00Z", ttl_sec=900)
    assert risk_snapshot_fresh(snapshot, NOW + timedelta(seconds=age_s)) is fresh


def test_no_snapshot_blocks_unless_the_policy_does_not_require_one() -> None:
    snapshot = RiskSnapshotStamp(version="v1", created_at="2026-01-01T09:30:00Z", ttl_sec=60)
    required, optional = LivePromotionGovernance(), LivePromotionGovernance(require_risk_snapshot=False)
    assert risk_snapshot_blocks(required, None, NOW)
    assert not risk_snapshot_blocks(required, snapshot, NOW)
    assert risk_snapshot_blocks(required, snapshot, NOW + timedelta(seconds=61))
    assert not risk_snapshot_blocks(optional, None, NOW)


def test_without_a_risk_hub_every_promotion_is_blocked_by_default() -> None:
    state = _evaluate(_world({"mode": "manual_approval"}))
    assert _plan(state).blocked_reasons == ["risk_snapshot_missing_or_expired", "manual_approval_required"]
    assert not _plan(state).eligible


# --- the blocked reasons --------------------------------------------------------------------------------------


def test_blocked_reasons_keep_the_reference_order_then_the_default_safe_rule() -> None:
    state = _world({"mode": "disabled", "cooldown": "1h", "max_live_slots": 0}, allow_live=False)
    state = _completed_apply(state, "a1", NOW)
    state = _evaluate(state, stage="backtest", sharpe=0.1)
    assert _plan(state).blocked_reasons == [
        "promotion_disabled", "not_paper_stage", "validation_failed", "risk_snapshot_missing_or_expired",
        "cooldown_active", "allow_live_disabled"]  # an empty target fits in zero slots


@pytest.mark.parametrize(("governance", "approved", "reasons", "pending", "eligible"), [
    ({"mode": "manual_approval", **NO_RISK}, False, ["manual_approval_required"], True, True),
    ({"mode": "manual_approval", **NO_RISK}, True, [], False, True),
    ({"mode": "auto_apply", **NO_RISK}, False, [], False, True),
    ({"mode": "manual_approval"}, False, ["risk_snapshot_missing_or_expired", "manual_approval_required"], False,
     False),
])
def test_pending_and_eligible(governance: dict[str, Any], approved: bool, reasons: list[str], pending: bool,
                              eligible: bool) -> None:
    state = _evaluate(_world(governance))
    if approved:
        body = {"strategy_id": "s1", "run_id": "r1", "reason": "ok", "actor": "risk"}
        state = handle(state, _cmd("approve_live_promotion", body=body), NOW).state
    plan = _plan(state)
    assert (plan.blocked_reasons, plan.pending_manual_approval, plan.eligible) == (reasons, pending, eligible)


def test_a_world_that_may_not_be_live_is_never_eligible() -> None:
    plan = _plan(_evaluate(_world({"mode": "auto_apply", **NO_RISK}, allow_live=False)))
    assert (plan.blocked_reasons, plan.eligible) == (["allow_live_disabled"], False)


# --- approvers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("approvers", "named", "caller", "refusal"), [
    (None, None, None, None), (None, "anyone", "someone-else", None), ([], "anyone", None, None),
    (["risk"], "risk", None, None), (["risk"], None, "risk", None), (["risk"], "risk", "risk", None),
    ([" risk "], "risk", None, None),
    (["risk"], None, None, Refusal.UNPROCESSABLE), (["risk"], "  ", None, Refusal.UNPROCESSABLE),
    (["risk"], "ops", None, Refusal.FORBIDDEN_BY_POLICY), (["risk"], None, "mallory", Refusal.FORBIDDEN_BY_POLICY),
    (["risk"], "risk", "mallory", Refusal.FORBIDDEN_BY_POLICY),  # naming an approver does not make the caller one
    (["risk", "cro"], "cro", "risk", Refusal.FORBIDDEN_BY_POLICY),  # nor may an approver record someone else
])
def test_approvers(approvers: list[str] | None, named: str | None, caller: str | None, refusal: Refusal | None) -> None:
    governance = LivePromotionGovernance(approvers=approvers)
    if refusal is None:
        check_approver(governance, named, caller)
        return
    with pytest.raises(CommandRejected) as refused:
        check_approver(governance, named, caller)
    assert refused.value.refusal == refusal


def test_approve_records_an_override_and_reject_replaces_it() -> None:
    state = _evaluate(_world({"mode": "manual_approval"}))
    body = {"strategy_id": "s1", "run_id": "r1", "reason": "risk sign-off", "actor": "risk"}
    approved = handle(state, _cmd("approve_live_promotion", body=body), NOW)
    summary = approved.reply.summary
    assert (summary.override_status, summary.override_reason, summary.override_actor,
            summary.override_timestamp) == ("approved", "risk sign-off", "risk", "2026-01-01T09:30:00Z")
    event = approved.effects[-1].cloudevent
    assert (event["type"], event["data"]["change_type"]) == ("evaluation_run_updated", "override")
    rejected = handle(approved.state, _cmd("reject_live_promotion", body={"strategy_id": "s1", "run_id": "r1"}),
                      NOW).reply
    assert rejected.summary.override_status == "rejected" and rejected.revision == 3


def test_an_approval_stamped_in_the_future_is_refused() -> None:
    state = _evaluate(_world())
    body = {"strategy_id": "s1", "run_id": "r1", "reason": "ok", "actor": "risk", "timestamp": "2026-01-01T10:00:00Z"}
    with pytest.raises(CommandRejected) as refused:
        handle(state, _cmd("approve_live_promotion", body=body), NOW)
    assert refused.value.refusal == Refusal.UNPROCESSABLE


# --- apply run ids and the apply itself --------------------------------------------------------------------------


def test_auto_apply_run_ids() -> None:
    assert auto_run_id("run-paper-1", NOW) == "auto-live-run-paper-1-20260101T093000Z"
    long_id = "r" * 240
    shortened = auto_run_id(long_id, NOW)
    assert len(shortened) <= 256 and shortened.startswith("auto-live-") and shortened.endswith("-20260101T093000Z")
    assert shortened == auto_run_id(long_id, NOW) != auto_run_id("q" * 240, NOW)
    assert len(auto_run_id("r" * 229, NOW)) == 256 and "r" * 229 in auto_run_id("r" * 229, NOW)


def test_a_promotion_is_an_apply_to_live_on_the_pinned_fingerprint() -> None:
    state = _evaluate(_world({"mode": "auto_apply", **NO_RISK}, decisions=["s0"]), s2=0.9)
    step = apply_promotion(state, _cmd("apply_live_promotion",
                                       body={"strategy_id": "s1", "run_id": "r1", "apply_run_id": "a1"}),
                           NOW, ApplySettings())
    assert step.failure is None and step.start is not None
    body = step.start.body
    assert (body.run_id, body.plan.activate, body.plan.deactivate) == ("a1", ["s1", "s2"], ["s0"])
    assert body.gating_policy["domains"] == {"from": "backtest", "to": "live"}
    assert body.gating_policy["dataset_fingerprint"] == "fp-1"
    run = step.outcome.state.runs["a1"]
    assert (run.execution_domain, run.target, run.phase) == ("live", ["s1", "s2"], "freezing")
    assert step.outcome.effects[0].event == "live_promotion_started"


def test_auto_apply_promotes_the_freshest_paper_run() -> None:
    state = _world({"mode": "auto_apply", **NO_RISK})
    state = _evaluate(state, "old", at=NOW - timedelta(hours=2))
    state = _evaluate(state, "fresh", at=NOW - timedelta(hours=1), s2=0.9)
    state = _evaluate(state, "later-backtest", stage="backtest", at=NOW)
    step = auto_apply(state, _cmd("auto_apply_live_promotion"), NOW, ApplySettings())
    assert step.success.source_run_id == "fresh" and step.success.apply_run_id == auto_run_id("fresh", NOW)
    assert step.start.body.plan.activate == ["s1", "s2"]


def test_runs_recorded_within_the_same_second_rank_by_creation() -> None:
    state = _evaluate(_evaluate(_world({"mode": "auto_apply", **NO_RISK}), "zz-first"), "aa-second")
    step = auto_apply(state, _cmd("auto_apply_live_promotion"), NOW, ApplySettings())
    assert step.success.source_run_id == "aa-second"


def test_a_repeated_apply_run_id_answers_its_run_and_another_set_under_it_is_409() -> None:
    state = _evaluate(_world({"mode": "auto_apply", "cooldown": "1h", **NO_RISK}))
    command = _cmd("apply_live_promotion", body={"strategy_id": "s1", "run_id": "r1", "apply_run_id": "a1"})
    state = _finished(apply_promotion(state, command, NOW, ApplySettings()).outcome.state, "a1", NOW)
    again = apply_promotion(state, command, NOW, ApplySettings())  # in cooldown, yet the stored outcome
    assert again.failure is None and again.outcome.effects == [] and again.start.body.run_id == "a1"
    state = _evaluate(state, "r2", s2=0.9)
    other = _cmd("apply_live_promotion", body={"strategy_id": "s1", "run_id": "r2", "apply_run_id": "a1"})
    with pytest.raises(CommandRejected) as refused:
        apply_promotion(state, other, NOW, ApplySettings())
    assert refused.value.refusal == Refusal.CONFLICT and "different plan" in refused.value.detail
