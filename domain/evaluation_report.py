"""What an evaluation run says about one strategy: its metrics sorted into blocks, one ``RuleResult`` per
rule, and the verdict (reference §1.8, ``EvaluationRunModel``).

The policy engine (``domain.selection``) decides each rule's status; this module only words it. Every
table below is the one place its facts live: a rule's severity, owner and tags, and the reason code and
text for each status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from domain.selection import SelectionResult, flatten_metrics
from messages.evaluation import (
    BenchmarkMetrics, DiagnosticsMetrics, EvaluationMetrics, ReturnsMetrics, RiskMetrics, RobustnessMetrics,
    RuleResult, SampleMetrics, ValidationHealth,
)

# Block name -> its struct; a metric is filed under a block when the block declares a field of that name.
BLOCKS: dict[str, type[msgspec.Struct]] = {
    "returns": ReturnsMetrics, "sample": SampleMetrics, "risk": RiskMetrics,
    "robustness": RobustnessMetrics, "benchmark": BenchmarkMetrics,
}
_DIAGNOSTIC_FIELDS = ("strategy_complexity", "search_intensity", "returns_source")

# rule -> (severity, owner, tags); then (rule, status) -> (reason_code, reason).
RULES: dict[str, tuple[str, str, list[str]]] = {
    "data_currency": ("blocking", "ops", ["data_currency"]),
    "sample": ("soft", "quant", ["sample"]),
    "performance": ("blocking", "quant", ["performance", "thresholds"]),
    "risk_constraint": ("blocking", "risk", ["risk"]),
    "robustness": ("soft", "quant", ["robustness"]),
}
REASONS: dict[tuple[str, str], tuple[str, str]] = {
    ("data_currency", "pass"): ("data_currency_ok", "Required metrics present"),
    ("data_currency", "warn"): ("data_currency_metrics_missing", "Required metrics missing (policy ignores it)"),
    ("data_currency", "fail"): ("data_currency_metrics_missing", "Required metrics missing"),
    ("sample", "pass"): ("sample_ok", "Sample requirements met"),
    ("sample", "warn"): ("sample_metrics_missing", "No sample metrics found"),
    ("sample", "fail"): ("sample_insufficient", "Sample below the policy's thresholds"),
    ("performance", "pass"): ("performance_ok", "Passed thresholds and ranking"),
    ("performance", "warn"): ("performance_metrics_missing", "Threshold metrics missing (policy ignores it)"),
    ("performance", "fail"): ("performance_failed", "Failed thresholds or ranking"),
    ("risk_constraint", "pass"): ("risk_constraints_ok", "Risk constraints satisfied"),
    ("risk_constraint", "fail"): ("risk_constraint_failed", "Dropped by a correlation or hysteresis constraint"),
    ("robustness", "pass"): ("robustness_ok", "Robustness checks passed"),
    ("robustness", "warn"): ("robustness_degraded", "Sharpe decays between the halves of the sample"),
}
_ROBUSTNESS_FIELDS = ("deflated_sharpe_ratio", "sharpe_first_half", "sharpe_second_half", "cv_sharpe_mean",
                      "cv_sharpe_std")


# Blocks a bare metric name never fills: a flat ``sharpe`` is the strategy's, not its benchmark's.
_NESTED_ONLY = ("benchmark",)


def _leaf(flat: Mapping[str, float], block: str, name: str) -> float | None:
    """``returns.sharpe`` (nested) wins over a flat ``sharpe``."""
    value = flat.get(f"{block}.{name}")
    return flat.get(name) if value is None and block not in _NESTED_ONLY else value


def _block(flat: Mapping[str, float], block: str) -> msgspec.Struct | None:
    struct = BLOCKS[block]
    values = {name: _leaf(flat, block, name) for name in struct.__struct_fields__}
    present = {name: value for name, value in values.items() if value is not None}
    if not present:
        return None
    return msgspec.convert(present, struct, strict=False)


def _known(name: str) -> bool:
    if name.startswith(tuple(f"{block}." for block in _NESTED_ONLY)):
        return True
    leaf = name.rsplit(".", 1)[-1]
    return any(leaf in struct.__struct_fields__ for struct in BLOCKS.values()) or leaf in _DIAGNOSTIC_FIELDS


# The v1 core metrics ``metric_coverage_ratio`` counts (the reference's list), and its five core rules.
CORE_METRICS: tuple[tuple[str, str], ...] = (
    ("returns", "sharpe"), ("returns", "max_drawdown"), ("returns", "gain_to_pain_ratio"),
    ("returns", "time_under_water_ratio"), ("sample", "effective_history_years"), ("sample", "n_trades_total"),
    ("sample", "n_trades_per_year"), ("risk", "adv_utilization_p95"), ("risk", "participation_rate_p95"),
    ("robustness", "deflated_sharpe_ratio"), ("robustness", "sharpe_first_half"),
    ("robustness", "sharpe_second_half"),
)
CORE_RULE_COUNT = 5


def validation_health(metrics: EvaluationMetrics | None, results: Mapping[str, RuleResult] | None) -> ValidationHealth:
    """Share of the core metrics present, share of the core rules that ran, and rules that errored."""
    present = sum(1 for block, name in CORE_METRICS
                  if metrics is not None and getattr(getattr(metrics, block), name, None) is not None)
    executed = len(results or {})
    errors = sum(1 for r in (results or {}).values() if (r.reason_code or "").lower() == "rule_error")
    return ValidationHealth(metric_coverage_ratio=present / len(CORE_METRICS),
                            rules_executed_ratio=min(1.0, executed / CORE_RULE_COUNT), validation_error_count=errors)


def metric_blocks(raw: Mapping[str, Any], results: Mapping[str, RuleResult]) -> EvaluationMetrics:
    """The strategy's metrics by block. Numbers no block declares go to ``diagnostics.extra_metrics``."""
    flat = flatten_metrics(raw)
    blocks = EvaluationMetrics(**{name: _block(flat, name) for name in BLOCKS})  # type: ignore[arg-type]
    extra = {name: value for name, value in sorted(flat.items()) if not _known(name)}
    diagnostics = DiagnosticsMetrics(
        strategy_complexity=_leaf(flat, "diagnostics", "strategy_complexity"),
        search_intensity=_int_or_none(_leaf(flat, "diagnostics", "search_intensity")),
        returns_source=raw.get("returns_source") if isinstance(raw.get("returns_source"), str) else None,
        extra_metrics=extra or None, validation_health=validation_health(blocks, results))
    return msgspec.structs.replace(blocks, diagnostics=diagnostics)


def _int_or_none(value: float | None) -> int | None:
    return None if value is None else int(value)


def _robustness(flat: Mapping[str, float]) -> str:
    first, second = _leaf(flat, "robustness", "sharpe_first_half"), _leaf(flat, "robustness", "sharpe_second_half")
    if first is not None and second is not None and first > 0 and second < first / 2:
        return "warn"
    return "pass"


def _result(rule: str, status: str, details: dict[str, Any]) -> RuleResult:
    severity, owner, tags = RULES[rule]
    code, reason = REASONS.get((rule, status), (f"{rule}_{status}", f"{rule} {status}"))
    return RuleResult(status=status, severity=severity, owner=owner, reason_code=code,  # type: ignore[arg-type]
                      reason=reason, tags=list(tags), details=details)


def rule_results(strategy_id: str, raw: Mapping[str, Any], selection: SelectionResult,
                 risk_configured: bool) -> dict[str, RuleResult]:
    """One result per rule, in the reference's order. A strategy the caller gave no metrics for fails
    data currency and performance: nothing was shown for it. Without a correlation or hysteresis rule the
    risk constraint is an informational pass."""
    flat = flatten_metrics(raw)
    statuses = selection.rules.get(strategy_id) or {"data_currency": "fail", "sample": "warn",
                                                    "performance": "fail", "risk_constraint": "pass"}
    details: dict[str, dict[str, Any]] = {
        "data_currency": {"available_metrics": sorted(flat)},
        "sample": {"sample_metrics": {k: v for k, v in sorted(flat.items()) if _is_sample(k)}},
        "performance": {"active": strategy_id in selection.active},
        "risk_constraint": {},
        "robustness": {name: _leaf(flat, "robustness", name) for name in _ROBUSTNESS_FIELDS},
    }
    statuses = {**statuses, "robustness": _robustness(flat)}
    results = {rule: _result(rule, statuses[rule], details[rule]) for rule in RULES}
    if not risk_configured:
        results["risk_constraint"] = RuleResult(
            status="pass", severity="info", owner="risk", reason_code="risk_constraints_not_configured",
            reason="No risk constraints configured", tags=["risk"], details={})
    return results


def _is_sample(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in SampleMetrics.__struct_fields__


def verdict(results: Mapping[str, RuleResult]) -> str:
    """``fail`` when a blocking rule fails; ``warn`` when any rule is not a pass; else ``pass``."""
    if any(r.status == "fail" and r.severity == "blocking" for r in results.values()):
        return "fail"
    return "warn" if any(r.status != "pass" for r in results.values()) else "pass"


_STAGE_TO_RECOMMENDATION = {"backtest": "backtest_only", "paper": "paper_only", "live": "paper_ok_live_candidate",
                            "backtest_only": "backtest_only", "paper_only": "paper_only",
                            "paper_ok_live_candidate": "paper_ok_live_candidate"}


def recommended_stage(profile: str | None, stage: str | None) -> str | None:
    """The stage a run recommends: from its stage, else from the validation profile it ran under."""
    for key in (stage, profile):
        normalised = str(key).strip().lower().replace("-", "_") if key is not None else None
        if normalised in _STAGE_TO_RECOMMENDATION:
            return _STAGE_TO_RECOMMENDATION[normalised]
    return None
