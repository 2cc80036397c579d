"""Metrics derived from evaluate/apply ``series``: the two linearity scores, the alpha metrics and how they
are merged over the supplied metrics. Expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.linearity import linearity_v1, linearity_v2, spearman_rho
from domain.selection import select
from domain.series_metrics import alpha_performance, derive, simple_returns, strategy_curve
from messages.apply import StrategySeries
from messages.policies import Policy

approx = pytest.approx
INF = math.inf


def _series(**fields: list[float]) -> StrategySeries:
    return StrategySeries(**fields)


# --- linearity ---------------------------------------------------------------------------------------------

def test_a_straight_rising_line_scores_one_on_both_versions() -> None:
    v1 = linearity_v1([0.0, 1.0, 2.0, 3.0])
    assert v1 == {"r2_up": 1.0, "straightness_ratio": approx(1.0), "monotonicity": 1.0, "new_high_frac": 1.0,
                  "net_gain": 3.0, "score": approx(1.0)}
    v2 = linearity_v2([0.0, 1.0, 2.0, 3.0])
    # a perfect fit has no residual, so no standard error: t_slope is reported as 0.0
    assert v2 == {"r2_up": 1.0, "spearman_rho": approx(1.0), "t_slope": 0.0, "t_slope_sig": 0.0, "tvr": 1.0, "tuw": 0.0,
                  "nh_frac": 1.0, "mdd_norm": 0.0, "net_gain": 3.0, "score": approx(1.0)}


def test_a_curve_with_a_setback() -> None:
    y = [0.0, 2.0, 1.0, 3.0]
    # fit: slope (4 x 13 - 6 x 6) / (4 x 14 - 36) = 0.8, intercept 0.3; fitted 0.3, 1.1, 1.9, 2.7
    # residuals -0.3, 0.9, -0.9, 0.3 -> 1.8; around the mean 1.5 -> 5; R² = 1 - 1.8 / 5 = 0.64
    straightness = 3 * math.sqrt(2) / (2 * math.sqrt(5) + math.sqrt(2))  # steps (1/3, 2/3), (1/3, 1/3), (1/3, 2/3)
    v1 = linearity_v1(y)
    assert v1 == {"r2_up": approx(0.64), "straightness_ratio": approx(straightness), "monotonicity": approx(2 / 3),
                  "new_high_frac": 0.75, "net_gain": 3.0,
                  "score": approx(0.45 * 0.64 + 0.45 * straightness + 0.10 * (2 / 3 + 0.75) / 2)}
    v2 = linearity_v2(y)
    t_slope = 0.8 / math.sqrt(1.8 / 2 / 5)  # residual variance over n - 2, over the spread of t (5)
    trend = math.sqrt(0.64 * 0.8)
    # rho: ranks 1, 3, 2, 4 against 1, 2, 3, 4 -> 4 / 5; tvr: |3| / (2 + 1 + 2) at every scale (n = 4 is short)
    # one point (1.0) under water; the worst fall is 2 -> 1 against a net gain of 3
    assert v2 == {"r2_up": approx(0.64), "spearman_rho": approx(0.8), "t_slope": approx(t_slope),
                  "t_slope_sig": approx(t_slope / 3), "tvr": approx(0.6), "tuw": 0.25, "nh_frac": 0.75,
                  "mdd_norm": approx(1 / 3), "net_gain": 3.0,
                  "score": approx(4 / (1 / trend + 1 / 0.6 + 1 / 0.75 + 1 / 0.75))}


def test_tvr_thins_the_curve_at_every_fifth_point_and_keeps_the_last() -> None:
    y = [0.0, 1.0] * 5 + [0.0, 5.0]  # 12 points, ending on a jump
    # every point: 5 / (10 x 1 + 5); every 5th: 0, 1, 0 and the appended last 5 -> 5 / 7; every 20th: too
    # short to thin (<= 40 points), so as every point
    assert linearity_v2(y)["tvr"] == approx((1 / 3 * 5 / 7 * 1 / 3) ** (1 / 3))


def test_tied_values_share_their_rank() -> None:
    # ranks 1, 2.5, 2.5, 4: covariance 4.5 over sqrt(5) x sqrt(4.5)
    assert spearman_rho([0.0, 1.0, 1.0, 2.0]) == approx(math.sqrt(0.9))


@pytest.mark.parametrize("y", [[2.0, 1.0], [3.0, 2.0, 1.0], [1.0, 1.0, 1.0], [0.0, 5.0, 0.0]])
def test_a_curve_that_does_not_end_higher_scores_zero(y: list[float]) -> None:
    assert linearity_v1(y)["score"] == 0.0 and linearity_v2(y)["score"] == 0.0


def test_short_curves() -> None:
    assert set(linearity_v1([1.0]).values()) == {0.0}
    v1 = linearity_v1([0.0, 1.0])
    assert v1["score"] == approx(1.0)
    assert set(linearity_v2([0.0, 1.0]).values()) == {0.0}  # v2 needs three points


# --- the curve and its returns -----------------------------------------------------------------------------

@pytest.mark.parametrize(("series", "curve"), [
    (_series(equity=[1.0, 2.0], pnl=[5.0, 6.0], returns=[0.1]), [1.0, 2.0]),   # equity first
    (_series(equity=[], pnl=[5.0, 6.0], returns=[0.1]), [5.0, 6.0]),          # an empty list is skipped
    (_series(returns=[0.1, -0.05, 0.2]), [0.1, 0.05, approx(0.25)]),          # the running sum of returns
    (_series(), None),
])
def test_the_curve_comes_from_equity_then_pnl_then_returns(series: StrategySeries, curve: list | None) -> None:
    assert strategy_curve(series) == curve


def test_simple_returns_of_a_curve() -> None:
    assert simple_returns([0.0, 0.0, 2.0, 1.0, 3.0]) == [0.0, INF, -0.5, 2.0]  # a step from 0 to 0 is 0


# --- alpha metrics ---------------------------------------------------------------------------------------------

def test_alpha_metrics_of_known_returns() -> None:
    metrics = alpha_performance([-0.5, 2.0, INF])  # the non-finite return is dropped
    # mean 0.75, population stdev 1.25; running sum -0.5 (0.5 below the peak 0), then 1.5
    # compounded: 0.5 x 3.0 - 1 = 0.5
    assert metrics == {"alpha_performance.sharpe": 0.6, "alpha_performance.max_drawdown": -0.5,
                       "alpha_performance.win_ratio": 0.5, "alpha_performance.profit_factor": 4.0,
                       "alpha_performance.car_mdd": 1.0, "alpha_performance.rar_mdd": 1.2}


def test_undefined_alpha_ratios_are_infinite_and_no_returns_are_zeros() -> None:
    assert alpha_performance([0.0, 0.0]) == {
        "alpha_performance.sharpe": 0.0, "alpha_performance.max_drawdown": 0.0, "alpha_performance.win_ratio": 0.0,
        "alpha_performance.profit_factor": INF, "alpha_performance.car_mdd": INF, "alpha_performance.rar_mdd": INF}
    assert set(alpha_performance([INF]).values()) == {0.0}


# --- derive and merge ------------------------------------------------------------------------------------------

def test_derive_gives_each_strategy_its_linearity_and_the_portfolio_s_alpha() -> None:
    derived = derive({"b": _series(equity=[1.0, 0.0, 1.0, 5.0]), "a": _series(equity=[1.0, 2.0, 3.0]),
                      "c": _series(returns=[0.5]), "d": _series()})
    assert sorted(derived) == ["a", "b"]  # one point, or none, is no curve
    assert derived["a"]["el_v1_score"] == approx(1.0) and derived["b"]["el_v1_net_gain"] == 4.0
    assert derived["b"]["el_v2_score"] == linearity_v2([1.0, 0.0, 1.0, 5.0])["score"]
    # the portfolio is 1+1, 2+0, 3+1 (cut to the shortest curve): returns 0.0 and 1.0
    portfolio = [2.0, 2.0, 4.0]
    for sid in ("a", "b"):
        assert derived[sid]["portfolio_el_v2_score"] == linearity_v2(portfolio)["score"]
        assert derived[sid]["portfolio_el_v1_score"] == linearity_v1(portfolio)["score"]
        assert derived[sid]["alpha_performance.sharpe"] == 1.0  # mean 0.5 over stdev 0.5: the portfolio's
        assert derived[sid]["alpha_performance.profit_factor"] == INF
    assert len(derived["a"]) == 6 + 9 + 5 + 6


def test_derived_metrics_replace_supplied_ones_and_add_candidates() -> None:
    policy = msgspec.convert({"thresholds": {"lin": {"metric": "el_v2_score", "min": 0.9},
                                             "pf": {"metric": "alpha_performance.profit_factor", "min": 1.5}}},
                             Policy)
    metrics = {"a": {"el_v2_score": 0.1}, "b": {"el_v2_score": 0.95}}
    derived = derive({"a": _series(equity=[1.0, 2.0, 3.0, 4.0]), "n": _series(pnl=[1.0, 2.0, 3.0])})
    result = select(policy, metrics, [], {}, derived=derived)
    # a's supplied 0.1 is replaced by its curve's 1.0; n only has a series; b has no series, so no profit factor
    assert result.active == ["a", "n"]
    assert result.notes == ["b: alpha_performance.profit_factor missing"]
    assert select(policy, metrics, [], {}).active == []  # without the series nothing passes


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.lists(st.floats(min_value=-1e300, max_value=1e300, allow_nan=False), max_size=30),
                       max_size=3))
def test_derive_never_raises_and_never_yields_nan(curves: dict[str, list[float]]) -> None:
    derived = derive({sid: _series(equity=curve) for sid, curve in curves.items()})
    assert all(not math.isnan(value) for values in derived.values() for value in values.values())
    assert all(0.0 <= values[key] <= 1.0 for values in derived.values()
               for key in ("el_v1_score", "el_v2_score", "el_v2_tvr", "el_v2_tuw"))
