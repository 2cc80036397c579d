"""Live promotions of evaluation runs (reference §1.10): the gates a run must pass, the plan it would
apply, the candidates, and the approvals. Starting the apply itself is ``domain.promotions_apply``.

A run is promoted by applying its ``summary.active_set`` to ``live``: ``activate = target - current`` and
``deactivate = current - target``, where current is the world's decision set. Its ``blocked_reasons`` are the
reference's gates, in the reference's order:

    promotion_disabled, not_paper_stage, validation_failed, risk_snapshot_missing_or_expired,
    cooldown_active, max_live_slots_exceeded, manual_approval_required

followed by the default-safe rule's refusals for this world (``allow_live_disabled``, ...: the same rule
the apply asks, so a plan never calls eligible what the apply would refuse). A run is ``eligible`` when
nothing but the manual approval blocks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import evaluation
from domain.default_safe import live_refusals
from domain.governance import (
    RiskSnapshotStamp, cooldown_remaining, duration_seconds, parse_governance, risk_snapshot_blocks, slots_exceeded,
)
from domain.policies import default_policy
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z, parse_iso, refuse_future
from messages import commands as c
from messages.errors import conflict, forbidden, unprocessable
from messages.evaluation import EvaluationOverride, EvaluationRun
from messages.promotions import (
    LivePlan, LivePromotionCandidate, LivePromotionCandidates, LivePromotionGovernance, LivePromotionPlan,
)

DISABLED = "live promotion is disabled by policy"
MANUAL = "manual_approval_required"
PASSING = ("pass", "warn")


def governance_of(state: WorldState) -> LivePromotionGovernance:
    """``governance.live_promotion`` of the default policy (the defaults without one)."""
    policy = default_policy(state)
    return parse_governance(policy.document.get("governance") if policy is not None else None)


def latest_risk_snapshot(state: WorldState) -> RiskSnapshotStamp | None:
    """The world's newest accepted Risk Hub snapshot (loaded with the world, moved on each accept by
    ``domain.risk_snapshots.accept``); ``None`` until one is pushed, which blocks every promotion unless the
    policy does not require the snapshot (``domain.governance``)."""
    return state.risk_snapshot


def last_completed_apply(state: WorldState) -> datetime | None:
    """When the world's last apply completed, to the second (its ``apply_stage: completed`` audit entry is
    written in the same commit, stamped with the same clock reading truncated to seconds)."""
    stamps = [parse_iso(run.updated_at).replace(microsecond=0) for run in state.runs.values()
              if run.phase == "completed"]
    return max(stamps, default=None)


def is_paper(run: EvaluationRun) -> bool:
    return run.stage.lower() == "paper"


def override_status(run: EvaluationRun) -> str:
    return ((run.summary.override_status if run.summary else None) or "none").lower()


def target_of(run: EvaluationRun) -> list[str]:
    """The run's ``summary.active_set``, sorted and without blanks; 422 when the run has none."""
    if run.summary is None:
        raise unprocessable("evaluation run missing summary")
    if run.summary.active_set is None:
        raise unprocessable("evaluation run missing summary.active_set")
    return sorted({sid for sid in run.summary.active_set if sid.strip()})


def plan_between(current: list[str], target: list[str]) -> LivePlan:
    now, then = set(current), set(target)
    return LivePlan(activate=sorted(then - now), deactivate=sorted(now - then))


@dataclass(frozen=True)
class Judged:
    """One run's promotion, judged against the world as it is now."""

    run: EvaluationRun
    governance: LivePromotionGovernance
    target: list[str]
    current: list[str]
    plan: LivePlan
    override_status: str
    cooldown_remaining: int | None
    gates: list[str]  # the reference's blocked reasons, in its order
    refusals: list[str]  # the default-safe rule's, for this world going live

    @property
    def reasons(self) -> list[str]:
        return [*self.gates, *self.refusals]

    @property
    def pending_manual_approval(self) -> bool:
        return self.reasons == [MANUAL]

    @property
    def eligible(self) -> bool:
        return self.reasons in ([], [MANUAL])


def _gates(state: WorldState, run: EvaluationRun, governance: LivePromotionGovernance, target: list[str],
           cooldown: int | None, now: datetime) -> list[str]:
    status = (run.summary.status if run.summary else None) or ""
    checks = (
        ("promotion_disabled", governance.mode == "disabled"),
        ("not_paper_stage", not is_paper(run)),
        ("validation_failed", status.lower() not in PASSING),
        ("risk_snapshot_missing_or_expired", risk_snapshot_blocks(governance, latest_risk_snapshot(state), now)),
        ("cooldown_active", (cooldown or 0) > 0),
        ("max_live_slots_exceeded", slots_exceeded(governance.max_live_slots, target)),
        (MANUAL, governance.mode == "manual_approval" and override_status(run) != "approved"),
    )
    return [reason for reason, blocked in checks if blocked]


def judge(state: WorldState, run: EvaluationRun, now: datetime,
          governance: LivePromotionGovernance | None = None) -> Judged:
    world = require_world(state)
    governance = governance if governance is not None else governance_of(state)
    target = target_of(run)
    current = sorted({sid for sid in state.decisions if sid.strip()})
    cooldown = cooldown_remaining(duration_seconds(governance.cooldown), last_completed_apply(state), now)
    return Judged(run=run, governance=governance, target=target, current=current,
                  plan=plan_between(current, target), override_status=override_status(run),
                  cooldown_remaining=cooldown, gates=_gates(state, run, governance, target, cooldown, now),
                  refusals=live_refusals(world, world.dataset_fingerprint))


# --- reads ---------------------------------------------------------------------------------------------------


def plan_out(state: WorldState, q: c.GetPromotionPlan, now: datetime) -> LivePromotionPlan:
    judged = judge(state, evaluation.require_run(state, q.strategy_id, q.run_id), now)
    governance = judged.governance
    return LivePromotionPlan(
        world_id=state.world_id, strategy_id=q.strategy_id, run_id=q.run_id, plan=judged.plan,
        target_active=judged.target, current_active=judged.current, promotion_mode=governance.mode,
        override_status=judged.override_status, pending_manual_approval=judged.pending_manual_approval,
        eligible=judged.eligible, blocked_reasons=judged.reasons, cooldown_remaining_sec=judged.cooldown_remaining,
        max_live_slots=governance.max_live_slots, canary_fraction=governance.canary_fraction)


def freshness(run: EvaluationRun) -> tuple[datetime, datetime, int, str, str]:
    """The freshest is the largest: updated, then created (the reference's rank), then the later-created
    run (timestamps tie within a second), then the ids."""
    return parse_iso(run.updated_at), parse_iso(run.created_at), run.sequence, run.strategy_id, run.run_id


def latest_paper_runs(state: WorldState) -> list[EvaluationRun]:
    """The freshest paper run of each strategy, freshest first."""
    latest: dict[str, EvaluationRun] = {}
    for run in evaluation.strategy_runs(state):
        kept = latest.get(run.strategy_id)
        if is_paper(run) and (kept is None or freshness(run) > freshness(kept)):
            latest[run.strategy_id] = run
    return sorted(latest.values(), key=freshness, reverse=True)


def _candidate(state: WorldState, run: EvaluationRun, governance: LivePromotionGovernance, now: datetime,
               include_plan: bool) -> LivePromotionCandidate | None:
    """A run that passed or warned and names a non-empty active set; anything else is not a candidate."""
    summary = run.summary
    status = ((summary.status if summary else None) or "").lower()
    if summary is None or status not in PASSING or not summary.active_set or not target_of(run):
        return None
    judged = judge(state, run, now, governance)
    return LivePromotionCandidate(
        strategy_id=run.strategy_id, run_id=run.run_id, created_at=run.created_at, updated_at=run.updated_at,
        status=status, override_status=judged.override_status,
        pending_manual_approval=judged.pending_manual_approval, eligible=judged.eligible,
        blocked_reasons=judged.reasons, target_active=judged.target, plan=judged.plan if include_plan else None)


def candidates_out(state: WorldState, q: c.ListPromotionCandidates, now: datetime) -> LivePromotionCandidates:
    """The limit applies to the freshest paper run of each strategy before the filter (as the reference)."""
    require_world(state)
    governance = governance_of(state)
    if governance.mode == "disabled":
        return LivePromotionCandidates(world_id=state.world_id, promotion_mode=governance.mode)
    runs = latest_paper_runs(state)
    runs = runs[:q.limit] if q.limit > 0 else runs
    found = [_candidate(state, run, governance, now, q.include_plan) for run in runs]
    return LivePromotionCandidates(world_id=state.world_id, promotion_mode=governance.mode,
                                   candidates=[candidate for candidate in found if candidate is not None])


# --- approvals -------------------------------------------------------------------------------------------------


def check_approver(governance: LivePromotionGovernance, named: str | None, caller: str | None) -> None:
    """With an ``approvers`` list, the actor is whoever the body names or else whoever the edge says is
    asking (the verified token subject when auth is on), and must be on it. When both are known they must
    be the same person: naming an approver does not make the caller one."""
    if not governance.approvers:
        return
    who = {actor.strip() for actor in (named, caller) if actor and actor.strip()}
    if not who:
        raise unprocessable("actor is required by policy")
    if len(who) > 1:
        raise forbidden("actor does not match the caller")
    allowed = {approver.strip() for approver in governance.approvers if approver.strip()}
    if not who <= allowed:
        raise forbidden("actor is not allowed by policy")


def _verdict(state: WorldState, cmd: c.ApprovePromotion | c.RejectPromotion, status: str,
             now: datetime) -> Outcome:
    require_world(state)
    governance = governance_of(state)
    if governance.mode == "disabled":
        raise conflict(DISABLED)
    body = cmd.body
    check_approver(governance, body.actor, cmd.actor)
    refuse_future("timestamp", body.timestamp, now)
    override = EvaluationOverride(status=status, reason=body.reason, actor=body.actor or cmd.actor,  # type: ignore[arg-type]
                                  timestamp=body.timestamp or iso_z(now))
    recorded = c.OverrideRun(world_id=cmd.world_id, actor=cmd.actor, correlation_id=cmd.correlation_id,
                             strategy_id=body.strategy_id, run_id=body.run_id, body=override)
    return evaluation.override_run(state, recorded, now)


def approve(state: WorldState, cmd: c.ApprovePromotion, now: datetime) -> Outcome:
    """Record an ``approved`` override on the run (``evaluation_run_updated``, ``change_type: override``)."""
    return _verdict(state, cmd, "approved", now)


def reject(state: WorldState, cmd: c.RejectPromotion, now: datetime) -> Outcome:
    return _verdict(state, cmd, "rejected", now)
