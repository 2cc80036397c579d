"""Evaluation runs: ``/evaluate`` and ``/evaluate-cohort`` record one, operators override or amend them,
and every change is a new revision (reference §1.4, §1.8).

A run lives in ``WorldState.evaluations[strategy][run_id]`` as the list of its revisions, oldest first;
the last one is the run. Each change appends one revision and persists it with one ``SaveEvaluationRun``,
one audit entry and one ``evaluation_run_created``/``evaluation_run_updated`` event, in one commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from domain import live_metrics
from domain.activation import envelope
from domain.apply import select_for
from domain.decide import decide
from domain.effects import AuditRecord, Effect, SaveEvaluationRun
from domain.evaluation_report import metric_blocks, recommended_stage, rule_results, verdict
from domain.events import cloudevent
from domain.policies import POLICY_TOPIC
from domain.selection import SelectionResult, effective_rules
from domain.series_metrics import derive
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z
from messages import commands as c
from messages.activation import ActivationEnvelope
from messages.apply import CohortEvaluateResponse, EvaluateRequest, EvaluateResponse
from messages.errors import CodedErrorBody, CommandRejected, ErrorCode, Refusal, not_found, unprocessable
from messages.evaluation import (
    EvaluationOverride, EvaluationRun, EvaluationSummary, EvaluationValidation, RunLinks, RunRevision,
)
from messages.policies import Policy

NOT_EVALUATED = "E_RUN_NOT_EVALUATED"


def run_url(world_id: str, strategy_id: str, run_id: str) -> str:
    return f"/worlds/{world_id}/strategies/{strategy_id}/runs/{run_id}"


def auto_run_id(strategy_id: str, now: datetime) -> str:
    """The reference's id for a run the caller did not name: ``eval-<strategy>-<UTC, microseconds>Z``."""
    return f"eval-{strategy_id}-{now.strftime('%Y%m%dT%H%M%S%fZ')}"


def latest(state: WorldState, strategy_id: str, run_id: str) -> EvaluationRun | None:
    revisions = state.evaluations.get(strategy_id, {}).get(run_id)
    return revisions[-1] if revisions else None


def require_run(state: WorldState, strategy_id: str, run_id: str) -> EvaluationRun:
    require_world(state)
    run = latest(state, strategy_id, run_id)
    if run is None:
        raise not_found("evaluation run")
    return run


def strategy_runs(state: WorldState, strategy_id: str | None = None) -> list[EvaluationRun]:
    """The current revision of every run (of one strategy, or all), oldest first, ties by id."""
    by_strategy = state.evaluations if strategy_id is None else {strategy_id: state.evaluations.get(strategy_id, {})}
    runs = [revisions[-1] for runs in by_strategy.values() for revisions in runs.values()]
    return sorted(runs, key=lambda r: (r.sequence, r.created_at, r.strategy_id, r.run_id))


def _next_sequence(state: WorldState) -> int:
    return 1 + max((revisions[-1].sequence for runs in state.evaluations.values() for revisions in runs.values()),
                   default=0)


# --- recording ---------------------------------------------------------------------------------------

def _summary(sid: str, selection: SelectionResult, results: dict[str, Any], profile: str | None,
             stage: str, body: EvaluateRequest, campaign: dict[str, Any]) -> EvaluationSummary:
    # A re-evaluation is new evidence: an override given for the old revision does not carry over to it.
    override = body.override
    return EvaluationSummary(
        status=verdict(results), recommended_stage=recommended_stage(profile, stage),  # type: ignore[arg-type]
        active=sid in selection.active, active_set=list(selection.active), **campaign,
        **(_override_fields(override) if override is not None else {}))


def _override_fields(override: EvaluationOverride) -> dict[str, Any]:
    return {"override_status": override.status, "override_reason": override.reason,
            "override_actor": override.actor, "override_timestamp": override.timestamp}


def _risk_configured(policy: Policy, profile: str | None) -> bool:
    rules = effective_rules(policy, profile)
    return rules.correlation is not None or rules.hysteresis is not None


class Evaluated(NamedTuple):
    """One selection and what a run records of it: the policy (and its version; none when inline) and the
    metrics derived from the request's series, computed once for every strategy recorded."""

    selection: SelectionResult
    version: int | None
    policy: Policy
    derived: dict[str, dict[str, float]]


def _evaluated(state: WorldState, body: EvaluateRequest) -> Evaluated:
    return Evaluated(*select_for(state, body), derived=derive(body.series))


def _new_run(state: WorldState, sid: str, run_id: str, body: EvaluateRequest, evaluated: Evaluated,
             now: datetime, campaign: dict[str, Any]) -> EvaluationRun:
    selection, version, policy, derived = evaluated
    stage = body.stage or "backtest"
    # What the rules saw: the supplied metrics with those derived from the strategy's series over them.
    raw = {**body.metrics.get(sid, {}), **derived.get(sid, {})}
    results = rule_results(sid, raw, selection, _risk_configured(policy, selection.profile))
    previous = latest(state, sid, run_id)
    stamp = iso_z(now)
    return EvaluationRun(
        world_id=state.world_id, strategy_id=sid, run_id=run_id, status="evaluated" if raw else "evaluating",
        stage=stage, risk_tier=body.risk_tier or "unknown", model_card_version=body.model_card_version,
        metrics=live_metrics.attach(state, sid, raw, metric_blocks(raw, results), stamp) if raw else None,
        validation=EvaluationValidation(policy_version=None if version is None else str(version),
                                        ruleset_hash=selection.ruleset_hash, profile=selection.profile,
                                        results=results),
        summary=_summary(sid, selection, results, selection.profile, stage, body, campaign),
        created_at=previous.created_at if previous else stamp, updated_at=stamp,
        links=RunLinks(metrics=run_url(state.world_id, sid, run_id) + "/metrics",
                       history=run_url(state.world_id, sid, run_id) + "/history"),
        revision=previous.revision + 1 if previous else 1,
        sequence=previous.sequence if previous else _next_sequence(state))


def saved(state: WorldState, run: EvaluationRun, change: str, now: datetime,
          correlation_id: str | None) -> tuple[WorldState, list[Effect]]:
    """Append ``run`` as its key's newest revision, with its row, audit entry and event."""
    runs = state.evaluations.get(run.strategy_id, {})
    revisions = [*runs.get(run.run_id, []), run]
    evaluations = {**state.evaluations, run.strategy_id: {**runs, run.run_id: revisions}}
    effects: list[Effect] = [
        SaveEvaluationRun(run=run),
        AuditRecord(event="evaluation_run_recorded" if change == "created" else "evaluation_run_updated",
                    request=None, result={"strategy_id": run.strategy_id, "run_id": run.run_id,
                                          "stage": run.stage, "risk_tier": run.risk_tier,
                                          "revision": run.revision, "change_type": change}),
        _run_event(run, change, now, correlation_id)]
    return msgspec.structs.replace(state, evaluations=evaluations), effects


def _run_event(run: EvaluationRun, change: str, now: datetime, correlation_id: str | None) -> Any:
    summary = run.summary or EvaluationSummary()
    data: dict[str, Any] = {"world_id": run.world_id, "strategy_id": run.strategy_id, "run_id": run.run_id,
                            "stage": run.stage, "version": 1, "risk_tier": run.risk_tier,
                            "status": summary.status, "recommended_stage": summary.recommended_stage,
                            "revision": run.revision}
    event_type = "evaluation_run_created" if change == "created" else "evaluation_run_updated"
    if event_type == "evaluation_run_updated":
        data["change_type"] = change
    key = f"{event_type}:{run.world_id}:{run.strategy_id}:{run.run_id}:{run.revision}"
    return cloudevent(POLICY_TOPIC, event_type, run.world_id, data, key,
                      correlation_id or f"evaluation_run:{run.world_id}:{run.strategy_id}:{run.run_id}", now)


def _record(state: WorldState, sids: Iterable[str], run_id: str | None, body: EvaluateRequest,
            evaluated: Evaluated, now: datetime, cmd: c.Command,
            campaign: dict[str, Any]) -> tuple[WorldState, list[Effect], dict[str, str]]:
    effects: list[Effect] = []
    ids: dict[str, str] = {}
    for sid in sids:
        rid = run_id or auto_run_id(sid, now)
        change = "reevaluated" if latest(state, sid, rid) is not None else "created"
        state, written = saved(state, _new_run(state, sid, rid, body, evaluated, now, campaign), change, now,
                               cmd.correlation_id)
        effects += written
        ids[sid] = rid
    return state, effects, ids


def _subject(body: EvaluateRequest) -> str | None:
    """The strategy a run is recorded for: the one named, else the first with metrics (as the reference)."""
    return body.strategy_id or min(body.metrics, default=None)


def _activation_of(state: WorldState, sid: str | None) -> ActivationEnvelope | None:
    sides = state.activation.get(sid or "", {})
    side = min(sides, default=None)
    return None if side is None else envelope(state.world_id, sid, side, sides[side])  # type: ignore[arg-type]


def evaluate(state: WorldState, cmd: c.Evaluate, now: datetime) -> Outcome:
    """Select, record the run, and answer with the run's id and url plus the world's decision and the
    strategy's activation as they stand (``SubmitResult.ws``: the evaluation itself changes neither)."""
    require_world(state)
    evaluated = _evaluated(state, cmd.body)
    sid = _subject(cmd.body)
    new_state, effects, ids = _record(state, [sid] if sid else [], cmd.body.run_id, cmd.body, evaluated, now,
                                      cmd, {})
    selection = evaluated.selection
    run_id = ids.get(sid) if sid else None
    reply = EvaluateResponse(
        active=selection.active, evaluation_run_id=run_id,
        evaluation_run_url=run_url(state.world_id, sid, run_id) if sid and run_id else None,
        ruleset_hash=selection.ruleset_hash, notes=selection.notes,
        decision=decide(state, None, now)[0], activation=_activation_of(state, sid))
    return Outcome(state=new_state, effects=effects, reply=reply)


def _candidates(body: Any) -> list[str]:
    candidates = list(dict.fromkeys(body.candidates)) if body.candidates is not None else sorted(body.metrics)
    if not candidates:
        raise unprocessable("cohort candidates must not be empty")
    sources = body.metrics.keys() | (body.series or {}).keys()  # metrics given, or derivable from a series
    missing = [sid for sid in candidates if sid not in sources]
    if missing:
        raise unprocessable(f"cohort candidates missing metrics sources: {', '.join(missing)}")
    return candidates


def evaluate_cohort(state: WorldState, cmd: c.EvaluateCohort, now: datetime) -> Outcome:
    """One selection over every candidate, one run per candidate under one run id and campaign id."""
    require_world(state)
    body = cmd.body
    candidates = _candidates(body)
    evaluated = _evaluated(state, body)
    run_id = body.run_id or f"cohort-{body.campaign_id}-{now.strftime('%Y%m%dT%H%M%S%fZ')}"
    campaign = {"campaign_id": body.campaign_id, "campaign_candidates": candidates}
    new_state, effects, _ = _record(state, candidates, run_id, body, evaluated, now, cmd, campaign)
    reply = CohortEvaluateResponse(
        campaign_id=body.campaign_id, run_id=run_id, candidates=candidates, active=evaluated.selection.active,
        evaluation_runs={sid: run_url(state.world_id, sid, run_id) for sid in candidates})
    return Outcome(state=new_state, effects=effects, reply=reply)


# --- amending ------------------------------------------------------------------------------------------

def _amended(state: WorldState, run: EvaluationRun, summary: EvaluationSummary, change: str, now: datetime,
             cmd: c.Command) -> Outcome:
    updated = msgspec.structs.replace(run, summary=summary, updated_at=iso_z(now), revision=run.revision + 1)
    new_state, effects = saved(state, updated, change, now, cmd.correlation_id)
    return Outcome(state=new_state, effects=effects, reply=updated)


def check_override(override: EvaluationOverride) -> None:
    """``approved`` must say why, who and when; the other statuses may be bare."""
    if override.status == "approved":
        missing = [name for name in ("reason", "actor", "timestamp") if not getattr(override, name)]
        if missing:
            raise unprocessable(f"approved override requires {', '.join(missing)}")


def override_run(state: WorldState, cmd: c.OverrideRun, now: datetime) -> Outcome:
    """Idempotent: an override that changes nothing writes nothing and answers the run as it is."""
    run = require_run(state, cmd.strategy_id, cmd.run_id)
    check_override(cmd.body)
    summary = run.summary or EvaluationSummary()
    fields = _override_fields(cmd.body)
    if all(getattr(summary, name) == value for name, value in fields.items()):
        return Outcome(state=state, effects=[], reply=run)
    return _amended(state, run, msgspec.structs.replace(summary, **fields), "override", now, cmd)


def record_ex_post_failure(state: WorldState, cmd: c.RecordExPostFailure, now: datetime) -> Outcome:
    run = require_run(state, cmd.strategy_id, cmd.run_id)
    record = cmd.body if cmd.body.recorded_at else msgspec.structs.replace(cmd.body, recorded_at=iso_z(now))
    summary = run.summary or EvaluationSummary()
    known = summary.ex_post_failures if summary.ex_post_failures is not msgspec.UNSET else []
    summary = msgspec.structs.replace(summary, ex_post_failures=[*known, record])
    return _amended(state, run, summary, "ex_post_failure", now, cmd)


# --- reads ---------------------------------------------------------------------------------------------

def list_runs(state: WorldState, q: c.ListRuns, now: datetime) -> list[EvaluationRun]:
    require_world(state)
    return strategy_runs(state, q.strategy_id)


def get_run(state: WorldState, q: c.GetRun, now: datetime) -> EvaluationRun:
    return require_run(state, q.strategy_id, q.run_id)


def get_run_metrics(state: WorldState, q: c.GetRunMetrics, now: datetime) -> Any:
    run = require_run(state, q.strategy_id, q.run_id)
    if run.metrics is None:
        message = "evaluation run has no metrics yet"
        raise CommandRejected(Refusal.CONFLICT, message,
                              CodedErrorBody(detail=ErrorCode(code=NOT_EVALUATED, message=message)))
    return run.metrics


def get_run_history(state: WorldState, q: c.GetRunHistory, now: datetime) -> list[RunRevision]:
    require_run(state, q.strategy_id, q.run_id)
    revisions = state.evaluations[q.strategy_id][q.run_id]
    return [RunRevision(revision=r.revision, recorded_at=r.updated_at, payload=r) for r in revisions]

