"""Live readings of a strategy: what its realized returns say over sliding windows (the reference's
``live_metrics.aggregate_live_metrics`` and ``validation_metrics.augment_live_metrics``).

A live run carries its realized return series and these readings in ``metrics.diagnostics.live_monitoring``;
the live monitoring rule (``domain.live_monitoring``) judges them. Sharpe here is the plain ratio of the
mean to the population standard deviation of the returns (no annualisation, as the reference); drawdown is
measured on the cumulative sum of the returns, from the equity the series starts at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from domain.state import WorldState
from messages.evaluation import DiagnosticsMetrics, EvaluationMetrics

WINDOWS = (30, 60, 90)  # days of returns; the shortest is the canonical reading


def sharpe_ratio(returns: Sequence[float]) -> float | None:
    """Mean over population standard deviation; none for an empty or constant series."""
    if not returns:
        return None
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / len(returns)
    return mean / math.sqrt(variance) if variance > 0 else None


def max_drawdown(returns: Sequence[float]) -> float | None:
    """The largest fall of the cumulative return below its running peak, as a positive number.

    The peak starts at the equity before the first return (0): the reference starts it at the first
    point, so a series that opens with a loss showed no drawdown for it.
    """
    if not returns:
        return None
    equity = peak = worst = 0.0
    for r in returns:
        equity += r
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    return worst


def aggregate(returns: Sequence[float], backtest_sharpe: float | None,
              windows: Sequence[int] = WINDOWS) -> dict[str, Any]:
    """``live_sharpe_p<w>`` and ``live_max_drawdown_p<w>`` over the last ``w`` returns (all of them when
    fewer), the canonical ``live_*``/``realized_*`` aliases of the shortest window, and
    ``live_vs_backtest_sharpe_ratio`` when both sharpes are known and non-zero."""
    readings: dict[str, Any] = {}
    for window in windows:
        tail = list(returns[-window:]) if window > 0 else []
        readings[f"live_sharpe_p{window}"] = sharpe_ratio(tail)
        readings[f"live_max_drawdown_p{window}"] = max_drawdown(tail)
    canonical = min(windows)
    for alias in ("live", "realized"):
        readings[f"{alias}_sharpe"] = readings[f"live_sharpe_p{canonical}"]
        readings[f"{alias}_max_drawdown"] = readings[f"live_max_drawdown_p{canonical}"]
    live = readings["live_sharpe"]
    if backtest_sharpe and live:
        readings["live_vs_backtest_sharpe_ratio"] = live / backtest_sharpe
    return readings


def _series(value: Any) -> list[float] | None:
    """A list of finite numbers (booleans are not returns); anything else is no series."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return [float(v) for v in value]


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def live_returns(raw: Mapping[str, Any]) -> list[float] | None:
    """Where the reference looks for realized returns: ``diagnostics.live_returns``, ``live_returns``,
    ``live.returns``, in that order."""
    for candidate in (_mapping(raw, "diagnostics").get("live_returns"), raw.get("live_returns"),
                      _mapping(raw, "live").get("returns")):
        series = _series(candidate)
        if series is not None:
            return series
    return None


def _as_of(raw: Mapping[str, Any]) -> str | None:
    for candidate in (raw.get("as_of"), _mapping(raw, "diagnostics").get("as_of"), _mapping(raw, "live").get("as_of")):
        if isinstance(candidate, str) and candidate:
            return candidate[:64]
    return None


def backtest_sharpe(state: WorldState, strategy_id: str, own_sharpe: float | None) -> float | None:
    """The baseline a live sharpe decays from: ``returns.sharpe`` of the strategy's latest run that is not
    live (the reference worker's choice), else the live run's own ``returns.sharpe``."""
    runs = [revisions[-1] for revisions in state.evaluations.get(strategy_id, {}).values()
            if str(revisions[-1].stage).lower() != "live"]
    for run in sorted(runs, key=lambda r: (r.updated_at, r.created_at, r.sequence), reverse=True):
        returns = run.metrics.returns if run.metrics is not None else None
        if returns is not None and returns.sharpe is not None:
            return returns.sharpe
    return own_sharpe


def readings(series: list[float], baseline: float | None, as_of: str | None) -> dict[str, Any]:
    """Everything ``diagnostics.live_monitoring`` holds: the series, its length, the window readings, the
    baseline sharpe used for decay and the as-of time of the data."""
    return {"live_returns": series, "live_returns_len": len(series), **aggregate(series, baseline),
            "backtest_sharpe": baseline, "as_of": as_of}


def from_raw(state: WorldState, strategy_id: str, raw: Mapping[str, Any], own_sharpe: float | None,
             recorded_at: str) -> dict[str, Any] | None:
    """The readings an evaluation records when its metrics carry realized returns (none otherwise). The
    data's ``as_of`` is the caller's when given, else the time the evaluation was recorded."""
    series = live_returns(raw)
    if series is None:
        return None
    return readings(series, backtest_sharpe(state, strategy_id, own_sharpe), _as_of(raw) or recorded_at)


def attach(state: WorldState, strategy_id: str, raw: Mapping[str, Any], metrics: EvaluationMetrics,
           recorded_at: str) -> EvaluationMetrics:
    """``metrics`` with the live readings of ``raw`` in ``diagnostics.live_monitoring`` (as they were when
    ``raw`` carries no realized returns)."""
    own = metrics.returns.sharpe if metrics.returns is not None else None
    live = from_raw(state, strategy_id, raw, own, recorded_at)
    if live is None:
        return metrics
    diagnostics = msgspec.structs.replace(metrics.diagnostics or DiagnosticsMetrics(), live_monitoring=live)
    return msgspec.structs.replace(metrics, diagnostics=diagnostics)
