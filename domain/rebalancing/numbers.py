"""Float helpers shared by the rebalancing math: order-independent sums, means and lot rounding."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

# A quotient this close below a whole number of lots is that number: float noise such as
# 0.30000000000000004 / 0.1 -> 2.9999999999999996 must not drop a whole lot. The absolute part covers
# ordinary sizes, the relative part the last bits of very large quotients.
LOT_SNAP_ABS = 1e-9
LOT_SNAP_REL = 1e-12


def fsum(values: Iterable[float]) -> float:
    """Correctly rounded sum, hence independent of the order positions arrive in. An overflow (or inf-inf)
    becomes NaN so that the plan's final finiteness check turns it into a 422 instead of a 500."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        return math.nan


def mean(values: list[float]) -> float:
    return fsum(values) / len(values)


def round_to_lot(qty: float, lot: float | None) -> float:
    """Round ``qty`` toward zero to a whole number of lots; no lot, or a lot <= 0, leaves it unchanged
    (as the reference does).

    The result is ``n x lot`` computed in decimal from the lot's shortest repr, so 3 lots of 0.1 are exactly
    0.3 (not 0.30000000000000004) and every delta is an exact multiple of the lot as written. Because of
    the snap tolerance the result may exceed ``|qty|`` by at most ``(LOT_SNAP_ABS + q x LOT_SNAP_REL)`` lots,
    where ``q = |qty| / lot``; it never exceeds it by more.
    """
    if lot is None or not lot > 0 or not math.isfinite(qty):
        return qty
    quotient = abs(qty) / lot
    if not math.isfinite(quotient):
        return qty
    lots = math.floor(quotient + LOT_SNAP_ABS + quotient * LOT_SNAP_REL)
    if lots == 0:
        return 0.0
    return math.copysign(float(lots * Decimal(repr(lot))), qty)


def finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0
