"""The extended-validation worker's numbers for one snapshot (pure; numpy in ``domain.risk_measures``):
per strategy the snapshot names, the portfolio baseline VaR/ES at 99%, the incremental VaR/ES of adding it
(for a strategy not yet weighted), and the stress results. Every candidate's increment is computed at once.

Candidate weight (the reference's rule): ``constraints.candidate_weight`` (or ``candidate_weight_default``,
or ``candidate_weight_pct`` / 100) when in ``(0, 1]``; else ``1 / (active + 1)``.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np

from domain.risk_measures import incremental_var_es, portfolio_inputs, portfolio_risk, stress_results
from messages.risk_hub import ExtendedValidation, IncrementalRisk, RiskSnapshot


def candidate_weight(constraints: dict[str, Any] | None, active: int) -> float:
    raw: Any = None
    if constraints:
        raw = constraints.get("candidate_weight", constraints.get("candidate_weight_default"))
        if raw is None and isinstance(constraints.get("candidate_weight_pct"), (int, float)):
            raw = constraints["candidate_weight_pct"] / 100
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw) and 0 < raw <= 1:
        return float(raw)
    return 1.0 / (active + 1)


def scenarios_of(stress: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """Scenarios given as per-asset shocks (``{"crash": {"s1": -0.2}}`` or ``{"crash": {"shocks": {...}}}``);
    anything else (the reference's per-strategy metric buckets) is not a shock and is left out."""
    found: dict[str, dict[str, float]] = {}
    for name, spec in (stress or {}).items():
        shocks = spec.get("shocks", spec) if isinstance(spec, dict) else None
        if isinstance(shocks, dict) and shocks and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in shocks.values()):
            found[str(name)] = {str(k): float(v) for k, v in shocks.items()}
    return found


def blocks_for(snapshot: RiskSnapshot) -> dict[str, dict[str, Any]]:
    """strategy_id -> its ``ExtendedValidation`` block (as builtins), for every strategy the snapshot names."""
    covariance = snapshot.covariance or {}
    assets, cov = portfolio_inputs(snapshot.weights, covariance)
    stress = stress_results(snapshot.weights, scenarios_of(snapshot.stress))
    common = {"snapshot_version": snapshot.version, "snapshot_hash": snapshot.hash,
              "snapshot_as_of": snapshot.as_of, "stress": stress}
    if not covariance:
        skipped = ExtendedValidation(**common, status="skipped", reason="snapshot has no covariance")
        return {a: msgspec.to_builtins(skipped) for a in assets}
    weights = np.asarray([snapshot.weights.get(a, 0.0) for a in assets], dtype=float)
    baseline = portfolio_risk(weights, cov)
    alpha = candidate_weight(snapshot.constraints, sum(1 for w in snapshot.weights.values() if w))
    d_var, d_es = incremental_var_es(weights, cov, alpha)
    blocks = {}
    for i, asset in enumerate(assets):
        block = ExtendedValidation(**common, baseline=baseline)
        if asset not in snapshot.weights:
            if cov[i, i] > 0:
                block.incremental = IncrementalRisk(candidate_weight=alpha, incremental_var_99=float(d_var[i]),
                                                    incremental_es_99=float(d_es[i]))
            else:
                block.status, block.reason = "skipped", "snapshot has no variance for this strategy"
        blocks[asset] = msgspec.to_builtins(block)
    return blocks
