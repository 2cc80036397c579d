"""Parametric VaR/ES at 99%, incremental VaR/ES and stress against hand-computed values (2 and 3 assets), and
the properties: a zero-weight candidate adds nothing, VaR scales by |k| with the weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from domain.extended_blocks import blocks_for, candidate_weight, scenarios_of
from domain.risk_measures import (
    ES_FACTOR_99, Z_99, covariance_matrix, incremental_for, incremental_var_es, portfolio_risk, stress_results,
)
from messages.risk_hub import RiskSnapshot

COV_2 = {"s1,s1": 0.04, "s1,s2": 0.01, "s2,s2": 0.09}


def test_the_normal_quantile_and_es_factor_at_99() -> None:
    assert Z_99 == pytest.approx(2.326348, abs=1e-6)
    assert ES_FACTOR_99 == pytest.approx(2.665214, abs=1e-6)


def test_two_assets_by_hand() -> None:
    # w'Cw = .36*.04 + 2*.6*.4*.01 + .16*.09 = .0336; sigma = .183303
    risk = portfolio_risk(np.array([0.6, 0.4]), covariance_matrix(["s1", "s2"], COV_2))
    assert risk.sigma == pytest.approx(0.183303, abs=1e-6)
    assert risk.var_99 == pytest.approx(0.426427, abs=1e-6)
    assert risk.es_99 == pytest.approx(0.488542, abs=1e-6)


def test_three_uncorrelated_assets_by_hand() -> None:
    cov = covariance_matrix(["a", "b", "c"], {"a,a": 0.04, "b:b": 0.09, "c,c": 0.16})
    risk = portfolio_risk(np.array([0.5, 0.3, 0.2]), cov)  # .01 + .0081 + .0064 = .0245
    assert risk.sigma == pytest.approx(0.156525, abs=1e-6)
    assert risk.var_99 == pytest.approx(0.364131, abs=1e-6)


def test_a_candidate_s_increment_by_hand() -> None:
    # s3 at 1/3, the others scaled by 2/3: w' = (.4, .26667, .33333); w'Cw' = .0064 + .0064 + .0025 + .0021333
    # + .0010667 = .0185; sigma' = .136015, down from .183303 (a diversifier).
    assets = ["s1", "s2", "s3"]
    cov = covariance_matrix(assets, {**COV_2, "s3,s3": 0.0225, "s2,s3": 0.006})
    inc = incremental_for(np.array([0.6, 0.4, 0.0]), cov, 1 / 3, 2)
    assert inc.incremental_var_99 == pytest.approx((0.136015 - 0.183303) * 2.326348, abs=1e-5)
    assert inc.incremental_es_99 == pytest.approx((0.136015 - 0.183303) * 2.665214, abs=1e-5)


def test_stress_is_the_weighted_shock() -> None:
    results = stress_results({"s1": 0.6, "s2": 0.4}, {"crash": {"s1": -0.2, "s2": -0.1, "zz": -1.0},
                                                      "rally": {"s1": 0.1}})
    assert [(r.scenario, round(r.pnl, 6), round(r.loss, 6)) for r in results] == [
        ("crash", -0.16, 0.16), ("rally", 0.06, 0.0)]


def test_the_worker_blocks_name_every_strategy_of_the_snapshot() -> None:
    snapshot = RiskSnapshot(world_id="w", as_of="2026-03-02T09:00:00Z", version="v1", weights={"s1": 0.6, "s2": 0.4},
                            created_at="2026-03-02T09:00:00Z", hash="sha256:x", ttl_sec=900,
                            covariance={**COV_2, "s3,s3": 0.0225, "s2,s3": 0.006},
                            stress={"crash": {"shocks": {"s1": -0.2}}, "s1": {"crash": {"max_drawdown": 0.3}}})
    blocks = blocks_for(snapshot)
    assert set(blocks) == {"s1", "s2", "s3"}
    assert "incremental" not in blocks["s1"] and blocks["s1"]["baseline"]["var_99"] == pytest.approx(0.426427, abs=1e-6)
    assert blocks["s3"]["incremental"]["candidate_weight"] == pytest.approx(1 / 3)
    assert blocks["s3"]["stress"] == [{"scenario": "crash", "pnl": pytest.approx(-0.12), "loss": pytest.approx(0.12)}]
    assert scenarios_of(snapshot.stress) == {"crash": {"s1": -0.2}}
    assert candidate_weight({"candidate_weight_pct": 25}, 2) == 0.25 and candidate_weight({"candidate_weight": 2}, 3) == 0.25


def _psd(draw: st.DrawFn, n: int) -> np.ndarray:
    factors = np.array(draw(st.lists(st.floats(-1, 1), min_size=n * n, max_size=n * n))).reshape(n, n)
    return factors @ factors.T


@st.composite
def portfolios(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 6))
    weights = np.array(draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n)))
    return weights, _psd(draw, n)


@settings(max_examples=200, deadline=None)
@given(portfolios(), st.floats(-10, 10))
def test_scaling_every_weight_by_k_scales_var_and_es_by_abs_k(portfolio: tuple[np.ndarray, np.ndarray],
                                                               k: float) -> None:
    weights, cov = portfolio
    base, scaled = portfolio_risk(weights, cov), portfolio_risk(k * weights, cov)
    assert scaled.var_99 == pytest.approx(abs(k) * base.var_99, rel=1e-9, abs=1e-9)
    assert scaled.es_99 == pytest.approx(abs(k) * base.es_99, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(portfolios())
def test_a_zero_weight_candidate_adds_no_var(portfolio: tuple[np.ndarray, np.ndarray]) -> None:
    weights, cov = portfolio
    d_var, d_es = incremental_var_es(weights, cov, 0.0)
    assert np.allclose(d_var, 0.0, atol=1e-12) and np.allclose(d_es, 0.0, atol=1e-12)
