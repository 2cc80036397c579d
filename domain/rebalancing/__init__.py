"""Multi-world allocation and rebalancing as pure functions (reference §1.5, §1.6, §6).

- ``scaling``: the proportional rebalancer (per-world plans), ``netting``: global deltas across worlds,
  ``overlay``: overlay-mode hedge deltas, ``alpha``: the v2 ``alpha_performance`` metrics,
  ``contract``: mode checks, schema negotiation and the v1/v2 answer, ``allocations``: ``POST /allocations``
  validation, etag, replay rules and planning against stored allocations.

Every refusal is a ``messages.errors.CommandRejected`` naming what happened (its ``Refusal``, which the edge
maps to the reference's status) with the reference's detail.
"""

from domain.rebalancing.allocations import (
    EMPTY_ALLOCATIONS_DETAIL,
    ETAG_MISMATCH_DETAIL,
    RUN_CONFLICT_DETAIL,
    SNAPSHOT_TTL,
    allocation_etag,
    allocation_waves,
    allocation_rebalance_request,
    allocation_response,
    allocation_snapshot,
    check_replay,
    plan_allocation,
    touched_worlds,
    validate_allocations,
)
from domain.rebalancing.alpha import PERIODS_PER_YEAR, alpha_metrics, default_metrics, performance_metrics
from domain.rebalancing.contract import (
    HYBRID_DETAIL,
    V2_REQUIRED_DETAIL,
    RebalancePlan,
    compute_plan,
    max_supported_version,
    negotiate,
    plan_rebalance,
    plan_response,
    reject_hybrid,
)
from domain.rebalancing.netting import net_globally
from domain.rebalancing.numbers import round_to_lot
from domain.rebalancing.overlay import OVERLAY_REQUIRED_DETAIL, plan_overlay, validate_overlay
from domain.rebalancing.scaling import OVERFLOW_DETAIL, plan_scaling, plan_world, strategy_scale, world_scale

__all__ = [
    "EMPTY_ALLOCATIONS_DETAIL", "ETAG_MISMATCH_DETAIL", "HYBRID_DETAIL", "OVERFLOW_DETAIL",
    "OVERLAY_REQUIRED_DETAIL", "PERIODS_PER_YEAR", "RUN_CONFLICT_DETAIL", "SNAPSHOT_TTL",
    "V2_REQUIRED_DETAIL", "RebalancePlan", "allocation_etag", "allocation_rebalance_request", "allocation_waves",
    "allocation_response", "allocation_snapshot", "alpha_metrics", "check_replay", "compute_plan",
    "default_metrics", "max_supported_version", "negotiate", "net_globally", "performance_metrics",
    "plan_allocation", "plan_overlay", "plan_rebalance", "plan_response", "plan_scaling", "plan_world",
    "reject_hybrid", "round_to_lot", "strategy_scale", "touched_worlds", "validate_allocations",
    "validate_overlay", "world_scale",
]
