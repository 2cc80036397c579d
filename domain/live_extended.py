"""What live monitoring reads from the extended validation (``domain.extended_validation``): the newest
block the worker wrote for a strategy, judged by the default policy's ``portfolio`` and ``stress`` limits
(the reference's ``PortfolioRuleConfig`` / ``StressRuleConfig`` field names).

- ``portfolio.max_incremental_var_99`` / ``max_incremental_es_99``: the candidate's increment over the limit
  fails (``incremental_var_exceeds_max`` / ``incremental_es_exceeds_max``). A strategy the snapshot already
  weights has no increment (it is the portfolio, not a candidate) and is not checked; one whose block could
  not be computed (``skipped``) warns ``incremental_risk_missing``. ``min_portfolio_sharpe_uplift`` needs
  returns the block does not carry: not checked here.
- ``stress.scenarios.<name>.dd_max``: the portfolio's loss in that scenario, by absolute value, over the
  limit fails (``stress_dd_exceeds_max``); a configured scenario the block lacks warns
  (``stress_scenario_missing``).
- Any of these limits and no block at all for the strategy warns ``extended_validation_missing``.

As in the reference's layers, a missing input warns and a breached limit fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.evaluation import strategy_runs
from domain.state import WorldState
from messages.evaluation import EvaluationRun

_INCREMENTS = (("max_incremental_var_99", "incremental_var_99", "incremental_var_exceeds_max"),
               ("max_incremental_es_99", "incremental_es_99", "incremental_es_exceeds_max"))


@dataclass
class Findings:
    """Levels (``warn``/``fail``) with their reason codes, and the readings and limits behind them."""

    levels: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, level: str, reason: str) -> None:
        self.levels.append(level)
        self.reasons.append(reason)


def _limit(section: Mapping[str, Any], key: str) -> float | None:
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def limits_of(document: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """The configured increment limits and per-scenario stress ``dd_max`` limits (empty: none)."""
    portfolio = _mapping(document.get("portfolio"))
    increments = {key: v for key, _, _ in _INCREMENTS if (v := _limit(portfolio, key)) is not None}
    scenarios = _mapping(_mapping(document.get("stress")).get("scenarios"))
    stress = {str(name): v for name, spec in scenarios.items() if (v := _limit(_mapping(spec), "dd_max")) is not None}
    return increments, stress


def _block_of(run: EvaluationRun) -> dict[str, Any] | None:
    history = (run.validation.extended_history if run.validation is not None else None) or []
    return next((entry["block"] for entry in reversed(history) if isinstance(entry.get("block"), dict)), None)


def latest_block(state: WorldState, run: EvaluationRun) -> dict[str, Any] | None:
    """The run's own newest block, else the newest one on another run of its strategy (the worker writes
    into the strategy's latest run, which need not be the live one)."""
    own = _block_of(run)
    if own is not None:
        return own
    others = [r for r in strategy_runs(state) if r.strategy_id == run.strategy_id and r.run_id != run.run_id]
    for other in sorted(others, key=lambda r: (r.updated_at, r.created_at, r.sequence), reverse=True):
        block = _block_of(other)
        if block is not None:
            return block
    return None


def _increments(findings: Findings, block: Mapping[str, Any], limits: dict[str, float]) -> None:
    incremental = _mapping(block.get("incremental"))
    if not incremental and block.get("status", "pass") == "pass":
        return  # held in the snapshot's weights: nothing is added, nothing to check
    for key, reading, breached in _INCREMENTS:
        if key not in limits:
            continue
        value = incremental.get(reading)
        findings.details[key] = limits[key]
        findings.details[reading] = value
        if not isinstance(value, (int, float)):
            findings.add("warn", "incremental_risk_missing")
        elif value > limits[key]:
            findings.add("fail", breached)


def _stress(findings: Findings, block: Mapping[str, Any], limits: dict[str, float]) -> None:
    losses = {str(r.get("scenario")): r.get("loss") for r in block.get("stress") or [] if isinstance(r, Mapping)}
    breaches = {}
    for name, dd_max in sorted(limits.items()):
        loss = losses.get(name)
        if not isinstance(loss, (int, float)):
            findings.add("warn", "stress_scenario_missing")
        elif abs(loss) > dd_max:
            breaches[name] = {"loss": abs(loss), "dd_max": dd_max}
            findings.add("fail", "stress_dd_exceeds_max")
    if breaches:
        findings.details["stress_breaches"] = breaches


def findings(state: WorldState, run: EvaluationRun, document: Mapping[str, Any]) -> Findings:
    """The extended-validation part of one live run's judgment (empty when the policy sets no limit)."""
    found = Findings()
    increments, stress = limits_of(document)
    if not increments and not stress:
        return found
    block = latest_block(state, run)
    if block is None:
        found.add("warn", "extended_validation_missing")
        return found
    found.details["extended_snapshot_version"] = block.get("snapshot_version")
    _increments(found, block, increments)
    _stress(found, block, stress)
    return found
