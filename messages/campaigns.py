"""Campaigns: how far each strategy of a world has come through its backtest and paper observation windows,
and which step a scheduler should take next (reference §1.9, ``CampaignStatusResponse`` and
``CampaignTickResponse``).

Both answers are computed from the world's evaluation runs and its default policy's ``campaign`` section;
neither writes anything. ``tick`` only recommends: whoever runs the campaign loop performs the action.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Phase = Literal["backtest_campaign", "paper_campaign", "live_campaign"]
TickActionName = Literal["evaluate", "auto_apply_live", "manual_approval_required", "observe_live"]


class CampaignConfig(msgspec.Struct, kw_only=True, omit_defaults=False):
    """The policy's ``campaign`` section as it was read (``None`` where the policy does not say)."""

    backtest_window: str | None = None
    paper_window: str | None = None
    min_sample_days: int | None = None
    min_trades_total: int | None = None


class CampaignWindowStatus(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One stage's observation window: from the earliest ``created_at`` to the latest ``updated_at`` of
    the strategy's runs in that stage. ``progress`` is ``observed / required`` capped to [0, 1]."""

    window: str | None = None
    required_sec: int | None = None
    observed_sec: int | None = None
    progress: float | None = None
    started_at: str | None = None
    ended_at: str | None = None
    satisfied: bool = False


class CampaignStrategyStatus(msgspec.Struct, kw_only=True, omit_defaults=False):
    strategy_id: str
    phase: Phase
    latest_backtest_run_id: str | None = None
    latest_paper_run_id: str | None = None
    latest_live_run_id: str | None = None
    backtest: CampaignWindowStatus
    paper: CampaignWindowStatus
    sample_days: int | None = None
    trades_total: int | None = None
    sharpe: float | None = None
    max_drawdown: float | None = None
    promotable_to_paper: bool = False
    promotable_to_live: bool = False
    reasons: list[str] = []


class CampaignStatusResponse(msgspec.Struct, kw_only=True):
    world_id: str
    generated_at: str
    config: CampaignConfig
    strategies: list[CampaignStrategyStatus]


class CampaignTickAction(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One recommended step. ``idempotency_key`` is ``action:world[:strategy][:stage][:run_id]`` so a
    scheduler that runs the same tick twice performs the step once; ``suggested_body`` is a template (it
    never carries metrics: ``requires`` says what the caller must add)."""

    action: TickActionName
    idempotency_key: str
    strategy_id: str | None = None
    stage: str | None = None
    reason: str | None = None
    requires: list[str] = []
    suggested_run_id: str | None = None
    suggested_endpoint: str | None = None
    suggested_method: Literal["GET", "POST"] | None = None
    suggested_params: dict[str, str] | None = None
    suggested_body: dict[str, Any] | None = None


class CampaignTickResponse(msgspec.Struct, kw_only=True):
    schema_version: int = 1
    world_id: str
    generated_at: str
    actions: list[CampaignTickAction]
