"""Evaluation runs: the durable record of one evaluation of one strategy in one world (reference §1.8).

A run is keyed by (world, strategy, run id). Its ``metrics`` are the strategy's evidence sorted into the
reference's blocks, ``validation`` says which rules passed under which policy, and ``summary`` is the
verdict (pass / warn / fail, the stage it recommends, whether the strategy is in the selected set). Every
change is a new revision; the revisions are the run's history.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta


RuleStatus = Literal["pass", "fail", "warn"]
Severity = Literal["blocking", "soft", "info"]
Owner = Literal["quant", "risk", "ops"]
RecommendedStage = Literal["backtest_only", "paper_only", "paper_ok_live_candidate"]
OverrideStatus = Literal["none", "approved", "rejected"]
NonEmpty = Annotated[str, Meta(min_length=1, max_length=1024)]


class RuleResult(msgspec.Struct, kw_only=True, omit_defaults=False):
    status: RuleStatus
    severity: Severity | None = None
    owner: Owner | None = None
    reason_code: str | None = None
    reason: str | None = None
    tags: list[str] | None = None
    details: dict[str, Any] | None = None


class ReturnsMetrics(msgspec.Struct, kw_only=True):
    sharpe: float | None = None
    sortino_ratio: float | None = None
    max_drawdown: float | None = None
    gain_to_pain_ratio: float | None = None
    var_p01: float | None = None
    es_p01: float | None = None
    time_under_water_ratio: float | None = None
    max_time_under_water_days: int | None = None


class SampleMetrics(msgspec.Struct, kw_only=True):
    effective_history_years: float | None = None
    n_trades_total: int | None = None
    n_trades_per_year: float | None = None
    regime_coverage: dict[str, float] | None = None


class RiskMetrics(msgspec.Struct, kw_only=True):
    factor_exposures: dict[str, float] | None = None
    incremental_var_99: float | None = None
    incremental_es_99: float | None = None
    adv_utilization_p95: float | None = None
    participation_rate_p95: float | None = None
    capacity_estimate_base: float | None = None


class RobustnessMetrics(msgspec.Struct, kw_only=True):
    probabilistic_sharpe_ratio: float | None = None
    deflated_sharpe_ratio: float | None = None
    cv_folds: int | None = None
    cv_sharpe_mean: float | None = None
    cv_sharpe_std: float | None = None
    sharpe_first_half: float | None = None
    sharpe_second_half: float | None = None


class BenchmarkMetrics(msgspec.Struct, kw_only=True):
    sharpe: float | None = None
    max_drawdown: float | None = None
    volatility: float | None = None


class ValidationHealth(msgspec.Struct, kw_only=True):
    metric_coverage_ratio: float | None = None
    rules_executed_ratio: float | None = None
    validation_error_count: int | None = None


class DiagnosticsMetrics(msgspec.Struct, kw_only=True):
    strategy_complexity: float | None = None
    search_intensity: int | None = None
    returns_source: str | None = None
    extra_metrics: dict[str, Any] | None = None
    validation_health: ValidationHealth | None = None
    # Live monitoring's per-strategy readings (realized sharpe, drawdown, decay) when a live run has them.
    live_monitoring: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class EvaluationMetrics(msgspec.Struct, kw_only=True):
    returns: ReturnsMetrics | None = None
    sample: SampleMetrics | None = None
    risk: RiskMetrics | None = None
    robustness: RobustnessMetrics | None = None
    diagnostics: DiagnosticsMetrics | None = None
    benchmark: BenchmarkMetrics | None = None


class EvaluationValidation(msgspec.Struct, kw_only=True):
    policy_version: str | None = None
    ruleset_hash: str | None = None
    profile: str | None = None
    results: dict[str, RuleResult] | None = None
    extended_revision: int | None = None
    extended_evaluated_at: str | None = None
    extended_history: list[dict[str, Any]] | None = None


class ExPostFailureRecord(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A failure found after the fact (a live loss, a data error) attached to the run that let it through."""

    case_id: Annotated[str, Meta(max_length=256)] | None = None
    status: Literal["candidate", "confirmed"] = "confirmed"
    category: NonEmpty
    reason_code: NonEmpty
    severity: Literal["critical", "high", "medium", "low"] | None = None
    evidence_url: Annotated[str, Meta(max_length=2048)] | None = None
    actor: NonEmpty
    recorded_at: str | None = None
    source: Literal["manual", "auto"] = "manual"
    notes: Annotated[str, Meta(max_length=8192)] | None = None


class EvaluationSummary(msgspec.Struct, kw_only=True):
    status: Literal["pass", "warn", "fail"] | None = None
    recommended_stage: RecommendedStage | None = None
    active: bool | None = None
    active_set: list[str] | None = None
    campaign_id: str | None = None
    campaign_candidates: list[str] | None = None
    override_status: OverrideStatus | None = None
    override_reason: str | None = None
    override_actor: str | None = None
    override_timestamp: str | None = None
    ex_post_failures: list[ExPostFailureRecord] | msgspec.UnsetType = msgspec.UNSET


class RunLinks(msgspec.Struct, kw_only=True):
    metrics: str
    history: str


class EvaluationRun(msgspec.Struct, kw_only=True):
    """``EvaluationRunModel``. ``status`` is derived: ``evaluated`` once the run has metrics."""

    world_id: str
    strategy_id: str
    run_id: str
    status: Literal["evaluating", "evaluated"]
    stage: str
    risk_tier: str
    model_card_version: str | None = None
    metrics: EvaluationMetrics | None = None
    validation: EvaluationValidation | None = None
    summary: EvaluationSummary | None = None
    created_at: str
    updated_at: str
    links: RunLinks
    revision: int = 1
    sequence: int = 0  # order of creation among the world's runs (timestamps tie within a second)


class RunRevision(msgspec.Struct, kw_only=True):
    """One entry of ``GET …/runs/{run_id}/history``: the run as it was after that revision."""

    revision: int
    recorded_at: str
    payload: EvaluationRun


class EvaluationOverride(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An operator's verdict over the rules. ``approved`` must say why, who and when."""

    status: OverrideStatus
    reason: Annotated[str, Meta(max_length=8192)] | None = None
    actor: Annotated[str, Meta(max_length=256)] | None = None
    timestamp: Annotated[str, Meta(max_length=64)] | None = None
