"""Overlay mode (reference §6.4): leave the positions alone and hedge each world's exposure change with
one instrument per world.

For every world in ``world_alloc_after`` (in id order): its instrument and that instrument's price must
be configured (422 otherwise, with the reference's messages); with ``N_w`` the world's net notional and
``g_w`` its scale (``scale_by_world[w]`` when the caller has a scaling plan, else ``after / before``,
skipping worlds with no prior allocation), the overlay order is ``(g_w - 1) x N_w / price`` of the
instrument, skipped when ``N_w`` is 0 or the notional change is below ``overlay.min_order_notional``.
The quantity is not lot-rounded, as in the reference.

A negative price is refused too (the reference accepts it and silently inverts the hedge).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from domain.rebalancing.numbers import fsum
from domain.rebalancing.scaling import require_finite
from messages.errors import unprocessable
from messages.rebalancing import MultiWorldRebalanceRequest, OverlayConfig, PositionSlice, SymbolDelta

OVERLAY_REQUIRED_DETAIL = "overlay config is required when mode='overlay'"


def validate_overlay(overlay: OverlayConfig | None, world_ids: Iterable[str]) -> OverlayConfig:
    """Check the overlay config covers every world; returns it. Pure function of the request, so a caller
    can refuse a bad config before it reads or writes anything."""
    if overlay is None:
        raise unprocessable(OVERLAY_REQUIRED_DETAIL)
    if not overlay.instrument_by_world:
        raise unprocessable("overlay.instrument_by_world is required for overlay mode")
    if not overlay.price_by_symbol:
        raise unprocessable("overlay.price_by_symbol is required for overlay mode")
    for world_id in sorted(world_ids):
        _instrument_price(overlay, world_id)
    return overlay


def _instrument_price(overlay: OverlayConfig, world_id: str) -> tuple[str, float]:
    instrument = (overlay.instrument_by_world or {}).get(world_id)
    if instrument is None:
        raise unprocessable(f"overlay.instrument_by_world missing world '{world_id}'")
    price = (overlay.price_by_symbol or {}).get(instrument)
    if price is None or price == 0:
        raise unprocessable(f"overlay.price_by_symbol missing or zero for instrument '{instrument}'")
    if price < 0:
        raise unprocessable(f"overlay.price_by_symbol must be positive for instrument '{instrument}'")
    return instrument, price


def _world_notionals(positions: Iterable[PositionSlice]) -> dict[str, float]:
    by_world: dict[str, list[float]] = {}
    for position in positions:
        by_world.setdefault(position.world_id, []).append(position.qty * position.mark)
    return {world_id: fsum(values) for world_id, values in by_world.items()}


def _scale(request: MultiWorldRebalanceRequest, world_id: str,
           scale_by_world: Mapping[str, float]) -> float | None:
    scale = scale_by_world.get(world_id)
    if scale is not None:
        return scale
    before = request.world_alloc_before.get(world_id, 0.0)
    return request.world_alloc_after[world_id] / before if before > 0 else None


def _overlay_delta(request: MultiWorldRebalanceRequest, overlay: OverlayConfig, world_id: str,
                   notional: float, scale_by_world: Mapping[str, float]) -> SymbolDelta | None:
    instrument, price = _instrument_price(overlay, world_id)
    scale = _scale(request, world_id, scale_by_world)
    if notional == 0 or scale is None:
        return None
    change = (scale - 1.0) * notional
    if abs(change) < (overlay.min_order_notional or 0.0):
        return None
    return SymbolDelta(symbol=instrument, delta_qty=change / price, venue=None)


def plan_overlay(request: MultiWorldRebalanceRequest,
                 scale_by_world: Mapping[str, float] | None = None) -> list[SymbolDelta]:
    """Overlay deltas for ``request``; refuses a missing or unusable config as ``UNPROCESSABLE``."""
    overlay = validate_overlay(request.overlay, request.world_alloc_after)
    notionals = _world_notionals(request.positions)
    deltas = (_overlay_delta(request, overlay, world_id, notionals.get(world_id, 0.0), scale_by_world or {})
              for world_id in sorted(request.world_alloc_after))
    planned = [delta for delta in deltas if delta is not None]
    require_finite(delta.delta_qty for delta in planned)
    return planned
