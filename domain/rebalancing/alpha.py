"""``alpha_performance`` metrics for schema-v2 rebalance answers (reference §6.5), computed for real.

The reference fills the envelope with 0.0 defaults only; here the six metrics are computed from the
per-period simple returns a request carries, and the 0.0 defaults are used only when no series is given.
Definitions, for returns ``r_1..r_n`` of ``PERIODS_PER_YEAR`` periods a year:

- ``sharpe``: ``mean(r) / stdev(r) x sqrt(PERIODS_PER_YEAR)``, sample standard deviation (n - 1),
  no risk-free rate; 0.0 with fewer than two periods or no variation.
- ``max_drawdown``: the largest fall from a running peak of the compounded equity curve
  ``E_0 = 1, E_t = E_{t-1} x (1 + r_t)``, as a positive fraction of that peak, in [0, 1]. A curve that
  reaches 0 (a return of -100% or worse) is ruined and stays at 0.
- ``win_ratio``: periods with ``r > 0`` over periods with ``r != 0``; 0.0 when every return is 0.
- ``profit_factor``: ``sum(r > 0) / |sum(r < 0)|``; 0.0 when there is no losing period (undefined).
- ``car_mdd``: ``CAGR / max_drawdown`` with ``CAGR = E_n ^ (PERIODS_PER_YEAR / n) - 1``; 0.0 when the
  drawdown is 0.
- ``rar_mdd``: ``annualized return / max_drawdown`` with the arithmetic annualized return
  ``mean(r) x PERIODS_PER_YEAR``; 0.0 when the drawdown is 0.

A value that cannot be represented as a finite float (for example a CAGR overflowing on absurd returns) is
reported as 0.0 like any other undefined value: NaN and inf never leave the daemon.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from domain.rebalancing.numbers import finite_or_zero, fsum
from messages.rebalancing import ALPHA_METRIC_KEYS, ALPHA_METRIC_NAMES, AlphaMetricsEnvelope, WorldPlan

PERIODS_PER_YEAR = 252


def default_metrics() -> dict[str, float]:
    return dict.fromkeys(ALPHA_METRIC_KEYS, 0.0)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else 0.0


def sharpe(returns: Sequence[float]) -> float:
    if len(returns) < 2:
        return 0.0
    average = fsum(returns) / len(returns)
    # a product, not ** 2: float pow raises OverflowError where multiplication gives inf
    variance = fsum((r - average) * (r - average) for r in returns) / (len(returns) - 1)
    return _ratio(average, math.sqrt(variance)) * math.sqrt(PERIODS_PER_YEAR)


def equity_curve(returns: Iterable[float]) -> list[float]:
    equity, curve = 1.0, [1.0]
    for r in returns:
        equity = max(equity * (1.0 + r), 0.0) if equity > 0 else 0.0
        curve.append(equity)
    return curve


def max_drawdown(curve: Sequence[float]) -> float:
    peak, worst = curve[0], 0.0
    for equity in curve:
        peak = max(peak, equity)
        worst = max(worst, (peak - equity) / peak)
    return worst


def win_ratio(returns: Sequence[float]) -> float:
    traded = [r for r in returns if r != 0]
    return _ratio(sum(1 for r in traded if r > 0), len(traded))


def profit_factor(returns: Sequence[float]) -> float:
    gains = fsum(r for r in returns if r > 0)
    losses = -fsum(r for r in returns if r < 0)
    return _ratio(gains, losses)


def cagr(final_equity: float, periods: int) -> float:
    try:
        return final_equity ** (PERIODS_PER_YEAR / periods) - 1.0
    except OverflowError:
        return math.inf


def performance_metrics(returns: Sequence[float]) -> dict[str, float]:
    """The six ``alpha_performance.<metric>`` values of one return series (defaults when it is empty)."""
    if not returns:
        return default_metrics()
    curve = equity_curve(returns)
    drawdown = max_drawdown(curve)
    values = (sharpe(returns), drawdown, win_ratio(returns), profit_factor(returns),
              _ratio(cagr(curve[-1], len(returns)), drawdown),
              _ratio(fsum(returns) / len(returns) * PERIODS_PER_YEAR, drawdown))
    return {f"alpha_performance.{name}": finite_or_zero(value)
            for name, value in zip(ALPHA_METRIC_NAMES, values, strict=True)}


def return_series(raw: Any) -> tuple[float, ...] | None:
    """A list of finite numbers is a return series; anything else (the reference's open ``dict`` shape
    lets the Gateway relay other Risk Hub payloads) is no data."""
    if not isinstance(raw, (list, tuple)):
        return None
    if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in raw):
        return None
    series = tuple(float(r) for r in raw)
    return series if all(math.isfinite(r) for r in series) else None


def _series_by_world(returns_by_world: Mapping[str, Any] | None) -> dict[str, tuple[float, ...]]:
    parsed = {world_id: return_series(raw) for world_id, raw in (returns_by_world or {}).items()}
    return {world_id: series for world_id, series in parsed.items() if series is not None}


def _series_by_pair(returns_by_strategy: Mapping[str, Mapping[str, Any]] | None,
                    ) -> dict[tuple[str, str], tuple[float, ...]]:
    parsed = {(sid, world_id): return_series(raw)
              for sid, by_world in (returns_by_strategy or {}).items() for world_id, raw in by_world.items()}
    return {pair: series for pair, series in parsed.items() if series is not None}


def alpha_metrics(per_world: Mapping[str, WorldPlan], returns_by_world: Mapping[str, Any] | None = None,
                  returns_by_strategy: Mapping[str, Mapping[str, Any]] | None = None) -> AlphaMetricsEnvelope:
    """The v2 envelope: every planned world and every strategy in its ``scale_by_strategy`` (as the
    reference), plus any world or (strategy, world) a return series was sent for; metrics are computed
    from the series when there is one, 0.0 defaults otherwise."""
    world_series = _series_by_world(returns_by_world)
    pair_series = _series_by_pair(returns_by_strategy)
    planned_pairs = {(sid, world_id) for world_id, plan in per_world.items()
                     for sid in plan.scale_by_strategy}
    per_strategy: dict[str, dict[str, dict[str, float]]] = {}
    for sid, world_id in sorted(planned_pairs | pair_series.keys()):
        per_strategy.setdefault(sid, {})[world_id] = performance_metrics(pair_series.get((sid, world_id), ()))
    return AlphaMetricsEnvelope(
        per_world={world_id: performance_metrics(world_series.get(world_id, ()))
                   for world_id in sorted(per_world.keys() | world_series.keys())},
        per_strategy=per_strategy)
