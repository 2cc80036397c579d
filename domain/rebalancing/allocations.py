"""``POST /allocations`` as pure functions (reference §1.5, §6.7): validation, the content etag, the
replay rules, and the plan computed against the stored allocations.

Deliberate differences from the reference:

- the plan only covers the worlds the request allocates: positions of any other world are left out. The
  reference plans them too with before = after = 0, i.e. scale 0, and so emits liquidation deltas (and
  events) for worlds the request never mentioned;
- an overlay config is validated up front, before the run lookup, so a bad config is a 422 whatever state
  the run is in;
- a client ``etag`` is compared with the stored run's (the reference accepts it and never compares it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from domain.hashing import blake3_hex, canonical_json
from domain.rebalancing.contract import compute_plan, plan_response, reject_hybrid
from domain.rebalancing.overlay import validate_overlay
from domain.timefmt import parse_iso
from messages.errors import conflict, unprocessable
from messages.rebalancing import (
    AllocationUpsertRequest,
    AllocationUpsertResponse,
    MultiWorldRebalanceRequest,
    MultiWorldRebalanceResponse,
    WorldAllocationSnapshot,
)

EMPTY_ALLOCATIONS_DETAIL = "world_allocations cannot be empty"
RUN_CONFLICT_DETAIL = "run_id already used with a different payload"
ETAG_MISMATCH_DETAIL = "etag does not match the stored etag of this run_id"
SNAPSHOT_TTL = timedelta(seconds=300)
# The fields that identify or steer a run rather than describe its content (reference §6.7 step 2).
_NOT_CONTENT = ("run_id", "execute", "etag")


def validate_allocations(request: AllocationUpsertRequest) -> None:
    """422 for no worlds or a ratio outside [0, 1] (ids sorted), 501 for hybrid, 422 for overlay mode
    without a usable overlay config."""
    if not request.world_allocations:
        raise unprocessable(EMPTY_ALLOCATIONS_DETAIL)
    invalid = sorted(wid for wid, ratio in request.world_allocations.items() if not 0.0 <= ratio <= 1.0)
    if invalid:
        raise unprocessable(f"Allocation ratios must be between 0 and 1: {', '.join(invalid)}")
    reject_hybrid(request.mode)
    if request.mode == "overlay":
        validate_overlay(request.overlay, request.world_allocations)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def allocation_etag(request: AllocationUpsertRequest) -> str:
    """``blake3:<hex>`` of the canonical JSON of the request without run_id/execute/etag and without null
    values: identical content under another run_id has the same etag."""
    document = msgspec.to_builtins(request)
    for field in _NOT_CONTENT:
        document.pop(field, None)
    return blake3_hex(canonical_json(_without_nulls(document)))


def check_replay(request: AllocationUpsertRequest, etag: str, stored_etag: str) -> None:
    """For a run_id already stored: 409 when the content differs, or when the client's ``etag`` is not
    the stored one."""
    if etag != stored_etag:
        raise conflict(RUN_CONFLICT_DETAIL)
    if request.etag is not None and request.etag != stored_etag:
        raise conflict(ETAG_MISMATCH_DETAIL)


def touched_worlds(request: AllocationUpsertRequest) -> list[str]:
    """The worlds an upsert changes, in the order their locks must be taken."""
    return sorted(request.world_allocations)


def allocation_waves(runs: Sequence[tuple[str, Sequence[str]]]) -> list[list[int]]:
    """Queued runs, given as ``(run_id, worlds)`` in arrival order, into waves of their indices: each run
    goes one wave after the latest earlier run it shares a world or its run id with, so a wave's runs are
    disjoint (they can share a commit) and overlapping runs keep their order."""
    last_wave: dict[tuple[str, str], int] = {}  # ("world" | "run", id) -> the latest wave that has it
    waves: list[list[int]] = []
    for index, (run_id, worlds) in enumerate(runs):
        keys = [("world", w) for w in worlds] + [("run", run_id)]
        wave = max((last_wave[k] + 1 for k in keys if k in last_wave), default=0)
        if wave == len(waves):
            waves.append([])
        waves[wave].append(index)
        last_wave.update(dict.fromkeys(keys, wave))
    return waves


def _strategy_before(request: AllocationUpsertRequest, worlds: list[str],
                     stored: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Stored strategy totals of the touched worlds, replaced world by world by the request's."""
    merged = {wid: dict(sorted(stored[wid].items())) for wid in worlds if stored.get(wid)}
    merged.update(request.strategy_alloc_before_total or {})
    return {wid: merged[wid] for wid in sorted(merged)}


def allocation_rebalance_request(request: AllocationUpsertRequest, stored_allocations: Mapping[str, float],
                                 stored_strategy_totals: Mapping[str, Mapping[str, float]],
                                 ) -> MultiWorldRebalanceRequest:
    """The normalised rebalance request of an upsert: stored allocations before (0.0 when none), the
    request's after; this is also the snapshot an executor receives."""
    worlds = touched_worlds(request)
    strategy_before = _strategy_before(request, worlds, stored_strategy_totals)
    return MultiWorldRebalanceRequest(
        total_equity=request.total_equity,
        world_alloc_before={wid: float(stored_allocations.get(wid, 0.0)) for wid in worlds},
        world_alloc_after={wid: request.world_allocations[wid] for wid in worlds},
        positions=[p for p in request.positions if p.world_id in request.world_allocations],
        strategy_alloc_before_total=strategy_before or None,
        strategy_alloc_after_total=request.strategy_alloc_after_total,
        min_trade_notional=request.min_trade_notional, lot_size_by_symbol=request.lot_size_by_symbol,
        mode=request.mode, overlay=request.overlay, schema_version=1)


def plan_allocation(request: AllocationUpsertRequest, stored_allocations: Mapping[str, float],
                    stored_strategy_totals: Mapping[str, Mapping[str, float]],
                    ) -> tuple[MultiWorldRebalanceRequest, MultiWorldRebalanceResponse]:
    """Validate, then plan an upsert against the stored state: ``(executor snapshot, v1 plan)``. The route
    is fixed at schema v1, as in the reference: no alpha metrics, no intent."""
    validate_allocations(request)
    normalized = allocation_rebalance_request(request, stored_allocations, stored_strategy_totals)
    return normalized, plan_response(normalized, compute_plan(normalized), 1)


def allocation_response(plan: MultiWorldRebalanceResponse, *, run_id: str, etag: str, executed: bool,
                        execution_response: Any = None) -> AllocationUpsertResponse:
    """The plan in the route's encoding (every null spelled out, deltas included), plus the run's identity."""
    plan_fields = {name: getattr(plan, name) for name in ("schema_version", "per_world", "global_deltas",
                                                          "overlay_deltas")}
    return msgspec.convert({**msgspec.to_builtins(plan_fields), "run_id": run_id, "etag": etag,
                            "executed": executed, "execution_response": execution_response},
                           AllocationUpsertResponse)


def _is_stale(updated_at: str | None, now: datetime) -> bool:
    """Older than the TTL; a missing or unparsable stamp counts as stale (reference §1.5)."""
    try:
        return updated_at is None or now - parse_iso(updated_at) > SNAPSHOT_TTL
    except ValueError:
        return True


def allocation_snapshot(world_id: str, allocation: float, *, now: datetime, run_id: str | None = None,
                        etag: str | None = None, strategy_alloc_total: Mapping[str, float] | None = None,
                        updated_at: str | None = None) -> WorldAllocationSnapshot:
    """One ``GET /allocations`` entry; ``now`` is passed in because domain code never reads the clock."""
    return WorldAllocationSnapshot(
        world_id=world_id, allocation=allocation, run_id=run_id, etag=etag,
        strategy_alloc_total=None if strategy_alloc_total is None else dict(strategy_alloc_total),
        updated_at=updated_at, ttl=f"{int(SNAPSHOT_TTL.total_seconds())}s", stale=_is_stale(updated_at, now))
