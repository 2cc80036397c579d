"""Starting a live promotion: ``POST …/promotions/live/apply`` and ``…/auto-apply`` (reference §1.10).

A promotion that passes its gates (``domain.promotions``) is an ordinary 2-phase apply: the run's plan,
with a gating policy whose ``domains.to`` is ``live`` and whose fingerprint is the one the world has
pinned, handed to ``apply.begin`` and then driven by the world actor like any ``StartApply``. The
default-safe rule is asked before that (a refusal is the promotion's answer, audited ``live_refused``,
naming every failing rule), by ``begin`` again, and once more at Switch: there is no way around it.

Each handler returns a ``PromotionStep``: what to commit and answer now, and, when an apply starts, the
``StartApply`` the actor runs and the answer its caller gets once that apply completes. ``failure`` is the
reason ``promotion_fail_total`` counts (refusals, not "nothing to do" answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from domain import apply, evaluation
from domain.apply import ApplySettings
from domain.default_safe import LIVE, refused
from domain.effects import AuditRecord
from domain.gating import SHARE_POLICY
from domain.governance import canary_allows
from domain.hashing import blake3_hex
from domain.promotions import (
    DISABLED, MANUAL, Judged, governance_of, judge, latest_paper_runs, override_status, target_of,
)
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z
from messages import commands as c
from messages.apply import ApplyRequest, ApplyRun
from messages.errors import CommandRejected, ErrorBody, Result, conflict, unprocessable
from messages.promotions import LivePlan, LivePromotionAutoApplyResponse
from messages.worlds import WorldRecord

AUTO_DISABLED = "live promotion auto-apply is not enabled by policy"
MAX_RUN_ID = 256  # apply run ids, as stored

# The apply route's gates after the manual approval, in the reference's order: (reason, 409 detail, force
# skips it). Force skips the approval and the validation only; never risk, cooldown, slots or the rule.
_APPLY_GATES = (
    ("not_paper_stage", "promotion requires paper-stage evaluation run", False),
    ("validation_failed", "promotion requires passing validation", True),
    ("risk_snapshot_missing_or_expired", "risk snapshot missing or expired", False),
    ("cooldown_active", "cooldown active", False),
    ("max_live_slots_exceeded", "max live slots exceeded", False),
)
# Auto-apply's gates, in the reference's order; any of them is answered ``applied: false`` with its name.
_AUTO_GATES = ("validation_failed", "risk_snapshot_missing_or_expired", "max_live_slots_exceeded", "cooldown_active")


@dataclass(frozen=True)
class PromotionStep:
    outcome: Outcome
    start: c.StartApply | None = None
    success: Any = None
    failure: str | None = None


def live_gating(world: WorldRecord) -> dict[str, Any]:
    """The seed's canonical gating policy for a promotion to live on the world's pinned fingerprint: the
    live edge stays disabled until Switch has happened and opens after it (seed §4-C)."""
    return {"dataset_fingerprint": world.dataset_fingerprint, "share_policy": SHARE_POLICY,
            "snapshot": {"strategy_plane": "cow", "feature_plane": "readonly"},
            "domains": {"from": world.execution_domain, "to": LIVE},
            "edges": {"pre_promotion": {"disable_edges_to": LIVE}, "post_promotion": {"enable_edges_to": LIVE}}}


def auto_run_id(run_id: str, now: datetime) -> str:
    """``auto-live-<run_id>-<compact UTC ts>``; a run id too long for an apply run id is replaced by its
    digest (the evaluation run's id may be twice as long as an apply run's)."""
    stamp = iso_z(now).replace(":", "").replace("-", "")
    candidate = f"auto-live-{run_id}-{stamp}"
    if len(candidate) <= MAX_RUN_ID:
        return candidate
    return f"auto-live-{blake3_hex(run_id.encode()).split(':')[1][:32]}-{stamp}"


def start_command(cmd: c.Command, apply_run_id: str, plan: LivePlan, gating: dict[str, Any]) -> c.StartApply:
    """Converted, not constructed, so the plan's ids get the same checks a caller's apply body gets."""
    raw = {"run_id": apply_run_id, "plan": {"activate": plan.activate, "deactivate": plan.deactivate},
           "gating_policy": gating}
    try:
        body = msgspec.convert(raw, ApplyRequest)
    except msgspec.ValidationError as exc:
        raise unprocessable(f"the evaluation run's active set is not a valid apply plan: {exc}") from None
    return c.StartApply(world_id=cmd.world_id, actor=cmd.actor, correlation_id=cmd.correlation_id, body=body)


def _begin(state: WorldState, start: c.StartApply, now: datetime, settings: ApplySettings,
           audit: dict[str, Any], success: Any) -> PromotionStep:
    """``apply.begin`` of the promotion's run; a run it starts is preceded in the audit log by the promotion
    that asked for it (evaluation run -> apply run)."""
    outcome = apply.begin(state, start, now, settings)
    if outcome.effects and not outcome.refused:
        started = AuditRecord(event="live_promotion_started", request=None,
                              result={"apply_run_id": start.body.run_id, **audit})
        outcome = msgspec.structs.replace(outcome, effects=[started, *outcome.effects])
    return PromotionStep(outcome=outcome, start=start, success=success)


def _blocked(state: WorldState, cmd: c.ApplyPromotion, reason: str, rejection: CommandRejected,
             reasons: list[str]) -> PromotionStep:
    """An audited refusal: the named gate's 409 and every gate that blocked."""
    audit = AuditRecord(event="live_promotion_blocked", request=msgspec.to_builtins(cmd.body),
                        result={"reason": reason, "blocked_reasons": reasons, "outcome": "rejected"})
    outcome = Outcome(state=state, effects=[audit], reply=ErrorBody(detail=rejection.detail),
                      result=rejection.refusal)
    return PromotionStep(outcome=outcome, failure=reason)


def _replayed(state: WorldState, cmd: c.ApplyPromotion, existing: ApplyRun) -> c.StartApply:
    """A promotion's apply run id sent again: the body that started it, rebuilt from the run, so ``begin``
    answers the stored outcome (or attaches to the run) instead of judging the gates against a world the
    run has already changed. Any other run under that id is a different plan."""
    if existing.execution_domain != LIVE or existing.gating is None:
        raise conflict(f"run_id {existing.run_id!r} was already used with a different plan")
    before, after = set(existing.previous), set(existing.target)
    plan = LivePlan(activate=sorted(after - before), deactivate=sorted(before - after))
    return start_command(cmd, existing.run_id, plan, existing.gating)


def apply_promotion(state: WorldState, cmd: c.ApplyPromotion, now: datetime,
                    settings: ApplySettings) -> PromotionStep:
    """Refusals in the reference's order (404, 422, 409 per gate), then the default-safe rule, then the
    apply. Success answers the evaluation run (reference)."""
    require_world(state)
    body = cmd.body
    existing = state.runs.get(body.apply_run_id)
    if existing is not None:
        run = evaluation.require_run(state, body.strategy_id, body.run_id)
        if target_of(run) != existing.target:  # that id promoted another set
            raise conflict(f"run_id {existing.run_id!r} was already used with a different plan")
        return _begin(state, _replayed(state, cmd, existing), now, settings, {}, run)
    judged = _judged_for_apply(state, cmd, now)
    if isinstance(judged, PromotionStep):
        return judged
    if judged.refusals:
        return _refused(state, judged)
    forced = [reason for reason in ("validation_failed", MANUAL) if reason in judged.gates]
    start = start_command(cmd, body.apply_run_id, judged.plan, live_gating(require_world(state)))
    return _begin(state, start, now, settings, _started(judged, forced), judged.run)


def _judged_for_apply(state: WorldState, cmd: c.ApplyPromotion, now: datetime) -> Judged | PromotionStep:
    """The run judged, or the refusal of the first gate that blocks it (``force`` skips two of them)."""
    body = cmd.body
    governance = governance_of(state)
    if governance.mode == "disabled":
        return _blocked(state, cmd, "promotion_disabled", conflict(DISABLED), ["promotion_disabled"])
    run = evaluation.require_run(state, body.strategy_id, body.run_id)
    if run.summary is None:
        raise unprocessable("evaluation run missing summary")
    if governance.mode == "manual_approval" and override_status(run) != "approved" and not body.force:
        return _blocked(state, cmd, MANUAL, conflict("manual approval required before applying live promotion"),
                        [MANUAL])
    judged = judge(state, run, now, governance)
    for reason, detail, forceable in _APPLY_GATES:
        if reason in judged.gates and not (forceable and body.force):
            return _blocked(state, cmd, reason, conflict(detail), judged.reasons)
    return judged


def _started(judged: Judged, forced: list[str], auto: bool = False) -> dict[str, Any]:
    return {"strategy_id": judged.run.strategy_id, "run_id": judged.run.run_id,
            "plan": msgspec.to_builtins(judged.plan), "forced_past": forced, "auto": auto}


def _refused(state: WorldState, judged: Judged, reply: Any = None) -> PromotionStep:
    """The default-safe rule's answer: 409 naming every failing rule (or ``reply``), audited."""
    request = {"strategy_id": judged.run.strategy_id, "run_id": judged.run.run_id,
               "plan": msgspec.to_builtins(judged.plan)}
    outcome = refused(state, "live promotion", judged.refusals, request)
    if reply is not None:
        outcome = msgspec.structs.replace(outcome, reply=reply, result=Result.OK)
    return PromotionStep(outcome=outcome, failure=judged.refusals[0])


# --- auto-apply ------------------------------------------------------------------------------------------------


def _not_applied(state: WorldState, reason: str, judged: Judged | None = None, failure: str | None = None,
                 **extra: Any) -> PromotionStep:
    source = {} if judged is None else {"source_strategy_id": judged.run.strategy_id,
                                        "source_run_id": judged.run.run_id, "plan": judged.plan}
    reply = LivePromotionAutoApplyResponse(world_id=state.world_id, applied=False, reason=reason, **source, **extra)
    return PromotionStep(outcome=Outcome(state=state, effects=[], reply=reply), failure=failure)


def _skip(state: WorldState, judged: Judged) -> PromotionStep | None:
    """Why the freshest paper run is not promoted now (a gate, the rule, nothing to do, the canary)."""
    world = require_world(state)
    for gate in _AUTO_GATES:
        if gate in judged.gates:
            cooldown = {"cooldown_remaining_sec": judged.cooldown_remaining} if gate == "cooldown_active" else {}
            return _not_applied(state, gate, judged, gate, blocked_reasons=judged.reasons, **cooldown)
    if judged.refusals:
        reply = LivePromotionAutoApplyResponse(
            world_id=state.world_id, applied=False, reason=judged.refusals[0], source_strategy_id=judged.run.strategy_id,
            source_run_id=judged.run.run_id, plan=judged.plan, blocked_reasons=judged.reasons)
        return _refused(state, judged, reply)
    if world.execution_domain == LIVE and not (judged.plan.activate or judged.plan.deactivate):
        return _not_applied(state, "already_live", judged)  # an apply would only freeze a live world
    if not canary_allows(judged.governance.canary_fraction, state.world_id, judged.run.strategy_id,
                         judged.run.run_id):
        return _not_applied(state, "canary_skipped", judged)
    return None


def auto_apply(state: WorldState, cmd: c.AutoApplyPromotion, now: datetime,
               settings: ApplySettings) -> PromotionStep:
    """Promote the freshest paper run of any strategy when the mode is ``auto_apply`` and it may go."""
    world = require_world(state)
    governance = governance_of(state)
    if governance.mode != "auto_apply":
        raise conflict(AUTO_DISABLED)
    if not any(state.evaluations.values()):
        return _not_applied(state, "no_evaluation_runs")
    papers = latest_paper_runs(state)
    if not papers:
        return _not_applied(state, "no_paper_runs")
    judged = judge(state, papers[0], now, governance)
    skipped = _skip(state, judged)
    if skipped is not None:
        return skipped
    apply_run_id = auto_run_id(judged.run.run_id, now)
    success = LivePromotionAutoApplyResponse(
        world_id=state.world_id, applied=True, reason="applied", source_strategy_id=judged.run.strategy_id,
        source_run_id=judged.run.run_id, apply_run_id=apply_run_id, plan=judged.plan)
    start = start_command(cmd, apply_run_id, judged.plan, live_gating(world))
    return _begin(state, start, now, settings, _started(judged, [], auto=True), success)
