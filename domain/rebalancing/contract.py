"""The rebalancing contract: mode checks, schema-version negotiation and the v1/v2 answer (reference §6.5).

Checks run in the reference's order: hybrid mode (501) and the ``alpha_metrics_required`` rule (400)
before any planning, overlay configuration errors (422) while planning.

In overlay mode the answer carries the scaling plan (``per_world``, ``global_deltas``) *and*
``overlay_deltas``, with each world's overlay scale taken from its scaling plan: that is what seed 003 §5-B
specifies and what the reference's ``/allocations`` does. (The probed reference ``/rebalancing/plan``
returns empty ``per_world``/``global_deltas`` in overlay mode; consumers in overlay mode must execute the
overlay deltas only.)
"""

from __future__ import annotations

import msgspec

from domain.rebalancing.alpha import alpha_metrics
from domain.rebalancing.overlay import plan_overlay
from domain.rebalancing.scaling import plan_scaling
from messages.errors import CommandRejected, Refusal
from messages.rebalancing import (
    MultiWorldRebalanceRequest,
    MultiWorldRebalanceResponse,
    RebalanceIntent,
    SymbolDelta,
    WorldPlan,
)

HYBRID_DETAIL = "Hybrid mode is not implemented yet. Use mode='scaling' or 'overlay'."
V2_REQUIRED_DETAIL = "schema_version>=2 required when alpha_metrics_required is enabled"


class RebalancePlan(msgspec.Struct, kw_only=True):
    """A computed plan before it is shaped for a schema version."""

    per_world: dict[str, WorldPlan]
    global_deltas: list[SymbolDelta]
    overlay_deltas: list[SymbolDelta] | None = None


def reject_hybrid(mode: str) -> None:
    if mode.lower() == "hybrid":
        raise CommandRejected(Refusal.NOT_IMPLEMENTED, HYBRID_DETAIL)


def max_supported_version(compat_rebalance_v2: bool) -> int:
    return 2 if compat_rebalance_v2 else 1


def negotiate(requested: int | None, compat_rebalance_v2: bool, alpha_metrics_required: bool) -> int:
    """The schema version to answer with: ``min(max(requested or 1, 1), supported)``, a silent downgrade.

    With ``alpha_metrics_required`` a request without ``schema_version >= 2`` is refused (400) before any
    planning. As in the reference, a v2 request under ``alpha_metrics_required`` but without
    ``compat_rebalance_v2`` is accepted and answered as v1.
    """
    if alpha_metrics_required and (requested or 1) < 2:
        raise CommandRejected(Refusal.INVALID, V2_REQUIRED_DETAIL)
    return min(max(requested or 1, 1), max_supported_version(compat_rebalance_v2))


def compute_plan(request: MultiWorldRebalanceRequest) -> RebalancePlan:
    """Scaling plan, plus overlay deltas in overlay mode; 501 for hybrid, 422 for a bad overlay config."""
    reject_hybrid(request.mode)
    per_world, global_deltas = plan_scaling(request)
    overlay_deltas = None
    if request.mode == "overlay":
        overlay_deltas = plan_overlay(request, {wid: plan.scale_world for wid, plan in per_world.items()})
    return RebalancePlan(per_world=per_world, global_deltas=global_deltas, overlay_deltas=overlay_deltas)


def plan_response(request: MultiWorldRebalanceRequest, plan: RebalancePlan,
                  version: int) -> MultiWorldRebalanceResponse:
    """Shape ``plan`` for ``version``: v2 always carries ``alpha_metrics`` (computed from the request's
    return series) and ``rebalance_intent`` (the request's, or ``{"meta": {}}``); v1 carries neither."""
    response = MultiWorldRebalanceResponse(schema_version=version, per_world=plan.per_world,
                                           global_deltas=plan.global_deltas,
                                           overlay_deltas=plan.overlay_deltas)
    if version >= 2:
        response.alpha_metrics = alpha_metrics(plan.per_world, request.realized_returns_by_world,
                                               request.realized_returns_by_strategy)
        response.rebalance_intent = request.rebalance_intent or RebalanceIntent()
    return response


def plan_rebalance(request: MultiWorldRebalanceRequest, *, compat_rebalance_v2: bool = False,
                   alpha_metrics_required: bool = False) -> MultiWorldRebalanceResponse:
    """``POST /rebalancing/plan`` (and the computing half of ``/apply``) as one pure function."""
    reject_hybrid(request.mode)
    version = negotiate(request.schema_version, compat_rebalance_v2, alpha_metrics_required)
    return plan_response(request, compute_plan(request), version)
