"""Allocation and multi-world rebalancing messages (reference §1.5, §1.6, §6).

Every number a client sends is finite: JSON cannot spell NaN and msgspec refuses 1e400 when decoding, but
``msgspec.convert`` from Python objects (stored snapshots, YAML, tests) would accept ``nan``/``inf`` for a
plain ``float``. The ``Finite`` bound closes that path too, because NaN fails every comparison.

Allocation ratios in ``AllocationUpsertRequest.world_allocations`` are deliberately *not* range-checked
here: the reference answers ``422 Allocation ratios must be between 0 and 1: <ids>`` for them, and that
message is produced by ``domain.rebalancing.validate_allocations``. The other ratio maps are only required
to be finite, as in the reference (strategy ratios above 1 mean leverage, not an error).

Plan responses omit ``None`` fields when encoded (``omit_defaults``), as the reference's
``response_model_exclude_none`` does, so a v1 plan never carries ``alpha_metrics``/``rebalance_intent``;
fields that must always appear (``schema_version``, ``per_world``...) have no default and are never omitted.
``POST /allocations`` is the exception: the reference encodes its nulls, so ``AllocationUpsertResponse`` does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from messages.types import Finite, Identifier, WorldId

Ratio = Annotated[float, Meta(ge=0.0, le=1.0, description="fraction in [0, 1]")]
SchemaVersion = Annotated[int, Meta(ge=1, description="rebalance schema version (1 or 2)")]
RebalanceMode = Literal["scaling", "overlay", "hybrid"]

# {world_id: {strategy_id: ratio of total equity}}
StrategyTotals = dict[WorldId, dict[Identifier, Finite]]
ALPHA_METRIC_NAMES = ("sharpe", "max_drawdown", "win_ratio", "profit_factor", "car_mdd", "rar_mdd")
ALPHA_METRIC_KEYS = tuple(f"alpha_performance.{name}" for name in ALPHA_METRIC_NAMES)


class PositionSlice(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One strategy's holding of one symbol in one world; ``qty`` is signed, notional = qty x mark."""

    world_id: WorldId
    strategy_id: Identifier
    symbol: Identifier
    qty: Finite
    mark: Finite
    venue: Identifier | None = None


class SeamlessArtifact(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Carried by the overlay config for provenance only; nothing reads it."""

    dataset_fingerprint: str | None = None
    as_of: str | None = None
    rows: int | None = None
    uri: str | None = None


class OverlayConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Overlay mode: one hedge instrument per world, priced by ``price_by_symbol`` (reference §6.4).
    ``execution_domain``, ``updated_at`` and ``artifact`` are accepted as the reference does and unused."""

    instrument_by_world: dict[WorldId, Identifier] | None = None
    price_by_symbol: dict[Identifier, Finite] | None = None
    min_order_notional: Finite | None = None
    execution_domain: str | None = None
    updated_at: str | None = None
    artifact: SeamlessArtifact | None = None


class RebalanceIntent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Why a rebalance was triggered; echoed verbatim in v2 answers (``{"meta": {}}`` when absent)."""

    meta: dict[str, Any] = {}


class MultiWorldRebalanceRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /rebalancing/plan`` and ``/rebalancing/apply`` (reference §1.6).

    ``realized_returns_by_world`` keeps the reference's open shape (``{world_id: anything}``, the Gateway
    relays Risk Hub payloads through it); a world whose value is a list of finite numbers is read as that
    world's per-period return series for the v2 alpha metrics, any other value is ignored.
    ``realized_returns_by_strategy`` (``{strategy_id: {world_id: [returns]}}``, the shape of the metrics
    envelope's ``per_strategy``) is this daemon's addition: the seeds name no field for per-strategy returns.
    ``stress_by_world`` is accepted and unused, as in the reference.
    """

    total_equity: Finite
    world_alloc_before: dict[WorldId, Finite]
    world_alloc_after: dict[WorldId, Finite]
    positions: list[PositionSlice]
    strategy_alloc_before_total: StrategyTotals | None = None
    strategy_alloc_after_total: StrategyTotals | None = None
    min_trade_notional: Finite | None = None
    lot_size_by_symbol: dict[Identifier, Finite] | None = None
    mode: RebalanceMode = "scaling"
    overlay: OverlayConfig | None = None
    schema_version: SchemaVersion | None = None
    rebalance_intent: RebalanceIntent | None = None
    realized_returns_by_world: dict[WorldId, Any] | None = None
    realized_returns_by_strategy: dict[Identifier, dict[WorldId, list[Finite]]] | None = None
    stress_by_world: dict[WorldId, Any] | None = None


class SymbolDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A signed quantity change of one symbol at one venue (``venue`` omitted when null, as the reference)."""

    symbol: str
    delta_qty: float
    venue: str | None = None


class WorldPlan(msgspec.Struct, kw_only=True):
    """One world's part of a plan: its scale, each strategy's scale and the netted, lot-rounded deltas."""

    world_id: str
    scale_world: float
    scale_by_strategy: dict[str, float]
    deltas: list[SymbolDelta]


class AlphaMetricsEnvelope(msgspec.Struct, kw_only=True):
    """``per_world: {wid: {key: value}}``, ``per_strategy: {sid: {wid: {key: value}}}``; keys are
    ``alpha_performance.<metric>``. Both maps are always encoded, even empty, so parsers need no guards."""

    per_world: dict[str, dict[str, float]] = {}
    per_strategy: dict[str, dict[str, dict[str, float]]] = {}


class MultiWorldRebalanceResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The plan answer. ``overlay_deltas`` only in overlay mode; ``alpha_metrics`` and ``rebalance_intent``
    only (and always) in schema v2."""

    schema_version: int
    per_world: dict[str, WorldPlan]
    global_deltas: list[SymbolDelta]
    overlay_deltas: list[SymbolDelta] | None = None
    alpha_metrics: AlphaMetricsEnvelope | None = None
    rebalance_intent: RebalanceIntent | None = None


class AllocationUpsertRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /allocations`` (reference §1.5). ``etag``, when given, must match the stored run's."""

    run_id: Identifier
    total_equity: Finite
    world_allocations: dict[WorldId, Finite]
    positions: list[PositionSlice]
    strategy_alloc_after_total: StrategyTotals | None = None
    strategy_alloc_before_total: StrategyTotals | None = None
    min_trade_notional: Finite | None = None
    lot_size_by_symbol: dict[Identifier, Finite] | None = None
    execute: bool = False
    etag: str | None = None
    mode: RebalanceMode = "scaling"
    overlay: OverlayConfig | None = None


class AllocationDelta(msgspec.Struct, kw_only=True):
    """``SymbolDelta`` as ``POST /allocations`` encodes it: ``venue`` is null, not omitted, when unset."""

    symbol: str
    delta_qty: float
    venue: str | None = None


class AllocationWorldPlan(WorldPlan, kw_only=True):
    deltas: list[AllocationDelta]


class AllocationUpsertResponse(MultiWorldRebalanceResponse, kw_only=True, omit_defaults=False):
    """The v1 plan plus the run's identity. Unlike the plan answer, every field is encoded, null when unset
    (a delta's ``venue``; ``overlay_deltas`` outside overlay mode; ``alpha_metrics`` and ``rebalance_intent``
    always, since this route is fixed at v1; ``execution_response`` on a replay that did not execute), as the
    reference answers."""

    per_world: dict[str, AllocationWorldPlan]
    global_deltas: list[AllocationDelta]
    overlay_deltas: list[AllocationDelta] | None = None
    run_id: str
    etag: str
    executed: bool
    execution_response: Any


class WorldAllocationSnapshot(msgspec.Struct, kw_only=True):
    """``GET /allocations``: one world's latest allocation; ``stale`` when older than ``ttl``."""

    world_id: str
    allocation: float
    run_id: str | None = None
    etag: str | None = None
    strategy_alloc_total: dict[str, float] | None = None
    updated_at: str | None = None
    ttl: str | None = None
    stale: bool = False


class AllocationSnapshotResponse(msgspec.Struct, kw_only=True):
    allocations: dict[str, WorldAllocationSnapshot] = {}


class RebalanceNotice(msgspec.Struct, kw_only=True):
    """One world's share of a planned rebalance, to audit and announce (``rebalancing_planned``)."""

    plan: WorldPlan
    version: int
    alpha_metrics: dict[str, Any] | None = None
    rebalance_intent: RebalanceIntent | None = None
