"""Portfolio risk from a snapshot's weights and covariance (numpy, vectorised; pure).

Parametric (normal, zero mean) at 99%: ``sigma = sqrt(w' C w)``, ``VaR = z * sigma`` with ``z = Phi^-1(0.99)
= 2.3263``, ``ES = sigma * phi(z) / 0.01 = 2.6652 * sigma``. (The reference rounds ``z`` to 2.33 and takes
``ES = 1.2 * VaR``, which understates the normal ES by about 13%; the exact values are used here.) Weights
are not renormalised, so VaR is positively homogeneous: scaling every weight by ``k`` scales it by ``|k|``.

Incremental VaR/ES of a candidate ``c`` added at weight ``a`` (the others scaled by ``1 - a``, the
reference's rule): ``w' = (1-a) w + a e_c``, so ``w'Cw' = (1-a)^2 w'Cw + 2a(1-a)(Cw)_c + a^2 C_cc``,
computed for every candidate at once; the increment is ``VaR(w') - VaR(w)``. A candidate at ``a = 0`` adds
nothing.

Stress: a scenario gives a return shock per asset; its portfolio P&L is ``w . shock`` (assets it does not
name are not shocked), its loss ``max(0, -pnl)``.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from messages.risk_hub import IncrementalRisk, PortfolioRisk, StressResult

CONFIDENCE = 0.99
Z_99 = NormalDist().inv_cdf(CONFIDENCE)
ES_FACTOR_99 = NormalDist().pdf(Z_99) / (1 - CONFIDENCE)


def _pairs(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``"a,b"`` / ``"a:b"`` keys split into two arrays of names (numpy string ops, not a loop per key)."""
    text = np.char.replace(np.asarray(keys, dtype=str), ":", ",") if any(":" in k for k in keys) \
        else np.asarray(keys, dtype=str)
    parts = np.char.partition(text, ",")
    return parts[:, 0], parts[:, 2]


def _matrix(assets: list[str], left: np.ndarray, right: np.ndarray, values: np.ndarray) -> np.ndarray:
    matrix = np.zeros((len(assets), len(assets)))
    if not assets or not len(values):
        return matrix
    names = np.asarray(assets, dtype=str)
    order = np.argsort(names)
    ranked = names[order]
    rows, cols = (np.clip(np.searchsorted(ranked, side), 0, len(ranked) - 1) for side in (left, right))
    known = (ranked[rows] == left) & (ranked[cols] == right)
    rows, cols, values = order[rows[known]], order[cols[known]], values[known]
    matrix[rows, cols] = values
    matrix[cols, rows] = values
    return matrix


def covariance_matrix(assets: list[str], covariance: dict[str, float]) -> np.ndarray:
    """The symmetric matrix over ``assets`` from ``"a,b"`` keys (either order; missing pairs are 0)."""
    left, right = _pairs(list(covariance)) if covariance else (np.array([]), np.array([]))
    return _matrix(assets, left, right, np.fromiter(covariance.values(), dtype=float, count=len(covariance)))


def portfolio_inputs(weights: dict[str, float], covariance: dict[str, float]) -> tuple[list[str], np.ndarray]:
    """The assets (the weighted ones first, in weight order, then every other one the covariance names) and
    the covariance matrix over them, from one parse of the keys."""
    if not covariance:
        return list(weights), np.zeros((len(weights), len(weights)))
    left, right = _pairs(list(covariance))
    named = np.unique(np.concatenate([left, right]))
    assets = list(dict.fromkeys([*weights, *(str(n) for n in named if n)]))
    return assets, _matrix(assets, left, right, np.fromiter(covariance.values(), dtype=float, count=len(covariance)))


def portfolio_risk(weights: np.ndarray, cov: np.ndarray) -> PortfolioRisk:
    variance = float(weights @ cov @ weights)
    sigma = float(np.sqrt(max(variance, 0.0)))
    return PortfolioRisk(var_99=Z_99 * sigma, es_99=ES_FACTOR_99 * sigma, sigma=sigma)


def incremental_var_es(weights: np.ndarray, cov: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per asset ``c``: the VaR and ES increments of adding ``c`` at weight ``alpha`` (vectorised)."""
    base = float(weights @ cov @ weights)
    marginal = cov @ weights
    variance = (1 - alpha) ** 2 * base + 2 * alpha * (1 - alpha) * marginal + alpha**2 * np.diag(cov)
    delta_sigma = np.sqrt(np.maximum(variance, 0.0)) - np.sqrt(max(base, 0.0))
    return Z_99 * delta_sigma, ES_FACTOR_99 * delta_sigma


def incremental_for(weights: np.ndarray, cov: np.ndarray, alpha: float, index: int) -> IncrementalRisk:
    var, es = incremental_var_es(weights, cov, alpha)
    return IncrementalRisk(candidate_weight=alpha, incremental_var_99=float(var[index]),
                           incremental_es_99=float(es[index]))


def stress_results(weights: dict[str, float], scenarios: dict[str, dict[str, float]]) -> list[StressResult]:
    """Every scenario's portfolio P&L at once: a (scenario x asset) shock matrix times the weights."""
    names = sorted(scenarios)
    assets = list(weights)
    index = {a: i for i, a in enumerate(assets)}
    shocks = np.zeros((len(names), len(assets)))
    for row, name in enumerate(names):
        cells = [(index[a], v) for a, v in scenarios[name].items() if a in index]
        if cells:
            cols, values = zip(*cells, strict=True)
            shocks[row, list(cols)] = values
    pnl = shocks @ np.asarray([weights[a] for a in assets], dtype=float)
    return [StressResult(scenario=n, pnl=float(p), loss=float(max(0.0, -p))) for n, p in zip(names, pnl, strict=True)]
