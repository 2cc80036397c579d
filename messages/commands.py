"""Every message a world actor serves, as tagged unions (``kind`` is the tag).

Mutations arrive from HTTP, the Kafka command topic and the CLI in this shape; reads use the same path so
they are linearizable with the writes of their world. The split between what a caller may send
(``ExternalCommand``) and what only the daemon sends itself (``InternalCommand``), and the role each
external kind needs, are declared once here, on each Struct (``messages.kinds``), for every edge.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from messages.activation import ActivationRequest
from messages.command_base import Command
from messages.errors import Refusal
from messages.apply import ApplyRequest, CohortEvaluateRequest, EvaluateRequest
from messages.kinds import Role, declared, internal, mutation, query, union
from messages.evaluation import EvaluationOverride, ExPostFailureRecord
from messages.bindings import StrategiesRequest
from messages.rebalancing import AllocationUpsertRequest, RebalanceNotice
from messages.decisions import HistoryRequest
from messages.policies import PolicyRequest, SetDefaultRequest
from messages.risk_hub import (  # noqa: F401 - the hub's kinds, re-exported for every edge
    RISK_HUB_KINDS, LatestRiskSnapshot, ListRiskSnapshots, LookupRiskSnapshot, PushRiskSnapshot,
    RecordExtendedValidation, StoreRiskSnapshot,
)
from messages.promotions import LivePromotionApplyRequest, LivePromotionApproveRequest, LivePromotionRejectRequest
from messages.types import Identifier, PositiveVersion, Side
from messages.worlds import WorldCreate, WorldUpdate
from messages.wvg import (
    DomainText, EdgeOverrideUpsertRequest, ValidationContext, ValidationStoreRequest, WorldNodeUpsertRequest,
)

# The refusals a kind's rules answer with beyond the common ones (``messages.kinds.CommandKind.refusals``).
_UNPROCESSABLE, _CONFLICT, _FORBIDDEN = Refusal.UNPROCESSABLE, Refusal.CONFLICT, Refusal.FORBIDDEN_BY_POLICY
_PRECONDITION, _FAILED, _INVALID = Refusal.PRECONDITION_FAILED, Refusal.FAILED, Refusal.INVALID
_NOT_IMPLEMENTED, _UPSTREAM = Refusal.NOT_IMPLEMENTED, Refusal.UPSTREAM_FAILED


# --- mutations -------------------------------------------------------------------------------------


@mutation("owner", refusals=(_UNPROCESSABLE,), new_world=True)
class CreateWorld(Command, tag="create_world"):
    body: WorldCreate


@mutation("owner", refusals=(_UNPROCESSABLE,))
class UpdateWorld(Command, tag="update_world"):
    body: WorldUpdate


@mutation("owner", blocked_during_apply=True)
class DeleteWorld(Command, tag="delete_world"):
    force: bool = False


@mutation("owner", refusals=(_UNPROCESSABLE,))
class AddPolicy(Command, tag="add_policy"):
    body: PolicyRequest


@mutation("owner", refusals=(_UNPROCESSABLE,))
class SetDefaultPolicy(Command, tag="set_default_policy"):
    body: SetDefaultRequest


@mutation("owner")
class AddBindings(Command, tag="add_bindings"):
    body: StrategiesRequest


@mutation("owner", blocked_during_apply=True)
class SetDecisions(Command, tag="set_decisions"):
    body: StrategiesRequest


@mutation("operator", blocked_during_apply=True, refusals=(_UNPROCESSABLE, _PRECONDITION))
class PutActivation(Command, tag="put_activation"):
    body: ActivationRequest
    if_match: str | None = None  # optional precondition: the entry's current etag


@mutation("operator", refusals=(_UNPROCESSABLE,))
class PutHistory(Command, tag="put_history"):
    body: HistoryRequest


@mutation("operator", refusals=(_UNPROCESSABLE, _FAILED))
class StartApply(Command, tag="apply"):
    body: ApplyRequest


@mutation("operator", refusals=(_UNPROCESSABLE,))
class Evaluate(Command, tag="evaluate"):
    """Run the policy over the metrics and record the evaluation run it makes (reference §1.4)."""

    body: EvaluateRequest


@mutation("operator", refusals=(_UNPROCESSABLE,))
class EvaluateCohort(Command, tag="evaluate_cohort"):
    body: CohortEvaluateRequest


@mutation("owner", refusals=(_UNPROCESSABLE,))
class OverrideRun(Command, tag="override_run"):
    strategy_id: Identifier
    run_id: Identifier
    body: EvaluationOverride


@mutation("operator", refusals=(_UNPROCESSABLE,))
class RecordExPostFailure(Command, tag="record_ex_post_failure"):
    strategy_id: Identifier
    run_id: Identifier
    body: ExPostFailureRecord


@internal()
class AckActivation(Command, tag="ack_activation"):
    """A Gateway acknowledged one sequenced activation event of a run."""

    run_id: Identifier
    sequence: int
    phase: str


@internal()
class PhaseAcknowledged(Command, tag="phase_acknowledged"):
    """From the ACK intake to a world: every event of ``phase`` of run ``run_id`` is acknowledged and
    recorded, so the transitions waiting for it may go on."""

    run_id: str
    phase: str


@internal()
class ApplyTick(Command, tag="apply_tick"):
    """Timer: check a world's open run for ACK gap timeouts, its deadline and re-sends."""


@internal(role="operator", logged=True)
class RecordRebalance(Command, tag="record_rebalance"):
    """Audit and announce this world's share of a planned rebalance (``/rebalancing/apply``)."""

    body: RebalanceNotice


@mutation("operator", refusals=(_UNPROCESSABLE, _INVALID, _NOT_IMPLEMENTED, _UPSTREAM))
class UpsertAllocations(Command, tag="upsert_allocations"):
    """``POST /allocations``: a cross-world run (``world_id`` names its first world, for logs only)."""

    body: AllocationUpsertRequest


@internal()
class HoldForAllocation(Command, tag="hold_for_allocation"):
    """The allocation coordinator takes this world: it answers with its fence and defers everything else
    until the matching release."""

    run_id: Identifier


@internal()
class ReleaseAllocation(Command, tag="release_allocation"):
    run_id: Identifier
    row_version: int | None = None  # the world's fence after the run's commit; None when nothing was written


@internal()
class RefreshProjection(Command, tag="refresh_projection"):
    """Rewrite this world's activation projection from the actor's committed state (after a flush)."""


@mutation("operator", refusals=(_UNPROCESSABLE,))
class PutNode(Command, tag="put_node"):
    node_id: Identifier
    body: WorldNodeUpsertRequest


@mutation("operator", refusals=(_UNPROCESSABLE,))
class DeleteNode(Command, tag="delete_node"):
    node_id: Identifier
    execution_domain: DomainText | None = None  # none: backtest


@mutation("operator", blocked_during_apply=True, refusals=(_UNPROCESSABLE,))
class PutEdgeOverride(Command, tag="put_edge_override"):
    src_node_id: Identifier
    dst_node_id: Identifier
    body: EdgeOverrideUpsertRequest


@mutation("operator", refusals=(_UNPROCESSABLE,))
class StoreValidation(Command, tag="store_validation"):
    body: ValidationStoreRequest


@mutation("reader", refusals=(_UNPROCESSABLE,))  # a read for the caller, though a stale entry is evicted
class LookupValidation(Command, tag="lookup_validation"):
    """A mutation: a lookup under another context evicts the stale entry (it never writes otherwise)."""

    body: ValidationContext


@mutation("operator", refusals=(_UNPROCESSABLE,))
class DeleteValidation(Command, tag="delete_validation"):
    node_id: Identifier
    execution_domain: DomainText | None = None  # none: every domain of the node


# --- live promotions (reference §1.10) -------------------------------------------------------------
# Governed by ``governance.live_promotion`` of the world's default policy. Approve and reject record an
# override on the evaluation run (owners' verdict, like ``OverrideRun``); apply and auto-apply start an
# ordinary 2-phase apply of the run's active set to ``live`` through the world's own apply path and the
# default-safe rule (operators run the world); the plan and the candidates are reads.


@mutation("owner", refusals=(_UNPROCESSABLE, _FORBIDDEN))
class ApprovePromotion(Command, tag="approve_live_promotion"):
    body: LivePromotionApproveRequest


@mutation("owner", refusals=(_UNPROCESSABLE, _FORBIDDEN))
class RejectPromotion(Command, tag="reject_live_promotion"):
    body: LivePromotionRejectRequest


@mutation("operator", refusals=(_UNPROCESSABLE, _FAILED))
class ApplyPromotion(Command, tag="apply_live_promotion"):
    body: LivePromotionApplyRequest


@mutation("operator", refusals=(_UNPROCESSABLE, _FAILED))
class AutoApplyPromotion(Command, tag="auto_apply_live_promotion"):
    """Promote the freshest paper run, when the policy's mode is ``auto_apply`` and every gate passes."""


@query(refusals=(_UNPROCESSABLE,))
class GetPromotionPlan(Command, tag="get_live_promotion_plan"):
    strategy_id: Identifier
    run_id: Identifier


@query()
class ListPromotionCandidates(Command, tag="list_live_promotion_candidates"):
    limit: Annotated[int, Meta(ge=0, le=1000)] = 20  # 0: every candidate (the reference: any limit <= 0)
    include_plan: bool = False


# --- reads -----------------------------------------------------------------------------------------


@query()
class GetWorld(Command, tag="get_world"):
    pass


@query()
class DescribeWorld(Command, tag="describe_world"):
    pass


@query()
class ListPolicies(Command, tag="list_policies"):
    pass


@query()
class GetPolicy(Command, tag="get_policy"):
    version: PositiveVersion


@query()
class GetPolicyInfo(Command, tag="get_policy_info"):
    version: PositiveVersion


@query()
class GetBindings(Command, tag="get_bindings"):
    strategy_id: Identifier | None = None  # only this strategy (an empty list when it is not bound)


@query()
class GetDecisions(Command, tag="get_decisions"):
    pass


@query(refusals=(_UNPROCESSABLE,))
class Decide(Command, tag="decide"):
    as_of: str | None = None


@query()
class GetActivation(Command, tag="get_activation"):
    strategy_id: Identifier
    side: Side


@query()
class GetActivationSet(Command, tag="get_activation_set"):
    """The whole activation set with its state hash (a Gateway's reconcile after a gap)."""


@query()
class GetStateHash(Command, tag="get_state_hash"):
    pass


@query()
class GetHistory(Command, tag="get_history"):
    pass


@query()
class GetApplyRun(Command, tag="get_apply_run"):
    run_id: Identifier


@query()
class GetAudit(Command, tag="get_audit"):
    after: Annotated[int, Meta(ge=0, le=2**63 - 1)] = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


@query()
class GetDecisionHistory(Command, tag="get_decision_history"):
    """The world's kept evaluations, newest first (read from SQL: older than what memory holds)."""

    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


@query(refusals=(_UNPROCESSABLE,))
class ListNodes(Command, tag="list_nodes"):
    execution_domain: DomainText | None = None  # none, "*" or "all": every domain


@query(refusals=(_UNPROCESSABLE,))
class GetNode(Command, tag="get_node"):
    node_id: Identifier
    execution_domain: DomainText | None = None  # none: backtest


@query()
class ListEdgeOverrides(Command, tag="list_edge_overrides"):
    pass


@query()
class ListRuns(Command, tag="list_runs"):
    strategy_id: Identifier


@query()
class GetRun(Command, tag="get_run"):
    strategy_id: Identifier
    run_id: Identifier


@query(refusals=(_CONFLICT,))
class GetRunMetrics(GetRun, tag="get_run_metrics"):
    """409 ``E_RUN_NOT_EVALUATED`` while the run has no metrics."""


@query()
class GetRunHistory(GetRun, tag="get_run_history"):
    pass


@query()
class GetValidationInvariants(Command, tag="get_validation_invariants"):
    """The world's validation invariants report (``strategy_id`` narrows the per-strategy lists)."""

    strategy_id: Identifier | None = None


# --- campaigns and live monitoring (reference §1.9, §1.11) ---------------------------------------------
# Status, tick and the report are reads (tick is a POST yet writes nothing: it only recommends steps).
# A monitoring run is a mutation of the world: it appends revisions to the world's live runs.


@query(refusals=(_UNPROCESSABLE,))
class GetCampaignStatus(Command, tag="get_campaign_status"):
    strategy_id: Identifier | None = None  # only this strategy's runs


@query(refusals=(_UNPROCESSABLE,))
class CampaignTick(Command, tag="campaign_tick"):
    strategy_id: Identifier | None = None


@query()
class GetLiveMonitoringReport(Command, tag="get_live_monitoring_report"):
    pass


@mutation("operator", refusals=(_UNPROCESSABLE,))
class RunLiveMonitoring(Command, tag="run_live_monitoring"):
    """Judge each strategy's latest live run by the default policy's ``live_monitoring`` guardrails; a run
    whose readings or verdict changed gets a new revision. ``run-all`` sends one per world."""


# --- Risk Signal Hub (reference §1.13): declared with their family in ``messages.risk_hub`` ------------
# (imported above, so the unions below include them).


# --- derived from the declarations above (``messages.kinds``) ---------------------------------------

Query = union("query")
ExternalMutation = union("mutation")
# Sent only by the daemon itself (timers, the ACK consumer, the allocation coordinator, the projection
# guard), or derived by the HTTP edge from a plan it computed (``/rebalancing/apply``'s per-world notice).
# No edge decodes them from a caller's bytes: whoever may produce to the command topic could otherwise
# tick runs, forge ACKs, hold worlds or announce rebalances nobody planned.
InternalCommand = union("internal")
ExternalCommand = union("mutation", "query")

external_command_decoder = msgspec.json.Decoder(ExternalCommand)

# The least role a caller needs on the command's world (for ``UpsertAllocations``: on every world of its
# body), the same for HTTP routes and the command topic. Owners change worlds, policies, bindings and
# decisions, and overrule a run's verdict; operators run the world (activation, apply, evaluations,
# evidence, nodes, edges, validations, allocations); readers read.
REQUIRED_ROLE: dict[type[Command], Role] = {k.type: k.role for k in declared() if k.role is not None}
# What a Gateway's service token may send whatever role it was given (``@mutation(..., service=True)``).
SERVICE_KINDS: frozenset[type[Command]] = frozenset(k.type for k in declared() if k.service)


def command_worlds(command: Command) -> list[str]:
    """The worlds a command acts on, each of which its sender needs the role on."""
    if isinstance(command, UpsertAllocations):
        return sorted(command.body.world_allocations)
    return [command.world_id]
