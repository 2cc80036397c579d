"""Campaigns: a world's strategies move through backtest and paper observation windows towards live
(reference §1.9). Both answers here are reads over the world's evaluation runs and its default policy:

- ``status``: per strategy, its phase (``live_campaign`` once any live run exists, else ``paper_campaign``
  once any paper run exists, else ``backtest_campaign``), each window's progress (latest ``updated_at``
  minus earliest ``created_at`` of the stage's runs, over the window), the sample and trade shortfalls,
  and whether it may go to paper or live (a pass or warn verdict, a satisfied window, no shortfall);
- ``tick``: the next step for each strategy, as a template a scheduler performs. It writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from domain.durations import duration_seconds
from domain.evaluation import strategy_runs
from domain.policies import default_policy
from domain.state import WorldState, require_world
from domain.timefmt import iso_z, parse_iso
from messages import commands as c
from messages.campaigns import (
    CampaignConfig, CampaignStatusResponse, CampaignStrategyStatus, CampaignTickAction, CampaignTickResponse,
    CampaignWindowStatus,
)
from messages.evaluation import EvaluationRun
from messages.promotions import PromotionMode

_SHORTFALLS = ("missing_sample_days_metric", "insufficient_sample_days", "missing_trades_metric",
               "insufficient_trades")
PASSING = ("pass", "warn")
LIVE_PROMOTION_MODES: tuple[str, ...] = get_args(PromotionMode)  # declared once, with the governance block


def _section(document: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Any = document
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _text_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None


def policy_document(state: WorldState) -> Mapping[str, Any]:
    stored = default_policy(state)
    return stored.document if stored is not None else {}


def campaign_config(document: Mapping[str, Any]) -> CampaignConfig:
    """The policy's ``campaign`` section; both windows are checked here (a bad one is a 422)."""
    common = _section(document, "campaign", "common")
    config = CampaignConfig(backtest_window=_text_or_none(_section(document, "campaign", "backtest").get("window")),
                            paper_window=_text_or_none(_section(document, "campaign", "paper").get("window")),
                            min_sample_days=_int_or_none(common.get("min_sample_days")),
                            min_trades_total=_int_or_none(common.get("min_trades_total")))
    duration_seconds(config.backtest_window)
    duration_seconds(config.paper_window)
    return config


def live_promotion_mode(document: Mapping[str, Any]) -> str:
    """``governance.live_promotion.mode``; the reference's default is ``manual_approval``, and an unknown
    mode is treated as that default (it never enables automatic promotion)."""
    mode = str(_section(document, "governance", "live_promotion").get("mode") or "manual_approval").lower()
    return mode if mode in LIVE_PROMOTION_MODES else "manual_approval"


# --- status ------------------------------------------------------------------------------------------


def _stage_runs(runs: list[EvaluationRun], stage: str) -> list[EvaluationRun]:
    return [r for r in runs if str(r.stage).lower() == stage]


def _latest(runs: list[EvaluationRun]) -> EvaluationRun | None:
    return max(runs, key=lambda r: (parse_iso(r.updated_at), parse_iso(r.created_at), r.sequence), default=None)


def window_status(window: str | None, runs: list[EvaluationRun]) -> CampaignWindowStatus:
    """No window configured: nothing required (``progress`` none, never ``satisfied`` by itself)."""
    required = duration_seconds(window)
    start = min((parse_iso(r.created_at) for r in runs), default=None)
    end = max((parse_iso(r.updated_at) for r in runs), default=None)
    observed = max(0, int((end - start).total_seconds())) if start is not None and end is not None else None
    progress, satisfied = None, False
    if required is not None:
        if observed is None:
            progress = 0.0
        elif required == 0:
            progress, satisfied = 1.0, True
        else:
            progress = min(1.0, observed / required)
            satisfied = progress >= 1.0
    return CampaignWindowStatus(window=window, required_sec=required, observed_sec=observed, progress=progress,
                                started_at=iso_z(start) if start else None, ended_at=iso_z(end) if end else None,
                                satisfied=satisfied)


@dataclass(frozen=True)
class _Evidence:
    sample_days: int | None
    trades_total: int | None
    sharpe: float | None
    max_drawdown: float | None


def _evidence(run: EvaluationRun | None) -> _Evidence:
    """Sample days are ``sample.effective_history_years × 365`` (truncated), as the reference."""
    metrics = run.metrics if run is not None else None
    sample = metrics.sample if metrics is not None else None
    returns = metrics.returns if metrics is not None else None
    years = sample.effective_history_years if sample is not None else None
    return _Evidence(sample_days=max(0, int(years * 365)) if years is not None else None,
                     trades_total=sample.n_trades_total if sample is not None else None,
                     sharpe=returns.sharpe if returns is not None else None,
                     max_drawdown=returns.max_drawdown if returns is not None else None)


def _shortfalls(config: CampaignConfig, evidence: _Evidence) -> list[str]:
    reasons = []
    if config.min_sample_days is not None:
        if evidence.sample_days is None:
            reasons.append("missing_sample_days_metric")
        elif evidence.sample_days < config.min_sample_days:
            reasons.append("insufficient_sample_days")
    if config.min_trades_total is not None:
        if evidence.trades_total is None:
            reasons.append("missing_trades_metric")
        elif evidence.trades_total < config.min_trades_total:
            reasons.append("insufficient_trades")
    return reasons


def _verdict(run: EvaluationRun | None) -> str:
    return str(run.summary.status or "").lower() if run is not None and run.summary is not None else ""


def _promotable(run: EvaluationRun | None, window_ok: bool, reasons: list[str]) -> bool:
    return (run is not None and window_ok and _verdict(run) in PASSING
            and not any(reason in _SHORTFALLS for reason in reasons))


def _phase(paper: EvaluationRun | None, live: EvaluationRun | None) -> str:
    return "live_campaign" if live is not None else "paper_campaign" if paper is not None else "backtest_campaign"


def strategy_status(sid: str, runs: list[EvaluationRun], config: CampaignConfig) -> CampaignStrategyStatus:
    backtest_runs, paper_runs = _stage_runs(runs, "backtest"), _stage_runs(runs, "paper")
    backtest, paper, live = _latest(backtest_runs), _latest(paper_runs), _latest(_stage_runs(runs, "live"))
    backtest_window = window_status(config.backtest_window, backtest_runs)
    paper_window = window_status(config.paper_window, paper_runs)
    evidence = _evidence(paper or backtest)  # the paper run's evidence once there is one
    reasons = _shortfalls(config, evidence)
    backtest_ok = backtest_window.satisfied or config.backtest_window is None
    paper_ok = paper_window.satisfied or config.paper_window is None
    missing = [("missing_backtest_run", backtest is None), ("missing_paper_run", paper is None),
               ("backtest_window_incomplete", not backtest_ok), ("paper_window_incomplete", not paper_ok)]
    reasons += [reason for reason, applies in missing if applies]
    return CampaignStrategyStatus(
        strategy_id=sid, phase=_phase(paper, live),  # type: ignore[arg-type]
        latest_backtest_run_id=backtest.run_id if backtest else None,
        latest_paper_run_id=paper.run_id if paper else None, latest_live_run_id=live.run_id if live else None,
        backtest=backtest_window, paper=paper_window, sample_days=evidence.sample_days,
        trades_total=evidence.trades_total, sharpe=evidence.sharpe, max_drawdown=evidence.max_drawdown,
        promotable_to_paper=_promotable(backtest, backtest_ok, reasons),
        promotable_to_live=_promotable(paper, paper_ok, reasons), reasons=reasons)


def statuses(state: WorldState, strategy_id: str | None, config: CampaignConfig) -> list[CampaignStrategyStatus]:
    by_strategy: dict[str, list[EvaluationRun]] = {}
    for run in strategy_runs(state, strategy_id):
        by_strategy.setdefault(run.strategy_id, []).append(run)
    return [strategy_status(sid, runs, config) for sid, runs in sorted(by_strategy.items())]


def campaign_status(state: WorldState, q: c.GetCampaignStatus, now: datetime) -> CampaignStatusResponse:
    require_world(state)
    config = campaign_config(policy_document(state))
    return CampaignStatusResponse(world_id=state.world_id, generated_at=iso_z(now), config=config,
                                  strategies=statuses(state, q.strategy_id, config))


# --- tick ----------------------------------------------------------------------------------------------

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def suggested_run_id(world_id: str, strategy_id: str, stage: str, now: datetime) -> str:
    """``camp-<world>-<strategy>-<stage>-<YYYYMMDD>`` with every run of other characters made one ``-``:
    one suggested run per strategy, stage and UTC day, so ticks on the same day re-evaluate the same run."""
    raw = f"camp-{world_id}-{strategy_id}-{stage}-{iso_z(now)[:10].replace('-', '')}"
    return _SLUG.sub("-", raw).strip("-")[:256]


def idempotency_key(action: str, world_id: str, *parts: str | None) -> str:
    """``action:world[:strategy][:stage][:run_id]``: the parts an action has, in that order."""
    return ":".join([action, world_id, *[p for p in parts if p]])


def _evaluate(world_id: str, sid: str, stage: str, reason: str, now: datetime) -> CampaignTickAction:
    run_id = suggested_run_id(world_id, sid, stage, now)
    return CampaignTickAction(
        action="evaluate", idempotency_key=idempotency_key("evaluate", world_id, sid, stage, run_id),
        strategy_id=sid, stage=stage, reason=reason, requires=["metrics"], suggested_run_id=run_id,
        suggested_endpoint=f"/worlds/{world_id}/evaluate", suggested_method="POST",
        suggested_body={"strategy_id": sid, "stage": stage, "risk_tier": "low", "run_id": run_id})


def _promote(world_id: str, status: CampaignStrategyStatus, mode: str) -> CampaignTickAction:
    sid, run_id = status.strategy_id, status.latest_paper_run_id or "latest"
    if mode == "auto_apply":
        return CampaignTickAction(
            action="auto_apply_live", idempotency_key=idempotency_key("auto_apply_live", world_id, sid, "live", run_id),
            strategy_id=sid, stage="live", reason="promotable_to_live", suggested_run_id=run_id,
            suggested_endpoint=f"/worlds/{world_id}/promotions/live/auto-apply", suggested_method="POST",
            suggested_body={})
    return CampaignTickAction(
        action="manual_approval_required",
        idempotency_key=idempotency_key("manual_approval_required", world_id, sid, "live", run_id),
        strategy_id=sid, stage="live", reason="promotable_to_live", requires=["approval"], suggested_run_id=run_id,
        suggested_endpoint=f"/worlds/{world_id}/promotions/live/plan", suggested_method="GET",
        suggested_params={"strategy_id": sid, "run_id": run_id})


def _observe(world_id: str, status: CampaignStrategyStatus) -> CampaignTickAction:
    sid, run_id = status.strategy_id, status.latest_live_run_id
    return CampaignTickAction(
        action="observe_live", idempotency_key=idempotency_key("observe_live", world_id, sid, "live", run_id),
        strategy_id=sid, stage="live", reason="already_in_live_campaign", suggested_run_id=run_id,
        suggested_endpoint=f"/worlds/{world_id}/live-monitoring/report", suggested_method="GET")


def next_action(world_id: str, status: CampaignStrategyStatus, mode: str, now: datetime) -> CampaignTickAction:
    """Backtest phase: evaluate on paper once promotable, else keep evaluating the backtest. Paper phase:
    once promotable to live, the governance mode decides (``auto_apply``: the auto-apply route;
    ``manual_approval``: an approval; ``disabled``: no promotion, keep observing paper); else keep
    evaluating on paper. Live phase: observe."""
    sid = status.strategy_id
    if status.phase == "backtest_campaign":
        if status.promotable_to_paper:
            return _evaluate(world_id, sid, "paper", "promotable_to_paper", now)
        return _evaluate(world_id, sid, "backtest", "continue_backtest_campaign", now)
    if status.phase == "paper_campaign":
        if not status.promotable_to_live:
            return _evaluate(world_id, sid, "paper", "continue_paper_campaign", now)
        if mode == "disabled":
            return _evaluate(world_id, sid, "paper", "live_promotion_disabled", now)
        return _promote(world_id, status, mode)
    return _observe(world_id, status)


def campaign_tick(state: WorldState, q: c.CampaignTick, now: datetime) -> CampaignTickResponse:
    require_world(state)
    document = policy_document(state)
    config, mode = campaign_config(document), live_promotion_mode(document)
    actions = [next_action(state.world_id, s, mode, now) for s in statuses(state, q.strategy_id, config)]
    return CampaignTickResponse(world_id=state.world_id, generated_at=iso_z(now), actions=actions)
