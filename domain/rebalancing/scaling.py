"""Scaling mode of the multi-world proportional rebalancer (reference §6.2), as pure functions.

Per world that holds positions:

1. strategy targets: ``before[s]`` from ``strategy_alloc_before_total[w]``, else inferred from exposure as
   ``sum(qty x mark of s) / D`` (``D`` = ``total_equity`` if > 0, else the world's total notional; all
   zero when that total is <= 0); ``after[s]`` from ``strategy_alloc_after_total[w]``, else
   ``before[s] x world_scale``;
2. world scale ``gw = after_w / before_w`` (1.0 when only ``after_w`` > 0, else 0.0; a missing ratio is 0);
3. strategy scales ``gs[s] = after[s] / before[s]``, or ``gw`` (``0.0`` when ``after_w`` <= 0) when
   ``before[s]`` <= 0;
4. each slice's change ``notional x gs.get(s, gw) - notional``, summed per ``(venue, symbol)``;
5. a change below ``min_trade_notional`` is dropped; the rest is divided by the mean of the world's
   positive marks for that ``(venue, symbol)`` (no positive mark: dropped), rounded toward zero to the
   symbol's lot, and dropped when it rounds to 0.

The effective scale of a slice is the strategy's own scale ``gs[s]``, falling back to ``gw`` only for a
strategy with no target. The reference's docstring and docs describe ``min(gw, gs)`` when downscaling and
``max(gw, gs)`` when upscaling, but its code applies ``gs`` directly; the issue asks to follow the code,
so a strategy whose share of total equity is unchanged is left alone even while its world shrinks.

Differences from the reference, all deliberate: sums are correctly rounded (``math.fsum``) and every map
and list is emitted in sorted order, so the plan does not depend on the order of ``positions``; lot
rounding is exact in decimal (see ``numbers.round_to_lot``); global netting rounds to the lot as well
(see ``netting``); a plan whose arithmetic overflowed is refused with a 422 instead of carrying inf/NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from domain.rebalancing.netting import DeltaKey, delta_order, net_globally
from domain.rebalancing.numbers import fsum, mean, round_to_lot
from messages.errors import unprocessable
from messages.rebalancing import MultiWorldRebalanceRequest, PositionSlice, SymbolDelta, WorldPlan

OVERFLOW_DETAIL = ("rebalance plan is not finite: allocation ratios, quantities or marks are too large "
                   "or too small to plan with")


def world_scale(before: float, after: float) -> float:
    """``after / before``; with no prior allocation, 1.0 (keep positions) if the world gets any, else 0.0."""
    if before > 0:
        return after / before
    return 1.0 if after > 0 else 0.0


def strategy_scale(before: float, after: float, scale_world: float, world_after: float) -> float:
    """``after / before``; a strategy with no prior share follows its world, or is closed with it."""
    if before > 0:
        return after / before
    return scale_world if world_after > 0 else 0.0


def group_by_world(positions: Iterable[PositionSlice]) -> dict[str, list[PositionSlice]]:
    grouped: dict[str, list[PositionSlice]] = {}
    for position in positions:
        grouped.setdefault(position.world_id, []).append(position)
    return {world_id: grouped[world_id] for world_id in sorted(grouped)}


def inferred_strategy_shares(slices: Sequence[PositionSlice], total_equity: float) -> dict[str, float]:
    """Each strategy's current exposure as a fraction of ``total_equity`` (or of the world's notional
    when equity is not positive); all zero when the world's net notional is not positive."""
    by_strategy: dict[str, list[float]] = {}
    for position in slices:
        by_strategy.setdefault(position.strategy_id, []).append(position.qty * position.mark)
    totals = {sid: fsum(by_strategy[sid]) for sid in sorted(by_strategy)}
    world_total = fsum(totals.values())
    if not world_total > 0:
        return dict.fromkeys(totals, 0.0)
    denominator = total_equity if total_equity > 0 else world_total
    return {sid: value / denominator for sid, value in totals.items()}


def strategy_targets(request: MultiWorldRebalanceRequest, world_id: str,
                     slices: Sequence[PositionSlice]) -> tuple[dict[str, float], dict[str, float]]:
    """``(before, after)`` strategy shares of total equity for one world: given, or inferred from exposure
    and cascaded from the world's scale ("scale-only")."""
    given_before = (request.strategy_alloc_before_total or {}).get(world_id)
    before = dict(given_before) if given_before is not None else inferred_strategy_shares(
        slices, request.total_equity)
    given_after = (request.strategy_alloc_after_total or {}).get(world_id)
    if given_after is not None:
        return before, dict(given_after)
    factor = world_scale(request.world_alloc_before.get(world_id, 0.0),
                         request.world_alloc_after.get(world_id, 0.0))
    return before, {sid: share * factor for sid, share in before.items()}


def _changes_and_marks(slices: Sequence[PositionSlice], scales: Mapping[str, float], scale_world: float,
                       ) -> tuple[dict[DeltaKey, float], dict[DeltaKey, float]]:
    """Net notional change and mean positive mark per ``(venue, symbol)``."""
    changes: dict[DeltaKey, list[float]] = {}
    marks: dict[DeltaKey, list[float]] = {}
    for position in slices:
        key = (position.venue, position.symbol)
        notional = position.qty * position.mark
        # target - notional, as the reference computes it (not notional x (g - 1), which rounds differently)
        scale = scales.get(position.strategy_id, scale_world)
        changes.setdefault(key, []).append(notional * scale - notional)
        if position.mark > 0:
            marks.setdefault(key, []).append(position.mark)
    return ({key: fsum(values) for key, values in changes.items()},
            {key: mean(values) for key, values in marks.items()})


def _symbol_delta(key: DeltaKey, change: float, mark: float | None, min_notional: float,
                  lots: Mapping[str, float]) -> SymbolDelta | None:
    venue, symbol = key
    if abs(change) < min_notional or mark is None:
        return None
    qty = round_to_lot(change / mark, lots.get(symbol))
    return None if qty == 0 else SymbolDelta(symbol=symbol, delta_qty=qty, venue=venue)


def plan_world(request: MultiWorldRebalanceRequest, world_id: str,
               slices: Sequence[PositionSlice]) -> tuple[WorldPlan, dict[DeltaKey, float]]:
    """One world's plan, plus the mean positive mark per ``(venue, symbol)`` that global netting reuses."""
    world_after = request.world_alloc_after.get(world_id, 0.0)
    scale_world = world_scale(request.world_alloc_before.get(world_id, 0.0), world_after)
    before, after = strategy_targets(request, world_id, slices)
    scales = {sid: strategy_scale(before.get(sid, 0.0), after[sid], scale_world, world_after)
              for sid in sorted(after)}
    changes, marks = _changes_and_marks(slices, scales, scale_world)
    min_notional = request.min_trade_notional or 0.0
    lots = request.lot_size_by_symbol or {}
    deltas = (_symbol_delta(key, changes[key], marks.get(key), min_notional, lots)
              for key in sorted(changes, key=delta_order))
    plan = WorldPlan(world_id=world_id, scale_world=scale_world, scale_by_strategy=scales,
                     deltas=[delta for delta in deltas if delta is not None])
    return plan, marks


def require_finite(values: Iterable[float]) -> None:
    """inf/NaN must never leave the daemon: an overflowed plan is the client's inputs' fault (422)."""
    if not all(math.isfinite(value) for value in values):
        raise unprocessable(OVERFLOW_DETAIL)


def _plan_numbers(per_world: Mapping[str, WorldPlan], global_deltas: list[SymbolDelta]) -> Iterable[float]:
    for plan in per_world.values():
        yield plan.scale_world
        yield from plan.scale_by_strategy.values()
        yield from (delta.delta_qty for delta in plan.deltas)
    yield from (delta.delta_qty for delta in global_deltas)


def plan_scaling(request: MultiWorldRebalanceRequest) -> tuple[dict[str, WorldPlan], list[SymbolDelta]]:
    """``(per_world, global_deltas)`` for the request's positions. Only worlds holding positions get a
    plan; worlds present only in the allocation maps produce nothing (as in the reference)."""
    per_world: dict[str, WorldPlan] = {}
    marks: dict[str, dict[DeltaKey, float]] = {}
    for world_id, slices in group_by_world(request.positions).items():
        per_world[world_id], marks[world_id] = plan_world(request, world_id, slices)
    global_deltas = net_globally(per_world, marks, request.min_trade_notional or 0.0,
                                 request.lot_size_by_symbol or {})
    require_finite(_plan_numbers(per_world, global_deltas))
    return per_world, global_deltas
