"""The metrics evaluate and apply derive from a request's ``series`` before any rule reads the metrics.

This is the reference's augmentation step (its ``decision.py``), kept to its definitions so that a policy
written for the reference selects the same strategies here. For every strategy whose series gives a curve
of at least two points (``equity``, else ``pnl``, else the running sum of ``returns``: the first non-empty):

- ``el_v1_score``, ``el_v1_r2_up``, ``el_v1_straightness``, ``el_v1_monotonicity``, ``el_v1_new_high_frac``,
  ``el_v1_net_gain`` and ``el_v2_score``, ``el_v2_tvr``, ``el_v2_tuw``, ``el_v2_r2_up``,
  ``el_v2_spearman_rho``, ``el_v2_t_slope``, ``el_v2_t_slope_sig``, ``el_v2_mdd_norm``, ``el_v2_net_gain``:
  the curve's linearity (``domain.linearity``);
- ``portfolio_el_v1_score``, ``portfolio_el_v2_score``, ``portfolio_el_v2_tvr``, ``portfolio_el_v2_tuw``,
  ``portfolio_el_v2_mdd_norm``: the same scores of the portfolio curve, which is every such strategy's
  curve summed point by point over the shortest length (in strategy-id order);
- ``alpha_performance.<sharpe|max_drawdown|win_ratio|profit_factor|car_mdd|rar_mdd>`` of the portfolio
  curve's simple returns ``(y_t - y_{t-1}) / y_{t-1}`` (a step from 0 is 0.0 to 0 and undefined otherwise).
  These are the portfolio's, not the strategy's own: the reference computes a strategy's first and then
  overwrites them with the portfolio's, and that is what its thresholds see. With one strategy in the
  request they are its own.

The ``alpha_performance`` definitions are the reference's evaluate ones, not those of the rebalance
envelope (``domain.rebalancing.alpha``: annualised, drawdown as a positive fraction). For returns
``r_1..r_n`` with the non-finite ones dropped (none left: every value is 0.0):

- ``sharpe = mean / stdev`` (population standard deviation, not annualised), 0.0 without variation;
- ``max_drawdown``: the deepest fall of the running sum of returns below its running peak (which starts
  at 0), as a number <= 0;
- ``win_ratio``: the share of ``r > 0``; ``profit_factor = sum(r > 0) / |sum(r < 0)|``;
- ``car_mdd = (prod(1 + r) - 1) / |max_drawdown|``; ``rar_mdd = sharpe / |max_drawdown|``.

``profit_factor`` without a losing period and ``car_mdd``/``rar_mdd`` without a drawdown are +inf, as in the
reference: inf passes a ``min`` threshold and fails a ``max``. These values are only compared, never
encoded. A NaN (from an overflow on absurd inputs) is dropped, so it reads as a missing metric.

Merge: a derived value replaces a supplied metric of the same flattened name, and a strategy that only
has a series becomes a candidate with the derived metrics alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import accumulate

from domain.linearity import linearity_v1, linearity_v2
from messages.apply import StrategySeries
from messages.rebalancing import ALPHA_METRIC_NAMES

Metrics = dict[str, dict[str, float]]

_V1 = {"el_v1_score": "score", "el_v1_r2_up": "r2_up", "el_v1_straightness": "straightness_ratio",
       "el_v1_monotonicity": "monotonicity", "el_v1_new_high_frac": "new_high_frac",
       "el_v1_net_gain": "net_gain"}
_V2 = {"el_v2_score": "score", "el_v2_tvr": "tvr", "el_v2_tuw": "tuw", "el_v2_r2_up": "r2_up",
       "el_v2_spearman_rho": "spearman_rho", "el_v2_t_slope": "t_slope", "el_v2_t_slope_sig": "t_slope_sig",
       "el_v2_mdd_norm": "mdd_norm", "el_v2_net_gain": "net_gain"}
_PORTFOLIO_V1 = {"portfolio_el_v1_score": "score"}
_PORTFOLIO_V2 = {"portfolio_el_v2_score": "score", "portfolio_el_v2_tvr": "tvr", "portfolio_el_v2_tuw": "tuw",
                 "portfolio_el_v2_mdd_norm": "mdd_norm"}


def strategy_curve(series: StrategySeries) -> list[float] | None:
    if series.equity:
        return list(series.equity)
    if series.pnl:
        return list(series.pnl)
    if series.returns:
        return list(accumulate(series.returns, initial=0.0))[1:]
    return None


def simple_returns(curve: Sequence[float]) -> list[float]:
    def step(previous: float, current: float) -> float:
        if previous != 0.0:
            return (current - previous) / previous
        return 0.0 if current == 0.0 else math.inf

    return [step(a, b) for a, b in zip(curve, curve[1:])]


def _deepest_drawdown(returns: Sequence[float]) -> float:
    level, peak, deepest = 0.0, 0.0, 0.0
    for r in returns:
        level += r
        peak = max(peak, level)
        deepest = min(deepest, level - peak)
    return deepest


def _over_drawdown(value: float, drawdown: float) -> float:
    return value / abs(drawdown) if drawdown else math.inf


def _sharpe(returns: Sequence[float]) -> float:
    mean = sum(returns) / len(returns)
    stdev = math.sqrt(sum((r - mean) * (r - mean) for r in returns) / len(returns))
    return mean / stdev if stdev else 0.0


def _profit_factor(returns: Sequence[float]) -> float:
    losses = sum(r for r in returns if r < 0)
    return sum(r for r in returns if r > 0) / abs(losses) if losses else math.inf


def alpha_performance(returns: Sequence[float]) -> dict[str, float]:
    clean = [float(r) for r in returns if math.isfinite(r)]
    if not clean:
        return {f"alpha_performance.{name}": 0.0 for name in ALPHA_METRIC_NAMES}
    sharpe, drawdown = _sharpe(clean), _deepest_drawdown(clean)
    values = (sharpe, drawdown, sum(1 for r in clean if r > 0) / len(clean), _profit_factor(clean),
              _over_drawdown(math.prod(1 + r for r in clean) - 1, drawdown), _over_drawdown(sharpe, drawdown))
    return {f"alpha_performance.{name}": value for name, value in zip(ALPHA_METRIC_NAMES, values, strict=True)}


def _named(names: Mapping[str, str], values: Mapping[str, float]) -> dict[str, float]:
    return {key: values[source] for key, source in names.items()}


def _linearity(curve: Sequence[float], v1: Mapping[str, str], v2: Mapping[str, str]) -> dict[str, float]:
    return {**_named(v1, linearity_v1(curve)), **_named(v2, linearity_v2(curve))}


def _curves(series: Mapping[str, StrategySeries]) -> dict[str, list[float]]:
    """The usable curves (two points or more), in strategy-id order."""
    curves = {sid: strategy_curve(series[sid]) for sid in sorted(series)}
    return {sid: curve for sid, curve in curves.items() if curve is not None and len(curve) >= 2}


def _finite_or_inf(values: Mapping[str, float]) -> dict[str, float]:
    return {key: value for key, value in values.items() if not math.isnan(value)}


def derive(series: Mapping[str, StrategySeries] | None) -> Metrics:
    """The derived metrics of every strategy with a usable curve, by strategy id."""
    curves = _curves(series or {})
    if not curves:
        return {}
    shortest = min(len(curve) for curve in curves.values())
    portfolio = [sum(curve[i] for curve in curves.values()) for i in range(shortest)]
    shared = {**_linearity(portfolio, _PORTFOLIO_V1, _PORTFOLIO_V2), **alpha_performance(simple_returns(portfolio))}
    return {sid: _finite_or_inf({**_linearity(curve, _V1, _V2), **shared}) for sid, curve in curves.items()}


def merged(supplied: Mapping[str, Mapping[str, float]], derived: Mapping[str, Mapping[str, float]]) -> Metrics:
    """Each strategy's flattened metrics with its derived ones over them, in strategy-id order."""
    return {sid: {**supplied.get(sid, {}), **derived.get(sid, {})} for sid in sorted(supplied.keys() | derived.keys())}
