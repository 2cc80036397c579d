"""Live monitoring: each strategy's latest live run judged by the default policy's ``live_monitoring``
guardrails (reference §1.11 and ``policy_engine.evaluate_live_monitoring``).

The rule compares three readings with their thresholds: ``live_sharpe`` (else ``realized_sharpe``) with
``sharpe_min``, ``live_max_drawdown`` (else ``realized_max_drawdown``) with ``dd_max``, and
``live_vs_backtest_sharpe_ratio`` with ``decay_threshold``. A breached threshold fails, a configured
threshold without its reading warns, no threshold is no check; severity and owner default to soft / risk.
The judgment also reads the extended validation of the strategy (``domain.live_extended``): an incremental
VaR/ES over the policy's ``portfolio`` limits or a stress scenario past its ``stress`` limit fails, a missing
block or reading warns, each with its reason code; a policy with those limits and no ``live_monitoring``
section is judged by them alone.

The reference judges the mean of those readings over every strategy of the world and gives all of them the
same verdict; here each strategy is judged by its own readings, so one failing strategy does not fail the
others (the report counts strategies, and each row is that strategy's verdict).

A monitoring run refreshes the readings of each latest live run (the decay baseline follows the newest
backtest or paper run), judges them, and appends a revision to every run whose readings or verdict
changed; ``updated`` counts those. The report reads the latest revisions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from domain import live_extended, live_metrics
from domain.campaigns import policy_document
from domain.effects import Effect
from domain.evaluation import saved, strategy_runs
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z
from messages import commands as c
from messages.evaluation import (
    DiagnosticsMetrics, EvaluationMetrics, EvaluationRun, EvaluationValidation, Owner, RuleResult, Severity,
)
from messages.live_monitoring import (
    LiveMonitoringCounts, LiveMonitoringReport, LiveMonitoringRunResult, LiveMonitoringStrategyReport,
    LiveMonitoringSummary,
)

RULE = "live_monitoring"
_SEVERITIES: tuple[Severity, ...] = ("blocking", "soft", "info")
_OWNERS: tuple[Owner, ...] = ("quant", "risk", "ops")
# (reading, its fallback, threshold key, lower bound?, reason when the reading is missing, when breached)
_CHECKS = (
    ("live_sharpe", "realized_sharpe", "sharpe_min", True, "live_sharpe_missing", "live_sharpe_below_min"),
    ("live_max_drawdown", "realized_max_drawdown", "dd_max", False, "live_dd_missing", "live_dd_exceeds_max"),
    ("live_vs_backtest_sharpe_ratio", None, "decay_threshold", True, "live_decay_missing",
     "live_decay_below_threshold"),
)
_DETAIL = {"live_sharpe": "sharpe_mean", "live_max_drawdown": "dd_mean", "live_vs_backtest_sharpe_ratio": "decay_mean"}


def _number(value: Any) -> float | None:
    """A threshold or reading: a finite number; anything else (text, booleans) counts as absent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _choice(value: Any, allowed: tuple[str, ...], default: str) -> str:
    return value if isinstance(value, str) and value in allowed else default


def _breach(value: float | None, threshold: float, lower: bool) -> str | None:
    """``warn`` without a reading, ``fail`` past the threshold, else none."""
    if value is None:
        return "warn"
    return "fail" if (value < threshold if lower else value > threshold) else None


def _lookback(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _verdict(levels: list[str]) -> str:
    return "fail" if "fail" in levels else "warn" if levels else "pass"


def judge(config: Mapping[str, Any], values: Mapping[str, float | None],
          extended: live_extended.Findings | None = None) -> RuleResult:
    """The rule over one strategy's readings (``values`` keyed by the primary reading names) and what its
    extended validation was found to say (``extended``)."""
    details: dict[str, Any] = {_DETAIL[name]: values.get(name) for name in _DETAIL}
    details["lookback_days"] = _lookback(config.get("lookback_days"))
    levels, reasons = [], []
    for name, _, key, lower, missing, breached in _CHECKS:
        threshold = _number(config.get(key))
        if threshold is None:
            continue
        details[key] = threshold
        level = _breach(values.get(name), threshold, lower)
        if level is not None:
            levels.append(level)
            reasons.append(missing if level == "warn" else breached)
    if extended is not None:
        levels, reasons = levels + extended.levels, reasons + extended.reasons
        details.update(extended.details)
    return RuleResult(
        status=_verdict(levels),  # type: ignore[arg-type]
        severity=_choice(config.get("severity"), _SEVERITIES, "soft"),  # type: ignore[arg-type]
        owner=_choice(config.get("owner"), _OWNERS, "risk"),  # type: ignore[arg-type]
        reason_code=reasons[0] if reasons else "live_monitoring_ok",
        reason=", ".join(reasons) if reasons else "Live monitoring within thresholds",
        tags=[RULE], details=details)


def latest_live_runs(state: WorldState) -> list[EvaluationRun]:
    """Each strategy's live run with the latest ``updated_at`` (then ``created_at``, then creation order)."""
    latest: dict[str, EvaluationRun] = {}
    for run in strategy_runs(state):
        if str(run.stage).lower() != "live":
            continue
        best = latest.get(run.strategy_id)
        if best is None or (run.updated_at, run.created_at, run.sequence) >= (best.updated_at, best.created_at,
                                                                              best.sequence):
            latest[run.strategy_id] = run
    return [latest[sid] for sid in sorted(latest)]


def _live_section(run: EvaluationRun) -> dict[str, Any] | None:
    diagnostics = run.metrics.diagnostics if run.metrics is not None else None
    live = diagnostics.live_monitoring if diagnostics is not None else msgspec.UNSET
    return live if isinstance(live, dict) else None


def refreshed(state: WorldState, run: EvaluationRun) -> dict[str, Any] | None:
    """The run's readings recomputed from its series against today's baseline (as they are without one)."""
    live = _live_section(run)
    series = live_metrics.live_returns({"live_returns": live.get("live_returns")}) if live else None
    if live is None or series is None:
        return live
    returns = run.metrics.returns if run.metrics is not None else None
    baseline = live_metrics.backtest_sharpe(state, run.strategy_id, returns.sharpe if returns else None)
    return live_metrics.readings(series, baseline, live.get("as_of"))


def _extra_metrics(run: EvaluationRun) -> Mapping[str, Any]:
    diagnostics = run.metrics.diagnostics if run.metrics is not None else None
    return (diagnostics.extra_metrics if diagnostics is not None else None) or {}


def inputs(run: EvaluationRun, live: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Each primary reading (else its fallback) from the live readings, else from the run's other
    metrics (a caller may send ``live_sharpe`` and friends as plain numbers)."""
    sources = [live or {}, _extra_metrics(run)]
    values: dict[str, float | None] = {}
    for name, fallback, *_ in _CHECKS:
        found = (_number(source.get(key)) for key in (name, fallback) if key for source in sources)
        values[name] = next((value for value in found if value is not None), None)
    return values


def _revised(run: EvaluationRun, live: dict[str, Any] | None, result: RuleResult, now: datetime) -> EvaluationRun:
    stamp = iso_z(now)
    metrics = run.metrics
    if live is not None:
        base = metrics or EvaluationMetrics()
        diagnostics = msgspec.structs.replace(base.diagnostics or DiagnosticsMetrics(), live_monitoring=live)
        metrics = msgspec.structs.replace(base, diagnostics=diagnostics)
    validation = run.validation or EvaluationValidation()
    revision = (validation.extended_revision or 0) + 1
    history = [*(validation.extended_history or []),
               {"revision": revision, "evaluated_at": stamp, "results": {RULE: msgspec.to_builtins(result)}}]
    validation = msgspec.structs.replace(
        validation, results={**(validation.results or {}), RULE: result}, extended_revision=revision,
        extended_evaluated_at=stamp, extended_history=history)
    return msgspec.structs.replace(run, metrics=metrics, validation=validation,
                                   status="evaluated" if metrics is not None else run.status,
                                   updated_at=stamp, revision=run.revision + 1)


def review(state: WorldState, run: EvaluationRun, config: Mapping[str, Any], now: datetime) -> EvaluationRun | None:
    """The run's next revision, or ``None`` when its readings and verdict would not change."""
    live = refreshed(state, run)
    result = judge(config, inputs(run, live), live_extended.findings(state, run, policy_document(state)))
    before = (run.validation.results or {}).get(RULE) if run.validation is not None else None
    if live == _live_section(run) and result == before:
        return None
    return _revised(run, live, result, now)


def monitoring_config(state: WorldState) -> Mapping[str, Any] | None:
    """The default policy's ``live_monitoring`` section (empty when only its extended-validation limits are
    set); none when the world has neither."""
    document = policy_document(state)
    section = document.get(RULE)
    if isinstance(section, Mapping):
        return section
    return {} if any(live_extended.limits_of(document)) else None


def run_monitoring(state: WorldState, cmd: c.RunLiveMonitoring, now: datetime) -> Outcome:
    require_world(state)
    config = monitoring_config(state)
    effects: list[Effect] = []
    updated = 0
    for run in latest_live_runs(state) if config is not None else []:
        revised = review(state, run, config, now)  # type: ignore[arg-type]
        if revised is None:
            continue
        state, written = saved(state, revised, RULE, now, cmd.correlation_id)
        effects += written
        updated += 1
    return Outcome(state=state, effects=effects, reply=LiveMonitoringRunResult(world_id=state.world_id,
                                                                                updated=updated))


def _entry(run: EvaluationRun) -> LiveMonitoringStrategyReport:
    diagnostics = run.metrics.diagnostics if run.metrics is not None else None
    live = _live_section(run) or {}
    result = (run.validation.results or {}).get(RULE) if run.validation is not None else None
    return LiveMonitoringStrategyReport(
        strategy_id=run.strategy_id, run_id=run.run_id,
        as_of=live.get("as_of") if isinstance(live.get("as_of"), str) else None,
        diagnostics=msgspec.to_builtins(diagnostics) if diagnostics is not None else None, live_monitoring=result)


def report(state: WorldState, q: c.GetLiveMonitoringReport, now: datetime) -> LiveMonitoringReport:
    require_world(state)
    entries = [_entry(run) for run in latest_live_runs(state)]
    verdicts = [e.live_monitoring.status for e in entries if e.live_monitoring is not None]
    counts = LiveMonitoringCounts(passed=verdicts.count("pass"), warn=verdicts.count("warn"),
                                  fail=verdicts.count("fail"))
    return LiveMonitoringReport(world_id=state.world_id, generated_at=iso_z(now), strategies=entries,
                                summary=LiveMonitoringSummary(counts=counts, total=len(entries)))
