"""Global netting of the per-world deltas across worlds (reference §6.2 step 7, plus lot rounding).

For each ``(venue, symbol)`` the worlds' already rounded deltas are converted back to notional with each
world's own mean positive mark, summed, divided by the mean of those world marks, and then - unlike the
reference, which leaves the global quantity unrounded - rounded toward zero to the symbol's lot, so a
shared-account executor can send the netted order as is. ``min_trade_notional`` applies to the net
notional, and a net that rounds to zero is dropped.

The netted quantity differs from the sum of the worlds' quantities only through the mark averaging and
this last rounding: its notional is within one lot (times the mean mark) of the worlds' summed notional.
"""

from __future__ import annotations

from collections.abc import Mapping

from domain.rebalancing.numbers import fsum, mean, round_to_lot
from messages.rebalancing import SymbolDelta, WorldPlan

DeltaKey = tuple[str | None, str]  # (venue, symbol)


def delta_order(key: DeltaKey) -> tuple[bool, str, str]:
    """Deltas are listed by venue (no venue first), then symbol, whatever order positions came in."""
    venue, symbol = key
    return venue is not None, venue or "", symbol


def _net_delta(key: DeltaKey, notionals: list[float], marks: list[float], min_notional: float,
               lots: Mapping[str, float]) -> SymbolDelta | None:
    venue, symbol = key
    net = fsum(notionals)
    if abs(net) < min_notional:
        return None
    qty = round_to_lot(net / mean(marks), lots.get(symbol))
    return None if qty == 0 else SymbolDelta(symbol=symbol, delta_qty=qty, venue=venue)


def net_globally(per_world: Mapping[str, WorldPlan], marks_by_world: Mapping[str, Mapping[DeltaKey, float]],
                 min_notional: float, lots: Mapping[str, float]) -> list[SymbolDelta]:
    """Net every world's deltas per ``(venue, symbol)``; ``marks_by_world[w][key]`` is world w's mean
    positive mark for the key (always present: a world only emits a delta for a key that has one)."""
    notionals: dict[DeltaKey, list[float]] = {}
    marks: dict[DeltaKey, list[float]] = {}
    for world_id in sorted(per_world):
        for delta in per_world[world_id].deltas:
            key = (delta.venue, delta.symbol)
            mark = marks_by_world[world_id][key]
            notionals.setdefault(key, []).append(delta.delta_qty * mark)
            marks.setdefault(key, []).append(mark)
    netted = (_net_delta(key, notionals[key], marks[key], min_notional, lots)
              for key in sorted(notionals, key=delta_order))
    return [delta for delta in netted if delta is not None]
