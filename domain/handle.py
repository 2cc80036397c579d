"""One entry point per message family: ``handle`` for mutations and ``answer`` for reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from domain import (
    activation, apply_answers, campaigns, evaluation, invariants, live_monitoring, policies, promotions, worlds,
    wvg,
)
from domain.extended_validation import record_extended_validation
from domain.decide import decide
from domain.effects import SaveDecision
from domain.rebalancing.events import record_rebalance
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import refuse_future
from messages import commands as c
from messages.activation import StateHashOut
from messages.bindings import StrategiesOut
from messages.errors import conflict
from messages.kinds import kind_of
from messages.policies import PolicyVersionRef

_MUTATIONS: dict[type, Callable[[WorldState, Any, datetime], Outcome]] = {
    c.CreateWorld: worlds.create_world,
    c.UpdateWorld: worlds.update_world,
    c.DeleteWorld: worlds.delete_world,
    c.AddPolicy: policies.add_policy,
    c.SetDefaultPolicy: policies.set_default,
    c.AddBindings: worlds.add_bindings,
    c.SetDecisions: worlds.set_decisions,
    c.PutActivation: activation.put_activation,
    c.PutHistory: worlds.put_history,
    c.RecordRebalance: record_rebalance,
    c.PutNode: wvg.put_node,
    c.DeleteNode: wvg.delete_node,
    c.PutEdgeOverride: wvg.put_edge,
    c.StoreValidation: wvg.store_validation,
    c.LookupValidation: wvg.lookup_validation,
    c.DeleteValidation: wvg.delete_validation,
    c.Evaluate: evaluation.evaluate,
    c.EvaluateCohort: evaluation.evaluate_cohort,
    c.OverrideRun: evaluation.override_run,
    c.RecordExPostFailure: evaluation.record_ex_post_failure,
    c.ApprovePromotion: promotions.approve,
    c.RejectPromotion: promotions.reject,
    c.RunLiveMonitoring: live_monitoring.run_monitoring,
    c.RecordExtendedValidation: record_extended_validation,
}


def handle(state: WorldState, command: c.Command, now: datetime) -> Outcome:
    """Apply one mutation. Raises ``CommandRejected`` when a rule refuses it (state untouched)."""
    # While a run is open its freeze must hold: nothing else may rewrite the activation set or decisions;
    # nor the edge overrides, which Switch toggles and a rollback restores from what they were at Switch.
    running = state.open_run() if kind_of(command).blocked_during_apply else None
    if running is not None:
        raise conflict(f"apply in progress: run {running.run_id!r} is {running.phase}")
    return _MUTATIONS[type(command)](state, command, now)


def is_mutation(command: c.Command) -> bool:
    """Served as a change of the world (declared a mutation or internal), not as a read."""
    return kind_of(command).changes_world


def _state_hash(state: WorldState) -> StateHashOut:
    require_world(state)
    return StateHashOut(state_hash=activation.state_hash(state.activation_counter, state.activation))


def _decide(state: WorldState, q: c.Decide, now: datetime) -> Outcome:
    """A read that writes only when the reference path's remembered answer changes (rarely): that memory
    decides its hysteresis, so it must survive a restart like any other decision state."""
    require_world(state)
    refuse_future("as_of", q.as_of, now)
    envelope, record, ttl = decide(state, q.as_of, now)
    if record == state.decision:
        return Outcome(state=state, effects=[], reply=(envelope, ttl))
    return Outcome(state=msgspec.structs.replace(state, decision=record), effects=[SaveDecision(record=record)],
                   reply=(envelope, ttl))


_READS: dict[type, Callable[[WorldState, Any, datetime], Any]] = {
    c.GetWorld: lambda s, q, now: require_world(s),
    c.DescribeWorld: lambda s, q, now: worlds.describe(s),
    c.ListPolicies: lambda s, q, now: (require_world(s), [PolicyVersionRef(v) for v in sorted(s.policies)])[1],
    c.GetPolicy: lambda s, q, now: policies.get_policy(s, q.version),
    c.GetPolicyInfo: lambda s, q, now: policies.policy_info(s, q.version),
    c.GetBindings: lambda s, q, now: worlds.bindings_out(s, q.strategy_id),
    c.GetDecisions: lambda s, q, now: (require_world(s), StrategiesOut(strategies=list(s.decisions)))[1],
    c.GetActivation: lambda s, q, now: activation.get_activation(s, q.strategy_id, q.side),
    c.GetActivationSet: lambda s, q, now: activation.activation_set(s),
    c.GetStateHash: lambda s, q, now: _state_hash(s),
    c.GetHistory: lambda s, q, now: worlds.history_out(s),
    c.GetApplyRun: lambda s, q, now: apply_answers.run_out(s, q.run_id),
    c.ListNodes: wvg.list_nodes,
    c.GetNode: wvg.get_node,
    c.ListEdgeOverrides: wvg.list_edges,
    c.ListRuns: evaluation.list_runs,
    c.GetRun: evaluation.get_run,
    c.GetRunMetrics: evaluation.get_run_metrics,
    c.GetRunHistory: evaluation.get_run_history,
    c.GetPromotionPlan: promotions.plan_out,
    c.ListPromotionCandidates: promotions.candidates_out,
    c.GetValidationInvariants: invariants.validation_invariants,
    c.GetCampaignStatus: campaigns.campaign_status,
    c.CampaignTick: campaigns.campaign_tick,
    c.GetLiveMonitoringReport: live_monitoring.report,
}


def answer(state: WorldState, query: c.Command, now: datetime) -> Outcome:
    """Answer a read from memory. ``decide`` also remembers its decision (the hysteresis input)."""
    if isinstance(query, c.Decide):
        return _decide(state, query, now)
    return Outcome(state=state, effects=[], reply=_READS[type(query)](state, query, now))


# What ``domain`` serves; the actors serve the rest (apply runs, storage reads, the allocation hold) and a
# test checks that every declared kind has exactly one server.
DOMAIN_KINDS = frozenset(_MUTATIONS) | frozenset(_READS) | {c.Decide}


def _check_registrations() -> None:
    for kind in _MUTATIONS:
        if not kind_of(kind).changes_world:
            raise TypeError(f"{kind.__name__} is declared a query but registered as a mutation")
    for kind in (*_READS, c.Decide):
        if kind_of(kind).changes_world:
            raise TypeError(f"{kind.__name__} is declared a mutation but registered as a read")


_check_registrations()
