"""How straight and steadily rising an equity curve is: the reference's two equity-linearity scores.

Both read a cumulative curve ``y_0..y_{n-1}`` sampled at ``t = 0..n-1`` and score an upward, straight,
rarely-under-water curve near 1 and anything else near 0. The definitions (and their constants) are the
reference's, because policies written for it threshold these numbers (``el_v1_score >= 0.8``).

**v1** (``n >= 2``; otherwise every value is 0.0):

- ``net_gain = y_{n-1} - y_0``.
- ``r2_up``: R² of the least-squares line through the curve, kept only when its slope is positive.
- ``straightness_ratio``: the diagonal ``sqrt(2)`` over the length of the curve drawn in the unit square
  (time scaled to ``[0, 1]``, value scaled by ``|net_gain|``), in ``[0, 1]``; 0.0 for a flat curve.
- ``monotonicity``: the share of steps that rise by more than ``1e-12``.
- ``new_high_frac``: the share of points above every earlier point by more than ``1e-12``.
- ``score = 0.45 r2_up + 0.45 straightness + 0.10 (monotonicity + new_high_frac) / 2``, 0.0 unless
  ``net_gain > 0``.

**v2** (``n >= 3``; otherwise every value is 0.0), with ``eps = 1e-10``:

- ``r2_up`` as in v1; ``t_slope``: the slope's t statistic (slope over its standard error, ``n - 2`` degrees
  of freedom), 0.0 for a perfect fit; ``t_slope_sig = min(|t_slope| / 3, 1)``.
- ``spearman_rho``: rank correlation of the curve with time (ties get their average rank).
- ``tvr``: the geometric mean, over the curve thinned to every 1st, 5th and 20th point (the last point is
  appended when the thinning misses it; a curve of at most ``2k`` points is not thinned), of
  ``|net change| / total variation``.
- ``tuw``: the share of points that are not a new high (by more than ``eps``); ``nh_frac = 1 - tuw``.
- ``mdd_norm``: the largest fall from a running peak over ``|net_gain| + eps``.
- ``score``: 0.0 unless the curve ends above where it started; else the harmonic mean of
  ``sqrt(r2_up x max(rho, 0))``, ``tvr``, ``nh_frac`` and ``1 / (1 + mdd_norm)``, each clamped to
  ``[eps, 1]``.

Squares are products, never ``**``: float ``**`` raises OverflowError where a product just becomes inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

V1_EPS = 1e-12
V2_EPS = 1e-10
TVR_SCALES = (1, 5, 20)
V1_KEYS = ("r2_up", "straightness_ratio", "monotonicity", "new_high_frac", "net_gain", "score")
V2_KEYS = ("r2_up", "spearman_rho", "t_slope", "t_slope_sig", "tvr", "tuw", "nh_frac", "mdd_norm", "net_gain",
           "score")


def _clamp01(x: float) -> float:
    return 0.0 if x <= 0.0 else 1.0 if x >= 1.0 else x


def linear_fit(y: Sequence[float]) -> tuple[float, float, float]:
    """``(slope, intercept, r2)`` of ``y ~ a + b t``; R² is 0.0 for a constant curve and clamped to [0, 1]."""
    n = len(y)
    if n < 2:
        return 0.0, float(y[0]) if n else 0.0, 0.0
    t_sum = (n - 1) * n / 2.0
    t2_sum = (n - 1) * n * (2 * n - 1) / 6.0
    y_sum = float(sum(y))
    ty_sum = float(sum(i * v for i, v in enumerate(y)))
    slope = (n * ty_sum - t_sum * y_sum) / (n * t2_sum - t_sum * t_sum)
    intercept = (y_sum - slope * t_sum) / n
    y_mean = y_sum / n
    ss_tot = sum((v - y_mean) * (v - y_mean) for v in y)
    if ss_tot == 0:
        return slope, intercept, 0.0
    ss_res = _residual_ss(y, slope, intercept)
    return slope, intercept, max(0.0, min(1.0, 1.0 - ss_res / ss_tot))


def _residual_ss(y: Sequence[float], slope: float, intercept: float) -> float:
    residuals = [v - (intercept + slope * i) for i, v in enumerate(y)]
    return sum(r * r for r in residuals)


def _straightness(y: Sequence[float]) -> float:
    rise = abs(y[-1] - y[0])
    if rise == 0:
        return 0.0
    step, scale = 1.0 / (len(y) - 1), 1.0 / rise
    path = sum(math.hypot(step, (y[i] - y[i - 1]) * scale) for i in range(1, len(y)))
    return max(0.0, min(1.0, math.sqrt(2.0) / path))


def _new_highs(y: Sequence[float], eps: float) -> int:
    count, peak = 0, -math.inf
    for v in y:
        if v > peak + eps:
            count, peak = count + 1, v
    return count


def linearity_v1(y: Sequence[float]) -> dict[str, float]:
    n = len(y)
    if n < 2:
        return dict.fromkeys(V1_KEYS, 0.0)
    net_gain = float(y[-1] - y[0])
    slope, _, r2 = linear_fit(y)
    r2_up = r2 if slope > 0 else 0.0
    straightness = _straightness(y)
    monotonicity = sum(1 for i in range(1, n) if y[i] - y[i - 1] > V1_EPS) / (n - 1)
    new_high_frac = _new_highs(y, V1_EPS) / n
    score = 0.0
    if net_gain > 0:
        score = 0.45 * r2_up + 0.45 * straightness + 0.10 * ((monotonicity + new_high_frac) / 2.0)
    values = (r2_up, straightness, monotonicity, new_high_frac, net_gain, max(0.0, min(1.0, score)))
    return dict(zip(V1_KEYS, values, strict=True))


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; equal values share the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end + 2) / 2.0
        start = end + 1
    return ranks


def spearman_rho(y: Sequence[float]) -> float:
    n = len(y)
    if n < 3:
        return 0.0
    time_ranks, value_ranks = [float(i + 1) for i in range(n)], _ranks(y)
    t_mean, v_mean = sum(time_ranks) / n, sum(value_ranks) / n
    dt = [r - t_mean for r in time_ranks]
    dv = [r - v_mean for r in value_ranks]
    spread = math.sqrt(sum(d * d for d in dt)) * math.sqrt(sum(d * d for d in dv))
    if spread == 0.0:
        return 0.0
    return max(-1.0, min(1.0, sum(a * b for a, b in zip(dt, dv, strict=True)) / spread))


def _slope_t(y: Sequence[float], slope: float, intercept: float) -> float:
    n = len(y)
    ss_res = _residual_ss(y, slope, intercept)
    if ss_res <= 0.0:
        return 0.0
    t_mean = (n - 1) / 2.0
    sxx = sum((i - t_mean) * (i - t_mean) for i in range(n))
    standard_error = math.sqrt(ss_res / (n - 2) / sxx)
    return slope / standard_error if standard_error else 0.0


def _trend(y: Sequence[float]) -> tuple[float, float, float]:
    """``(r2_up, t_slope, t_slope_sig)``; a flat fit (slope and R² both 0) has no t statistic."""
    slope, intercept, r2 = linear_fit(y)
    t_stat = 0.0 if slope == 0.0 and r2 == 0.0 else _slope_t(y, slope, intercept)
    return (r2 if slope > 0.0 else 0.0), t_stat, _clamp01(abs(t_stat) / 3.0)


def _thinned(y: Sequence[float], k: int) -> Sequence[float]:
    if k <= 1 or len(y) <= 2 * k:
        return y
    out = list(y[::k])
    if out[-1] != y[-1]:  # compared by value, as the reference does
        out.append(y[-1])
    return out


def _variation_ratio(y: Sequence[float]) -> float:
    total = sum(abs(y[i] - y[i - 1]) for i in range(1, len(y)))
    return 0.0 if total <= V2_EPS else _clamp01(abs(y[-1] - y[0]) / total)


def _tvr(y: Sequence[float]) -> float:
    ratios = [_variation_ratio(_thinned(y, k)) for k in TVR_SCALES]
    return math.prod(ratios) ** (1.0 / len(ratios))


def _max_fall(y: Sequence[float]) -> float:
    peak, worst = -math.inf, 0.0
    for v in y:
        if v > peak:
            peak = v
        else:
            worst = max(worst, peak - v)
    return worst


def _harmonic_score(r2_up: float, rho: float, tvr: float, nh_frac: float, mdd_norm: float) -> float:
    parts = (math.sqrt(_clamp01(r2_up) * max(0.0, rho)), tvr, nh_frac, 1.0 / (1.0 + mdd_norm))
    clamped = [max(V2_EPS, _clamp01(p)) for p in parts]
    return _clamp01(len(clamped) / sum(1.0 / p for p in clamped))


def linearity_v2(y: Sequence[float]) -> dict[str, float]:
    if len(y) < 3:
        return dict.fromkeys(V2_KEYS, 0.0)
    net_gain = y[-1] - y[0]
    r2_up, t_stat, t_sig = _trend(y)
    rho = spearman_rho(y)
    tvr = _tvr(y)
    tuw = (len(y) - _new_highs(y, V2_EPS)) / len(y)
    nh_frac = 1.0 - tuw
    mdd_norm = _max_fall(y) / (abs(net_gain) + V2_EPS)
    score = _harmonic_score(r2_up, rho, tvr, nh_frac, mdd_norm) if net_gain > 0.0 else 0.0
    values = (r2_up, rho, t_stat, t_sig, tvr, tuw, nh_frac, mdd_norm, net_gain, score)
    return dict(zip(V2_KEYS, values, strict=True))
